"""``/predict?runtime=``: a request answered on another loaded runtime, through its batcher."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.core.engines import open_engine
from service.process.settings import Settings
from tests.helpers.apps import ready_client
from tests.helpers.images import encode, sample_pixels
from tests.helpers.runtimes import ARTIFACT_RUNTIMES, write_runtime_models

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

pytestmark = pytest.mark.slow
RAW = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def models(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = write_runtime_models(exported_models, tmp_path_factory.mktemp("runtime-models"))
    # One runtime's artifact broken for one model: that pair alone is unavailable.
    (root / "separable" / "1" / "model_int8.tflite").write_bytes(b"not a flatbuffer" * 64)
    return root


@pytest.fixture(scope="module")
def client(models: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=models,
        runtime="litert",
        compare_runtimes="onnxruntime,onnxruntime-int8,litert-int8",
        warmup_runs=1,
        batch_timeout_ms=5,
    )
    with ready_client(settings) as ready:
        yield ready


def png(seed: int) -> bytes:
    return encode(Image.fromarray(sample_pixels(seed, width=32, height=32)), "PNG")


@pytest.mark.parametrize("runtime", ["", "litert", *ARTIFACT_RUNTIMES[:2]])
def test_predict_answers_on_the_runtime_asked_for(
    client: TestClient, models: Path, runtime: str
) -> None:
    pixels = sample_pixels(5, width=32, height=32)
    engine = open_engine(models / "regular" / "1", runtime or "litert", threads=1)
    expected = engine.predict(pixels[None].astype("float32"))[0]
    params = {"model": "regular", "top_k": 10, **({"runtime": runtime} if runtime else {})}
    raw = client.post(
        "/predict", params=params, content=encode(Image.fromarray(pixels), "PNG"), headers=RAW
    )
    upload = client.post(
        "/predict",
        params=params,
        files={"file": ("a.png", encode(Image.fromarray(pixels), "PNG"), "image/png")},
    )
    for response in (raw, upload):
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        served = [prediction["probabilities"][label] for label in client_classes(client)]
        assert max(abs(a - b) for a, b in zip(served, expected.tolist(), strict=True)) < 1e-5


def test_concurrent_requests_on_a_runtime_share_its_batcher(client: TestClient) -> None:
    def one(seed: int) -> dict:
        response = client.post(
            "/predict",
            params={"model": "separable", "runtime": "onnxruntime-int8"},
            content=png(seed),
            headers=RAW,
        )
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(32)))
    alone = [one(seed) for seed in range(32)]
    for batched, single in zip(answers, alone, strict=True):
        assert batched["label"] == single["label"]
        for label, probability in single["probabilities"].items():
            assert abs(batched["probabilities"][label] - probability) < 1e-6


def test_a_broken_or_unloaded_runtime_is_409_and_the_others_serve(client: TestClient) -> None:
    for params in (
        {"model": "separable", "runtime": "litert-int8"},  # its artifact is broken
        {"model": "all", "runtime": "litert-int8"},
        {"runtime": "tensorflow"},  # not loaded at start-up
    ):
        for response in (
            client.post("/predict", params=params, content=png(1), headers=RAW),
            client.post("/predict", params=params, files={"file": ("a.png", png(1), "image/png")}),
        ):
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "RUNTIME_UNAVAILABLE"
    ok = client.post(
        "/predict",
        params={"model": "regular", "runtime": "litert-int8"},
        content=png(1),
        headers=RAW,
    )
    assert ok.status_code == 200
    assert client.post("/predict", content=png(1), headers=RAW).status_code == 200


@pytest.mark.parametrize("runtime", ["litert-fp16", "LITERT", "litert,onnxruntime"])
def test_an_unknown_runtime_is_422_on_both_paths(client: TestClient, runtime: str) -> None:
    for response in (
        client.post("/predict", params={"runtime": runtime}, content=png(2), headers=RAW),
        client.post(
            "/predict", params={"runtime": runtime}, files={"file": ("a.png", png(2), "image/png")}
        ),
    ):
        assert response.status_code == 422, response.text


def client_classes(client: TestClient) -> list[str]:
    return client.get("/models").json()["models"][0]["classes"]
