"""``/compare``: engines straight from the registry, uploads decoded as ``/predict`` decodes
them, runtimes loaded at start-up, one latency summary shared with the benchmark, and a
headline that puts the accuracy cost next to the speed gain."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sepconv_bench.engine import EngineTiming, time_engine
from sepconv_contract import Interval, ModelMetadata, PairedComparison, read_metadata
from sepconv_contract import write_metadata as write_model_metadata
from service.core.comparison import accuracy_cost, run_comparison, synthetic_image
from service.core.latency import images_per_second, latency_stats, time_rounds
from service.core.registry import ModelEntry, ModelRegistry
from service.errors import ApiError
from service.process.settings import Settings
from tests.helpers.apps import MODELS, ready_client
from tests.helpers.images import image_bytes, multipart
from tests.helpers.reliability import png_claiming

NOT_AN_IMAGE = b"this is not a picture\n" * 20


def paired_metadata(metadata: ModelMetadata, accuracy: float, other: str) -> ModelMetadata:
    """``metadata`` with a test evaluation paired against ``other`` (regular 1.6 points ahead)."""
    sign = 1.0 if metadata.name == "regular" else -1.0
    interval = Interval(low=0.008, high=0.024, method="newcombe")
    return metadata.model_copy(
        update={
            "test_accuracy": accuracy,
            "test_accuracy_interval": Interval(
                low=accuracy - 0.008, high=accuracy + 0.008, method="wilson"
            ),
            "test_images": 10_000,
            "paired": [
                PairedComparison(
                    other=other,
                    images=10_000,
                    both_correct=7_800,
                    only_this_correct=400 if sign > 0 else 240,
                    only_other_correct=240 if sign > 0 else 400,
                    both_wrong=1_560,
                    accuracy_difference=sign * 0.016,
                    difference_interval=(
                        interval
                        if sign > 0
                        else interval.model_copy(update={"low": -0.024, "high": -0.008})
                    ),
                    mcnemar_p=0.0003,
                )
            ],
        }
    )


@pytest.fixture(scope="module")
def evaluated_models(exported_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test SavedModels with the metadata a paired test evaluation writes."""
    root = tmp_path_factory.mktemp("evaluated-models")
    accuracies = {"regular": 0.82, "separable": 0.804}
    for name, other in (("regular", "separable"), ("separable", "regular")):
        shutil.copytree(exported_models / name, root / name)
        folder = root / name / "1"
        metadata = read_metadata(folder)
        assert metadata is not None
        write_model_metadata(folder, paired_metadata(metadata, accuracies[name], other))
    return root


@pytest.fixture(scope="module")
def evaluated_client(evaluated_models: Path) -> Iterator[TestClient]:
    with ready_client(Settings(model_dir=evaluated_models, warmup_runs=1)) as ready:
        yield ready


def compare(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/compare", params={"repeats": 3, "warmup": 1, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# Selection: the registry, not the batchers


def test_compare_works_while_the_batchers_are_stopped(exported_models: Path) -> None:
    with ready_client(Settings(model_dir=exported_models, warmup_runs=1)) as client:
        inference = client.app.state.sepconv.inference  # type: ignore[attr-defined]
        client.portal.call(inference.stop)  # type: ignore[union-attr]
        inference.batchers.clear()

        # /predict needs its batchers; /compare runs the engines itself.
        assert error_of(client.post("/predict", files=multipart(image_bytes()))) == (
            503,
            "NOT_READY",
        )
        body = compare(client)
        assert [m["model"] for m in body["models"]] == MODELS
        response = client.post("/compare", params={"repeats": 2}, files=multipart(image_bytes()))
        assert response.status_code == 200, response.text


def test_registry_select_answers_404_and_503_like_predict(exported_models: Path) -> None:
    registry = ModelRegistry(exported_models, None, "tensorflow")
    for names in (None, [], ["all"], ["separable"]):
        with pytest.raises(ApiError) as loading:
            registry.select(names)
        assert (loading.value.status_code, loading.value.code) == (503, "NOT_READY")
        assert loading.value.headers == {"Retry-After": "1"}
    with pytest.raises(ApiError) as unknown:
        registry.select(["vgg", "separable"])
    assert (unknown.value.status_code, unknown.value.code) == (404, "MODEL_NOT_FOUND")

    separable = registry.get("separable")
    assert separable is not None
    separable.status = "ready"  # ready without a batcher: enough for /compare
    assert registry.select(["separable", "separable"]) == [separable]
    assert registry.select(["all"]) == [separable]


# Uploads: the /predict decoding path


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(NOT_AN_IMAGE, 400, "INVALID_IMAGE"), (png_claiming(10_000, 10_000), 413, "IMAGE_TOO_LARGE")],
    ids=["not an image", "10000x10000 PNG"],
)
def test_compare_upload_refuses_what_predict_refuses(
    client: TestClient, body: bytes, status: int, code: str
) -> None:
    predicted = client.post("/predict", files=multipart(body))
    compared = client.post("/compare", params={"repeats": 1}, files=multipart(body))

    assert error_of(predicted) == error_of(compared) == (status, code)
    assert compared.json()["error"]["message"] == predicted.json()["error"]["message"]


