"""``/compare`` as the runtime x precision matrix: every (model, runtime) pair timed carries
that runtime's recorded accuracy, and each runtime the separable network's speed-up over the
regular one against the multiply-adds it saves. Real engines on every runtime's artifacts of
the test models; no assertion on how fast anything is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sepconv_contract import ModelMetadata, read_metadata
from sepconv_contract.schemas import CompareResponse
from service.api.compare_example import compare_example
from service.core.comparison import run_comparison, synthetic_image
from service.core.registry import ModelEntry
from service.main import create_app
from service.process.settings import Settings
from tests.helpers.apps import MACS_PER_IMAGE, MODELS, ready_client
from tests.service.api.test_compare import compare

LOADED = ("tensorflow", "onnxruntime", "onnxruntime-int8", "litert", "litert-int8")
ASKED = ["tensorflow", "onnxruntime-int8", "litert-int8"]


@pytest.fixture(scope="module")
def matrix_client(runtime_artifact_models: Path) -> Iterator[TestClient]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    settings = Settings(
        model_dir=runtime_artifact_models,
        compare_runtimes=",".join(LOADED[1:]),
        warmup_runs=1,
    )
    with ready_client(settings) as ready:
        yield ready


@pytest.fixture(scope="module")
def asked(matrix_client: TestClient) -> dict[str, Any]:
    """One comparison of both models on three runtimes, the answer most tests read."""
    return compare(matrix_client, runtimes=",".join(ASKED))


def cells(answer: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["model"], m["runtime"]): m for m in answer["models"]}


@pytest.mark.slow
def test_compare_matrix_has_each_pair_timed_exactly_once(asked: dict[str, Any]) -> None:
    pairs = [(m["model"], m["runtime"]) for m in asked["models"]]

    assert sorted(pairs) == sorted((model, runtime) for model in MODELS for runtime in ASKED)
    matrix = asked["matrix"]
    assert matrix["models"] == MODELS and matrix["runtimes"] == ASKED
    assert [row["runtime"] for row in matrix["separable_speedups"]] == ASKED


@pytest.mark.slow
def test_compare_entries_carry_each_runtimes_recorded_accuracy(
    asked: dict[str, Any], runtime_artifact_models: Path
) -> None:
    for (model, runtime), entry in cells(asked).items():
        metadata = read_metadata(runtime_artifact_models / model / "1")
        assert metadata is not None and metadata.runtimes is not None
        artifact = metadata.runtimes[runtime]
        accuracy = entry["runtime_accuracy"]

        assert entry["precision"] == artifact.precision
        assert accuracy["test_accuracy"] == artifact.test_accuracy
        assert accuracy["agreement"] == artifact.agreement
        assert accuracy["test_images"] == artifact.test_images
        assert artifact.test_accuracy_interval is not None
        assert accuracy["test_accuracy_interval"] == artifact.test_accuracy_interval.model_dump()
        # The SavedModel's own accuracy stays where it was.
        assert entry["test_accuracy"] == metadata.test_accuracy


@pytest.mark.slow
def test_compare_matrix_speedup_is_regular_over_separable_against_the_mac_ratio(
    asked: dict[str, Any],
) -> None:
    grid = cells(asked)
    mac_ratio = round(MACS_PER_IMAGE["regular"] / MACS_PER_IMAGE["separable"], 3)
    assert asked["matrix"]["mac_ratio"] == mac_ratio == 8.352

    for row in asked["matrix"]["separable_speedups"]:
        regular, separable = grid["regular", row["runtime"]], grid["separable", row["runtime"]]
        slow, fast = regular["latency_ms"]["p50"], separable["latency_ms"]["p50"]
        assert (row["regular_p50_ms"], row["separable_p50_ms"]) == (slow, fast)
        assert row["speedup"] == round(slow / fast, 3)
        assert row["throughput_ratio"] == round(
            separable["images_per_second"] / regular["images_per_second"], 3
        )
        assert row["throughput_ratio"] == pytest.approx(row["speedup"], rel=0.01)
        assert row["mac_ratio"] == mac_ratio
        assert row["depthwise_efficiency"] == round(row["speedup"] / mac_ratio, 3)
        assert row["precision"] == separable["precision"]
        expected = (
            separable["runtime_accuracy"]["test_accuracy"]
            - regular["runtime_accuracy"]["test_accuracy"]
        )
        assert row["accuracy_difference"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_compare_speedup_over_tensorflow_needs_tensorflow_timed(
    asked: dict[str, Any], matrix_client: TestClient
) -> None:
    grid = cells(asked)
    for (model, runtime), entry in grid.items():
        reference = grid[model, "tensorflow"]["latency_ms"]["p50"]
        expected = round(reference / entry["latency_ms"]["p50"], 3)
        assert entry["speedup_over_tensorflow"] == expected
        assert runtime != "tensorflow" or expected == 1.0

    without = compare(matrix_client, runtimes="onnxruntime,litert")
    assert {m["speedup_over_tensorflow"] for m in without["models"]} == {None}
    assert without["matrix"]["runtimes"] == ["onnxruntime", "litert"]


@pytest.mark.slow
def test_compare_matrix_of_one_network_has_no_speedups(matrix_client: TestClient) -> None:
    answer = compare(matrix_client, models="separable", runtimes="litert,onnxruntime-int8")

    matrix = answer["matrix"]
    assert matrix["models"] == ["separable"] and matrix["runtimes"] == [
        "litert",
        "onnxruntime-int8",
    ]
    assert matrix["separable_speedups"] == [] and matrix["mac_ratio"] is None
    assert [m["precision"] for m in answer["models"]] == ["float32", "int8"]


@pytest.mark.slow
def test_compare_stream_ends_with_the_same_matrix(matrix_client: TestClient) -> None:
    response = matrix_client.get(
        "/compare",
        params={"repeats": 2, "warmup": 0, "runtimes": "litert-int8,tensorflow", "stream": "true"},
    )
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines()]

    assert lines[-1]["event"] == "result"
    result = CompareResponse.model_validate(lines[-1])
    assert result.matrix is not None
    assert result.matrix.runtimes == ["litert-int8", "tensorflow"]
    assert [row.runtime for row in result.matrix.separable_speedups] == result.matrix.runtimes
    for row in result.matrix.separable_speedups:
        assert row.speedup is not None and row.mac_ratio is not None
        assert row.depthwise_efficiency == round(row.speedup / row.mac_ratio, 3)
    assert all(m.runtime_accuracy is not None for m in result.models)


def test_compare_without_recorded_runtimes_answers_null_accuracy(client: TestClient) -> None:
    # The plain test models: exported, never evaluated, no runtime artifacts recorded.
    answer = compare(client)

    assert {m["runtime"] for m in answer["models"]} == {"tensorflow"}
    assert all(m["runtime_accuracy"] is None for m in answer["models"])
    (row,) = answer["matrix"]["separable_speedups"]
    assert row["runtime"] == "tensorflow" and row["accuracy_difference"] is None
    assert row["mac_ratio"] == 8.352 and row["depthwise_efficiency"] is not None


class ConstantEngine:
    """A tiny real engine: uniform probabilities, at once."""

    device = "CPU:0"
    parameters = 10
    trainable_parameters = 10

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.full((len(images), 10), 0.1, np.float32)


def test_compare_tensorflow_accuracy_falls_back_to_the_savedmodels_evaluation() -> None:
    # Evaluated before runtimes were exported: the SavedModel's accuracy is tensorflow's only.
    metadata = ModelMetadata(name="separable", version=1, test_accuracy=0.69, test_images=10_000)
    entry = ModelEntry("separable", None, 1, "tensorflow", "ready", metadata=metadata)

    answer = run_comparison(
        [(entry, ConstantEngine("tensorflow")), (entry, ConstantEngine("litert"))],
        synthetic_image(),
        repeats=2,
        batch_size=1,
        warmup=0,
        uploaded=False,
    )

    on_tensorflow, on_litert = answer.models
    assert on_tensorflow.runtime_accuracy is not None
    assert on_tensorflow.runtime_accuracy.test_accuracy == 0.69
    assert on_tensorflow.runtime_accuracy.agreement is None  # never measured, not assumed
    assert on_litert.runtime_accuracy is None
    assert answer.matrix is not None and answer.matrix.separable_speedups == []


def test_compare_openapi_example_is_a_consistent_answer(tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=tmp_path))
    operation = app.openapi()["paths"]["/compare"]["get"]
    example = operation["responses"]["200"]["content"]["application/json"]["example"]

    # The document drops the example's nulls; what is left is the same answer.
    answer = CompareResponse.model_validate(example)
    assert answer == CompareResponse.model_validate(compare_example())
    assert answer.matrix is not None and answer.matrix.mac_ratio == 8.352
    for row in answer.matrix.separable_speedups:
        assert row.speedup is not None
        assert row.depthwise_efficiency == round(row.speedup / 8.352, 3)
    (runtimes,) = [p for p in operation["parameters"] if p["name"] == "runtimes"]
    assert "matrix" in runtimes["description"]


@pytest.mark.slow
def test_compare_headline_across_runtimes_compares_like_with_like(asked: dict[str, Any]) -> None:
    rows = sorted(asked["matrix"]["separable_speedups"], key=lambda row: row["speedup"])
    low, high = rows[0], rows[-1]

    headline = asked["summary"]["headline"]

    # Never the fastest entry against the slowest one on another runtime.
    assert headline.startswith(
        f"On the same runtime, separable is {low['speedup']:.1f}x ({low['runtime']}) to "
        f"{high['speedup']:.1f}x ({high['runtime']}) faster at p50 latency than regular"
    ), headline
    assert "as fp32 models" in headline or "accuracy difference is unknown" in headline
