"""``pip install ./client`` into a fresh venv: the client alone, no TensorFlow, NumPy or FastAPI.

The install needs the package index (httpx, pydantic and theirs come from it), so it is one slow
test; it then talks to a real server from that venv, so the distribution's own files, not the
checkout's, are what answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from PIL import Image

from service.process.settings import Settings
from tests.helpers import REPOSITORY
from tests.helpers.servers import live_server

pytestmark = [pytest.mark.slow, pytest.mark.network]

# What a client install must never bring.
SERVICE_ONLY = {"tensorflow", "numpy", "fastapi", "starlette", "uvicorn", "pillow", "keras"}


def test_client_distribution_installs_alone_and_serves(
    tmp_path: Path, exported_models: Path
) -> None:
    # A copy, so the build leaves nothing in the checkout; the contract sits beside it as in
    # the repository (client/pyproject.toml takes it from ../sepconv_contract).
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(REPOSITORY / "client", source / "client", ignore=ignore)
    shutil.copytree(REPOSITORY / "sepconv_contract", source / "sepconv_contract", ignore=ignore)
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source / "client")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"sepconv-client", "httpx", "pydantic"} <= names
    assert not names & SERVICE_ONLY

    imports = (
        "import sys, sepconv_client, sepconv_contract.schemas; "
        "print(sepconv_client.__file__); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'service', 'numpy', 'PIL'}))"
    )
    probe = subprocess.run([str(python), "-c", imports], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    where, heavy = probe.stdout.splitlines()
    assert where.startswith(str(environment)) and heavy == "[]"

    command = environment / "bin" / "sepconv-client"
    shown = subprocess.run([str(command), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "predict" in shown.stdout and "batch" in shown.stdout

    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 20, 20)).save(image)
    with live_server(Settings(model_dir=exported_models)) as url:
        answered = subprocess.run(
            [str(command), "predict", str(image), "--json", "--url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert answered.returncode == 0, answered.stderr
    (result,) = json.loads(answered.stdout)["results"]
    assert [p["model"] for p in result["predictions"]] == ["regular", "separable"]
