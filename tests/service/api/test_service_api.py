"""The HTTP contract of ``/models``, ``/compare``, health and metrics, on real SavedModels."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.process.settings import Settings
from tests.helpers.apps import (
    CLASSES,
    MACS_PER_IMAGE,
    MODELS,
    PARAMETERS,
    predict,
    ready_client,
    wait_until_ready,
)
from tests.helpers.images import image_bytes, multipart

# GET /models


def test_models_lists_both_models_with_their_facts(client: TestClient) -> None:
    response = client.get("/models")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [m["name"] for m in body["models"]] == MODELS
    for info in body["models"]:
        name = info["name"]
        assert info["parameters"] == PARAMETERS[name]
        assert info["macs_per_image"] == MACS_PER_IMAGE[name]
        assert info["device"] == "CPU:0"
        assert info["runtime"] == "tensorflow"
        assert info["status"] == "ready"
        assert info["input_shape"] == [None, 32, 32, 3]
        assert info["test_accuracy"] is None
        assert info["classes"] == CLASSES
        assert info["version"] == 1
        assert info["architecture"] == name
        assert info["error"] is None
        assert info["size_bytes"] > 0
    assert '"input_shape":[null,32,32,3]' in response.text.replace(" ", "")


def test_models_get_one_answers_its_facts(client: TestClient) -> None:
    response = client.get("/models/regular")

    assert response.status_code == 200
    info = response.json()
    assert info["name"] == "regular"
    assert info["parameters"] == PARAMETERS["regular"]
    assert info == client.get("/models").json()["models"][0]


def test_models_get_unknown_is_model_not_found(client: TestClient) -> None:
    response = client.get("/models/nope")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "MODEL_NOT_FOUND"
    assert "regular" in error["message"] and "separable" in error["message"]


@pytest.mark.parametrize("name", MODELS)
def test_models_history_without_history_file_is_404(client: TestClient, name: str) -> None:
    response = client.get(f"/models/{name}/history")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


# /compare


def test_compare_synthetic_times_every_model(client: TestClient) -> None:
    response = client.get("/compare", params={"repeats": 5, "batch_size": 2, "warmup": 1})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["repeats"], body["batch_size"], body["warmup"]) == (5, 2, 1)
    assert body["input"] == "synthetic"
    assert body["device"] == "CPU:0"
    assert [m["model"] for m in body["models"]] == MODELS
    for entry in body["models"]:
        latency = entry["latency_ms"]
        assert set(latency) == {"mean", "std", "min", "p50", "p95", "p99", "max"}
        assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["max"]
        assert entry["images_per_second"] > 0
        assert entry["parameters"] == PARAMETERS[entry["model"]]
        assert entry["macs_per_image"] == MACS_PER_IMAGE[entry["model"]]
        assert entry["runtime"] == "tensorflow"
        assert entry["test_accuracy"] is None
        assert entry["prediction"] is None
    summary = body["summary"]
    assert summary["fastest"] in MODELS
    assert summary["speedup"] >= 1
    assert summary["parameter_ratio"] == pytest.approx(6.786, abs=1e-3)
    assert summary["mac_ratio"] == pytest.approx(8.352, abs=1e-3)
    assert summary["agreement"] is None


def test_compare_upload_adds_each_models_prediction(client: TestClient) -> None:
    data = image_bytes("PNG", seed=10)

    response = client.post("/compare", params={"repeats": 2, "warmup": 0}, files=multipart(data))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["input"] == "upload"
    single = predict(client, data)
    for entry, alone in zip(body["models"], single["predictions"], strict=True):
        assert entry["prediction"]["label"] == alone["label"]
        assert entry["prediction"]["confidence"] == pytest.approx(alone["confidence"], abs=1e-5)
    assert body["summary"]["agreement"] is single["agreement"]


def test_compare_models_query_times_one_model(client: TestClient) -> None:
    response = client.get("/compare", params={"repeats": 2, "warmup": 0, "models": "separable"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["model"] for m in body["models"]] == ["separable"]
    assert body["summary"]["fastest"] == "separable"
    assert body["summary"]["speedup"] == 1.0
    assert body["summary"]["parameter_ratio"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"repeats": 0},
        {"repeats": 1001},
        {"batch_size": 0},
        {"batch_size": 257},
        {"warmup": 101},
        {"repeats": "five"},
    ],
)
def test_compare_out_of_range_query_is_validation_error(
    client: TestClient, params: dict[str, Any]
) -> None:
    response = client.get("/compare", params=params)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert next(iter(params)) in error["message"]


# /health


def test_health_live_is_200(client: TestClient) -> None:
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_health_ready_lists_every_ready_model(client: TestClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert {name: m["status"] for name, m in body["models"].items()} == dict.fromkeys(
        MODELS, "ready"
    )


def test_health_ready_is_503_not_ready_until_the_models_load(exported_models: Path) -> None:
    with TestClient(create_app(Settings(model_dir=exported_models))) as client:
        early = client.get("/health/ready")
        early_predict = client.post("/predict", files=multipart(image_bytes("PNG")))
        wait_until_ready(client)
        late = client.get("/health/ready")

    assert early.status_code == 503
    assert early.headers["Retry-After"] == "1"
    error = early.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["request_id"] == early.headers["X-Request-ID"]
    assert set(error["details"]["models"]) == set(MODELS)
    assert all(m["status"] in ("loading", "ready") for m in error["details"]["models"].values())
    assert early_predict.status_code == 503
    assert early_predict.json()["error"]["code"] == "NOT_READY"
    assert late.status_code == 200


def test_health_ready_with_empty_model_dir_stays_503(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(model_dir=tmp_path))) as client:
        assert client.app.state.sepconv.registry.loaded.wait(timeout=30)  # type: ignore[attr-defined]
        response = client.get("/health/ready")
        models = client.get("/models").json()

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "NOT_READY"
    assert "no models were found" in error["message"]
    assert str(tmp_path) not in error["message"]
    assert models == {"models": [], "count": 0}


@pytest.fixture(scope="module")
def separable_only(
    exported_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The service with SEPCONV_MODELS=separable, on a copy that ships a training history."""
    from training.history import write_history

    root = tmp_path_factory.mktemp("history-models")
    shutil.copytree(exported_models, root, dirs_exist_ok=True)
    epochs = [{"epoch": n, "loss": 2.0 / n, "accuracy": 0.2 * n} for n in (1, 2, 3)]
    write_history(root / "separable" / "1" / "history.json", "separable", epochs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEPCONV_MODELS", "separable")
        settings = Settings(model_dir=root)
    assert settings.model_names == ["separable"]
    with ready_client(settings) as client:
        yield client


def test_settings_models_allowlist_loads_only_that_model(separable_only: TestClient) -> None:
    body = separable_only.get("/models").json()
    answer = predict(separable_only, image_bytes("PNG", seed=11))

    assert body["count"] == 1
    assert [m["name"] for m in body["models"]] == ["separable"]
    assert separable_only.get("/models/regular").status_code == 404
    assert [p["model"] for p in answer["predictions"]] == ["separable"]
    assert list(separable_only.get("/health/ready").json()["models"]) == ["separable"]


def test_models_history_returns_the_shipped_epochs(separable_only: TestClient) -> None:
    response = separable_only.get("/models/separable/history")

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "separable"
    assert [e["epoch"] for e in body["epochs"]] == [1.0, 2.0, 3.0]
    assert body["epochs"][1]["loss"] == pytest.approx(1.0)


# /metrics


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_exposes_every_family_in_prometheus_text(client: TestClient) -> None:
    predict(client, image_bytes("PNG", seed=12))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for family in (
        "sepconv_requests_total",
        "sepconv_request_duration_seconds",
        "sepconv_inference_duration_seconds",
        "sepconv_batch_size",
        "sepconv_queue_depth",
        "sepconv_model_info",
    ):
        assert f"\n{family}" in text, family
    for name in MODELS:
        assert f'sepconv_queue_depth{{model="{name}"}} 0.0' in text
        info = re.search(rf'^sepconv_model_info\{{(.*model="{name}".*)\}} 1\.0$', text, re.M)
        assert info is not None and 'status="ready"' in info.group(1)


def test_metrics_request_counter_increases_after_a_predict(client: TestClient) -> None:
    labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
    before = metric_value(client.get("/metrics").text, "sepconv_requests_total", **labels)

    predict(client, image_bytes("PNG", seed=13))

    after = metric_value(client.get("/metrics").text, "sepconv_requests_total", **labels)
    assert after == before + 1


def test_compare_stops_at_its_time_budget(exported_models: Path) -> None:
    with ready_client(Settings(model_dir=exported_models, compare_budget_s=0.05)) as budgeted:
        response = budgeted.get("/compare", params={"repeats": 1000, "warmup": 0})
    assert response.status_code == 200
    body = response.json()
    assert body["requested_repeats"] == 1000
    assert 1 <= body["repeats"] < 1000


def test_select_refuses_a_ready_model_without_its_batcher(exported_models: Path) -> None:
    from service.core.inference import InferenceService
    from service.core.registry import ModelRegistry
    from service.errors import ApiError
    from service.process.metrics import ServiceMetrics

    settings = Settings(model_dir=exported_models)
    registry = ModelRegistry(exported_models, None, "tensorflow")
    inference = InferenceService(registry, settings, ServiceMetrics())
    registry.get("separable").status = "ready"  # type: ignore[union-attr]
    # Loaded but not yet serving: the answer is 503 NOT_READY, never a 500.
    for model in ("separable", "all"):
        with pytest.raises(ApiError) as refused:
            inference.select(model)
        assert refused.value.status_code == 503 and refused.value.code == "NOT_READY"
