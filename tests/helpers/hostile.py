"""Shared by the hostile-input suites: the app on a copy of the test models, and its answers
before anything hostile, so that each suite can check the service is unchanged afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.process.settings import Settings
from tests.helpers.images import encode
from tests.helpers.reliability import ready_client


def pattern(width: int = 64, height: int = 48) -> Image.Image:
    """Gradients and a checkerboard: every rotation of it looks different to the models."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 4 % 256, yy * 5 % 256, ((xx // 8 + yy // 8) % 2) * 255], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


REFERENCE = encode(pattern(), "PNG")


@pytest.fixture(scope="module")
def model_dir(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test models, with a real SavedModel ``decoy`` just outside the directory.

    A service that resolved model names as paths would find the decoy through ``../decoy``.
    """
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(exported_models, root / "models")
    shutil.copytree(exported_models / "separable", root / "decoy")
    return root / "models"


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with ready_client(Settings(model_dir=model_dir, warmup_runs=1)) as ready:
        yield ready


def reference_answer(client: TestClient) -> dict[str, Any]:
    response = client.post("/predict?top_k=10", content=REFERENCE, headers=PNG)
    assert response.status_code == 200, response.text
    return {p["model"]: p["probabilities"] for p in response.json()["predictions"]}


@pytest.fixture(scope="module")
def baseline(client: TestClient) -> dict[str, Any]:
    """The service's answers before any hostile input (every test here uses this fixture)."""
    return {"reference": reference_answer(client), "models": client.get("/models").json()}


PNG = {"content-type": "image/png"}


def upload(client: TestClient, data: bytes, name: str = "image.png", **params: Any) -> Any:
    return client.post(
        "/predict", params=params, files={"file": (name, data, "application/octet-stream")}
    )


def assert_unchanged(client: TestClient, baseline: dict[str, Any]) -> None:
    """Bit-identical probabilities for the reference image, the same /models, still ready."""
    assert reference_answer(client) == baseline["reference"]
    assert client.get("/models").json() == baseline["models"]
    assert client.get("/health/ready").status_code == 200
