"""The ONNX Runtime int8 and LiteRT engines: served through the micro-batcher, loaded beside
the serving runtime, and a broken artifact of one runtime failing that runtime alone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.engines import RUNTIMES, open_engine
from service.errors import ApiError
from service.process.settings import Settings
from tests.helpers.apps import ready_client
from tests.helpers.batching import submit_together
from tests.helpers.images import sample_pixels
from tests.helpers.runtimes import ARTIFACT_RUNTIMES, write_runtime_models

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime_models(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = write_runtime_models(exported_models, tmp_path_factory.mktemp("runtime-models"))
    return root


@pytest.fixture(scope="module")
def broken_litert_int8(runtime_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime models with separable's int8 LiteRT file corrupted and regular's missing."""
    root = tmp_path_factory.mktemp("broken-runtime-models")
    for name in ("regular", "separable"):
        shutil.copytree(runtime_models / name, root / name)
    (root / "separable" / "1" / "model_int8.tflite").write_bytes(b"not a flatbuffer" * 64)
    (root / "regular" / "1" / "model_int8.tflite").unlink()
    return root


@pytest.fixture(scope="module")
def client(broken_litert_int8: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=broken_litert_int8,
        runtime="onnxruntime",
        compare_runtimes=",".join(ARTIFACT_RUNTIMES),
        warmup_runs=1,
    )
    with ready_client(settings) as ready:
        yield ready


@pytest.mark.parametrize("runtime", ARTIFACT_RUNTIMES)
def test_runtime_batched_answers_equal_single_ones(runtime_models: Path, runtime: str) -> None:
    engine = open_engine(runtime_models / "separable" / "1", runtime, threads=1)
    pixels = [sample_pixels(seed, width=32, height=32) for seed in range(12)]
    results, sizes = submit_together(engine, pixels, num_classes=10)
    assert max(sizes) > 1, sizes  # the requests really shared engine calls
    for image, result in zip(pixels, results, strict=True):
        single = engine.predict(image[np.newaxis].astype(np.float32))[0]
        np.testing.assert_allclose(result.probabilities, single, atol=1e-6)


def test_every_runtime_named_in_settings_is_known() -> None:
    settings = Settings(compare_runtimes="litert,litert-int8,onnxruntime-int8")
    assert settings.compare_runtime_list == ["tensorflow", *("litert", "litert-int8")] + [
        "onnxruntime-int8"
    ]
    assert set(ARTIFACT_RUNTIMES) < set(RUNTIMES)
    with pytest.raises(ValueError, match="unknown runtime"):
        Settings(compare_runtimes="litert-fp16")


def test_broken_artifact_fails_its_runtime_alone(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    for name in ("regular", "separable"):
        assert models[name]["status"] == "ready"
        runtimes = {r["runtime"]: r for r in models[name]["runtimes"]}
        assert list(runtimes) == ["tensorflow", *ARTIFACT_RUNTIMES]  # RUNTIMES order
        assert not runtimes["tensorflow"]["loaded"]  # recorded, not asked for
        for runtime in ("onnxruntime", "onnxruntime-int8", "litert"):
            assert runtimes[runtime]["loaded"] and runtimes[runtime]["error"] is None
            assert runtimes[runtime]["size_bytes"] > 0
            assert runtimes[runtime]["agreement"] is not None
        broken = runtimes["litert-int8"]
        assert not broken["loaded"] and broken["error"]
        assert "/" not in broken["error"]  # never a file system path
    assert "model_int8.tflite" in models["regular"]["runtimes"][-1]["error"]
    # The serving runtime answers both models.
    response = client.post(
        "/predict",
        content=_png(),
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2


def test_asking_for_a_broken_or_unloaded_runtime_is_409(client: TestClient) -> None:
    state = client.app.state.sepconv  # type: ignore[attr-defined]
    entry = state.registry.get("separable")
    assert state.registry.require_engine(entry, "litert").runtime == "litert"
    for runtime in ("litert-int8", "tensorflow"):  # broken; not loaded at start-up
        with pytest.raises(ApiError) as raised:
            state.registry.require_engine(entry, runtime)
        assert raised.value.status_code == 409
        assert raised.value.code == "RUNTIME_UNAVAILABLE"


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(sample_pixels(1, width=32, height=32)).save(buffer, format="PNG")
    return buffer.getvalue()
