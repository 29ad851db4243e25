"""A broken model fails alone: the app starts, says which model failed and why, serves the rest.

Each case copies the test models and breaks ``regular`` the way a bad deploy would.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.main import create_app
from service.process.settings import Settings
from tests.helpers.images import encode
from tests.helpers.reliability import assert_clean, assert_error, wait_until_loaded

IMAGE = encode(Image.new("RGB", (40, 36), (90, 160, 40)), "PNG")
PNG = {"content-type": "image/png"}


def truncate_saved_model(model: Path) -> None:
    graph = model / "1" / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[:1000])


def remove_variables(model: Path) -> None:
    shutil.rmtree(model / "1" / "variables")


def empty_version_folder(model: Path) -> None:
    shutil.rmtree(model / "1")
    (model / "1").mkdir()


def invalid_metadata(model: Path) -> None:
    (model / "1" / "metadata.json").write_text('{"parameters": {"total": 1186378,')


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated saved_model.pb": (truncate_saved_model, "OSError"),
    "missing variables folder": (remove_variables, "find any matching files"),
    "empty version folder": (empty_version_folder, "SavedModel file does not exist"),
    "invalid metadata.json": (invalid_metadata, "metadata.json is unreadable"),
}
# An empty (or half-copied) newer version folder is no fault any more: it is skipped with a log
# line and the newest complete version is served (tests/service/process/test_rollouts.py).


def broken_model_dir(exported_models: Path, root: Path, fault: str) -> Path:
    model_dir = root / "models"
    shutil.copytree(exported_models, model_dir)
    FAULTS[fault][0](model_dir / "regular")
    return model_dir


@pytest.fixture(params=list(FAULTS))
def fault(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def model_dir(exported_models: Path, tmp_path: Path, fault: str) -> Path:
    return broken_model_dir(exported_models, tmp_path, fault)


@pytest.fixture
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=model_dir, warmup_runs=1))) as started:
        wait_until_loaded(started)
        yield started


def details(response: Any) -> dict[str, Any]:
    return dict(response.json()["error"]["details"]["models"])


def test_broken_model_fails_alone_and_says_why(
    client: TestClient, model_dir: Path, fault: str
) -> None:
    reason = FAULTS[fault][1]
    assert client.get("/health/live").status_code == 200

    ready = client.get("/health/ready")
    message = assert_error(ready, 503, "NOT_READY", server_paths=[model_dir])
    assert "regular" in message and reason in message
    models = details(ready)
    assert models["regular"]["status"] == "failed"
    assert reason in models["regular"]["error"]
    assert_clean(models["regular"]["error"], server_paths=[model_dir])
    assert models["separable"]["status"] == "ready"

    listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert listed["regular"]["status"] == "failed"
    assert reason in listed["regular"]["error"]
    assert_clean(listed["regular"]["error"], server_paths=[model_dir])
    assert "/" not in listed["regular"]["error"]
    assert listed["separable"]["status"] == "ready" and listed["separable"]["error"] is None


def test_healthy_model_keeps_serving_beside_a_broken_one(
    client: TestClient, model_dir: Path
) -> None:
    one = client.post("/predict", params={"model": "separable"}, content=IMAGE, headers=PNG)
    assert one.status_code == 200, one.text
    every = client.post("/predict", content=IMAGE, headers=PNG)
    assert every.status_code == 200, every.text
    assert [p["model"] for p in every.json()["predictions"]] == ["separable"]
    compared = client.get("/compare", params={"repeats": 2, "warmup": 0})
    assert compared.status_code == 200, compared.text
    assert [m["model"] for m in compared.json()["models"]] == ["separable"]

    broken = client.post("/predict", params={"model": "regular"}, content=IMAGE, headers=PNG)
    assert_error(broken, 503, "NOT_READY", server_paths=[model_dir])
    assert broken.headers["retry-after"] == "1"

    # The model facts gauge is filled in just after loading finishes.
    failed_info = re.compile(r'^sepconv_model_info\{[^}]*model="regular"[^}]*status="failed"', re.M)
    deadline = time.monotonic() + 5
    while not failed_info.search(client.get("/metrics").text):
        assert time.monotonic() < deadline, "sepconv_model_info never showed the failed model"
        time.sleep(0.05)


def test_relaxed_readiness_is_ready_with_one_model(exported_models: Path, tmp_path: Path) -> None:
    model_dir = broken_model_dir(exported_models, tmp_path, "truncated saved_model.pb")
    settings = Settings(model_dir=model_dir, warmup_runs=1, strict_readiness=False)
    with TestClient(create_app(settings)) as client:
        wait_until_loaded(client)
        # Loaded is not yet ready: the loaded model's batcher starts a moment later.
        deadline = time.monotonic() + 10
        ready = client.get("/health/ready")
        while ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready"
        assert body["models"]["separable"]["status"] == "ready"
        assert body["models"]["regular"]["status"] == "failed"


def test_only_names_found_in_the_model_directory_are_loaded(
    exported_models: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    shutil.copytree(exported_models / "separable", model_dir / "separable")
    # Real SavedModels the service must never load: outside the directory, or hidden in it.
    shutil.copytree(exported_models / "regular", tmp_path / "decoy")
    shutil.copytree(exported_models / "regular", model_dir / ".staging")
    (model_dir / "README.txt").write_text("not a model")
    requested = ["separable", "../decoy", str(tmp_path / "decoy"), ".staging", "missing"]

    settings = Settings(model_dir=model_dir, models=",".join(requested), warmup_runs=1)
    with TestClient(create_app(settings)) as client:
        wait_until_loaded(client)
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert list(listed) == requested
        assert listed["separable"]["status"] == "ready"
        for name in requested[1:]:
            assert listed[name]["status"] == "failed"
            assert listed[name]["error"] == "not found in the model directory"
            assert listed[name]["parameters"] is None

    with TestClient(create_app(Settings(model_dir=model_dir, warmup_runs=1))) as client:
        wait_until_loaded(client)
        assert [m["name"] for m in client.get("/models").json()["models"]] == ["separable"]
        assert client.get("/health/ready").status_code == 200