# Runtimes: loaded at start-up, never mid-request


def test_compare_on_an_unconfigured_runtime_is_conflict(client: TestClient) -> None:
    response = client.get("/compare", params={"runtimes": "onnxruntime", "repeats": 1})

    assert error_of(response) == (409, "RUNTIME_UNAVAILABLE")
    message = response.json()["error"]["message"]
    assert "SEPCONV_COMPARE_RUNTIMES" in message and "/" not in message


def test_registry_records_a_comparison_runtime_that_fails_to_load(exported_models: Path) -> None:
    registry = ModelRegistry(
        exported_models, ["separable"], "tensorflow", compare_runtimes=["tensorflow", "onnxruntime"]
    )
    entry = registry.get("separable")
    assert entry is not None and registry.compare_runtimes == ["onnxruntime"]

    registry.load_extra_runtimes(entry)  # no model.onnx beside these SavedModels

    assert registry.engine(entry, "onnxruntime") is None
    reason = entry.runtime_errors["onnxruntime"]
    assert reason.startswith(("FileNotFoundError", "ModuleNotFoundError", "ImportError"))
    assert str(exported_models) not in reason and "/" not in reason


def test_settings_refuse_an_unknown_compare_runtime() -> None:
    with pytest.raises(ValueError, match="tensorrt"):
        Settings(compare_runtimes="tensorflow,tensorrt")
    settings = Settings(runtime="onnxruntime", compare_runtimes=" tensorflow , onnxruntime")
    assert settings.compare_runtime_list == ["onnxruntime", "tensorflow"]


# The summary: speed against what, and at what accuracy


def test_compare_headline_says_accuracy_unknown_without_an_evaluation(client: TestClient) -> None:
    body = compare(client)
    summary = body["summary"]

    slowest = max(body["models"], key=lambda m: m["latency_ms"]["p50"])
    assert summary["speedup_versus"] == slowest["model"] != summary["fastest"]
    assert summary["accuracy"] is None
    assert re.fullmatch(
        rf"{summary['fastest']} is \d+\.\dx faster at p50 latency than {slowest['model']}; "
        r"the accuracy difference is unknown \(no test evaluation in the models' metadata\)",
        summary["headline"],
    ), summary["headline"]
    for entry in body["models"]:  # throughput from the headline's statistic, the p50
        expected = round(body["batch_size"] * 1000.0 / entry["latency_ms"]["p50"], 2)
        assert entry["images_per_second"] == expected


def test_compare_headline_states_the_accuracy_cost_with_its_ci_and_p(
    evaluated_client: TestClient,
) -> None:
    summary = compare(evaluated_client)["summary"]

    # Whichever model the (untrained, tiny) test models make the faster, the sentence says
    # what its speed costs, or gains, against the other.
    fastest = summary["fastest"]
    direction = "less" if fastest == "separable" else "more"
    assert f"faster at p50 latency than {summary['speedup_versus']}" in summary["headline"]
    assert summary["headline"].endswith(
        f", 1.6 points {direction} accurate (95% CI 0.8 to 2.4, McNemar p = 0.0003)"
    ), summary["headline"]
    accuracy = summary["accuracy"]
    assert (accuracy["model"], accuracy["versus"]) == (fastest, summary["speedup_versus"])
    assert accuracy["difference"] == pytest.approx(-0.016 if direction == "less" else 0.016)
    assert accuracy["mcnemar_p"] == 0.0003 and accuracy["test_images"] == 10_000


