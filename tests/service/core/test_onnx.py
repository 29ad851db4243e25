from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.main import create_app
from service.process.settings import Settings
from training.onnx_export import export_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def onnx_models(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx-models")
    for name in ("regular", "separable"):
        shutil.copytree(exported_models / name, root / name)
        export_onnx(root / name / "1")
    return root


def ready_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        for _ in range(300):
            if client.get("/health/ready").status_code == 200:
                break
            time.sleep(0.1)
        yield client


@pytest.fixture(scope="module")
def onnx_client(onnx_models: Path) -> Iterator[TestClient]:
    yield from ready_client(Settings(model_dir=onnx_models, runtime="onnxruntime"))


@pytest.fixture(scope="module")
def tensorflow_client(onnx_models: Path) -> Iterator[TestClient]:
    yield from ready_client(
        Settings(model_dir=onnx_models, compare_runtimes="tensorflow,onnxruntime")
    )


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(sum(colour)).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    pixels[:, :24] = colour
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_export_onnx_writes_model_beside_saved_model(onnx_models: Path) -> None:
    for name in ("regular", "separable"):
        assert (onnx_models / name / "1" / "model.onnx").stat().st_size > 100_000
        assert not list((onnx_models / name / "1").glob(".*partial"))


def test_onnx_runtime_matches_tensorflow_probabilities(
    onnx_client: TestClient, tensorflow_client: TestClient
) -> None:
    for colour in ((250, 10, 10), (10, 200, 90), (0, 0, 0)):
        body = png(colour)
        served = []
        for client in (onnx_client, tensorflow_client):
            response = client.post("/predict", content=body, headers={"content-type": "image/png"})
            assert response.status_code == 200
            served.append(response.json()["predictions"])
        for onnx, tensorflow in zip(*served, strict=True):
            assert onnx["model"] == tensorflow["model"]
            for label, probability in tensorflow["probabilities"].items():
                assert abs(onnx["probabilities"][label] - probability) < 1e-4


def test_onnx_runtime_reported_by_models(onnx_client: TestClient) -> None:
    models = onnx_client.get("/models").json()["models"]
    assert {m["runtime"] for m in models} == {"onnxruntime"}
    assert {m["name"]: m["parameters"] for m in models} == {
        "regular": 1_186_378,
        "separable": 174_821,
    }


def test_compare_both_runtimes_side_by_side(tensorflow_client: TestClient) -> None:
    response = tensorflow_client.get(
        "/compare", params={"repeats": 3, "warmup": 1, "runtimes": "tensorflow,onnxruntime"}
    )
    assert response.status_code == 200
    body = response.json()
    pairs = [(m["model"], m["runtime"]) for m in body["models"]]
    assert pairs == [
        ("regular", "tensorflow"),
        ("regular", "onnxruntime"),
        ("separable", "tensorflow"),
        ("separable", "onnxruntime"),
    ]
    assert body["summary"]["fastest"].endswith(("(tensorflow)", "(onnxruntime)"))


def test_compare_unknown_runtime_is_validation_error(tensorflow_client: TestClient) -> None:
    response = tensorflow_client.get("/compare", params={"runtimes": "tensorrt", "repeats": 1})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_compare_onnx_without_model_onnx_is_conflict(exported_models: Path) -> None:
    settings = Settings(model_dir=exported_models, compare_runtimes="onnxruntime")
    for client in ready_client(settings):
        response = client.get("/compare", params={"runtimes": "onnxruntime", "repeats": 1})
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "RUNTIME_UNAVAILABLE" and "/" not in error["message"]