def entry_with(name: str, metadata: ModelMetadata | None) -> ModelEntry:
    return ModelEntry(name, None, 1, "tensorflow", "ready", metadata=metadata)


def test_accuracy_cost_reads_a_pair_recorded_on_either_side() -> None:
    regular = paired_metadata(ModelMetadata(name="regular", version=1), 0.82, "separable")
    separable = ModelMetadata(name="separable", version=1, test_accuracy=0.804)

    # Recorded on the slow side only: every sign flips.
    cost = accuracy_cost(entry_with("separable", separable), entry_with("regular", regular))

    assert cost is not None and cost.difference == pytest.approx(-0.016)
    assert cost.difference_interval is not None
    assert (cost.difference_interval.low, cost.difference_interval.high) == (-0.024, -0.008)
    assert cost.mcnemar_p == 0.0003


def test_accuracy_cost_without_a_pair_uses_the_test_accuracies_unpaired() -> None:
    fast = entry_with("separable", ModelMetadata(name="separable", version=1, test_accuracy=0.8))
    slow = entry_with("regular", ModelMetadata(name="regular", version=1, test_accuracy=0.83))

    cost = accuracy_cost(fast, slow)

    assert cost is not None and cost.difference == pytest.approx(-0.03)
    assert cost.difference_interval is None and cost.mcnemar_p is None
    assert accuracy_cost(fast, entry_with("regular", None)) is None
    assert accuracy_cost(fast, fast) is None  # one network on two runtimes


# One latency loop and one summary, shared with the benchmark


class CountingEngine:
    """A tiny real engine: uniform probabilities, and a log of who was called when."""

    device = "CPU:0"
    parameters = 10
    trainable_parameters = 10

    def __init__(self, runtime: str, log: list[str]) -> None:
        self.runtime = runtime
        self.log = log

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.log.append(self.runtime)
        return np.full((len(images), 10), 0.1, np.float32)


def test_time_rounds_interleaves_and_respects_rounds_and_budget() -> None:
    log: list[str] = []
    samples = time_rounds(
        [lambda: log.append("a"), lambda: log.append("b")], max_rounds=3, warmup_rounds=1
    )
    assert log == ["a", "b"] * 4 and [len(s) for s in samples] == [3, 3]
    assert all(ms >= 0 for s in samples for ms in s)

    spent = time_rounds([lambda: None], max_rounds=1000, budget_s=0.0, min_rounds=3)
    assert len(spent[0]) == 3


def test_bench_and_compare_summarise_samples_identically() -> None:
    samples = [2.0, 1.0, 4.0, 3.0, 10.0, 2.5]
    stats = latency_stats(samples)

    timing = EngineTiming.from_samples("separable", "tensorflow", 4, samples)

    assert (timing.latency_ms_p50, timing.latency_ms_mean) == (stats.p50, stats.mean)
    assert (timing.latency_ms_p95, timing.latency_ms_p99) == (stats.p95, stats.p99)
    assert timing.images_per_second == images_per_second(4, stats) == round(4000 / stats.p50, 2)
    assert timing.calls == len(samples)


def test_bench_and_compare_time_through_the_same_loop() -> None:
    log: list[str] = []
    engines = [CountingEngine("tensorflow", log), CountingEngine("onnxruntime", log)]
    entry = entry_with("separable", None)

    answer = run_comparison(
        [(entry, engine) for engine in engines],
        synthetic_image(),
        repeats=4,
        batch_size=2,
        warmup=1,
        uploaded=True,
    )
    timing = time_engine("separable", engines[0], 2, max_calls=5, warmup=0)

    assert log[:10] == ["tensorflow", "onnxruntime"] * 5  # warm-up, then four timed rounds
    assert answer.repeats == 4 and timing.calls == 5
    for model in answer.models:
        assert model.images_per_second == images_per_second(2, model.latency_ms)
        assert model.prediction is not None and model.prediction.confidence == pytest.approx(0.1)
    assert answer.summary.headline.endswith(
        "the same network on another runtime, so the same accuracy"
    )
