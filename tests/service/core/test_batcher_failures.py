"""A batcher that cannot die silently: a failing batch fails alone, a crashed worker restarts.

The batcher is the unit under test, so its engine is a tiny real stand-in that wraps the real
TensorFlow engine and answers the next few calls wrongly (too few rows, a raise, a crash); the
calls after those are the real engine's. The load check and the HTTP answers run on real
SavedModels, one of them exported with a fixed batch dimension of 1.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.core.batching import BatchResult, MicroBatcher
from service.core.engines import Batch, Engine, Probabilities, TensorFlowEngine
from service.core.inference import InferenceService
from service.core.registry import ModelRegistry
from service.errors import ApiError
from service.main import create_app
from service.process.metrics import ServiceMetrics
from service.process.settings import Settings
from tests.helpers.images import encode, multipart, sample_pixels
from tests.helpers.reliability import assert_error, wait_until_loaded

T = TypeVar("T")
TOLERANCE = 1e-5
SECRET_PATH = "/srv/sepconv/secret/kernels.so"
PNG = {"content-type": "image/png"}
IMAGE = encode(Image.fromarray(sample_pixels(7), "RGB"), "PNG")


class WorkerAbort(BaseException):
    """Not an ``Exception``: it passes every ``except Exception`` and ends the worker task, as a
    fault outside the batch protection would."""


class FaultyEngine:
    """The real engine, except that each of ``faults`` spoils one call, in order:
    ``short`` answers a row too few, ``raise`` raises RuntimeError, ``abort`` crashes the worker.
    """

    def __init__(self, engine: Engine, faults: list[str]) -> None:
        self.engine = engine
        self.faults = list(faults)
        self.calls: list[int] = []
        self.runtime = engine.runtime
        self.device = engine.device
        self.parameters = engine.parameters
        self.trainable_parameters = engine.trainable_parameters

    def predict(self, images: Batch) -> Probabilities:
        self.calls.append(len(images))
        fault = self.faults.pop(0) if self.faults else None
        if fault == "short":
            return self.engine.predict(images)[:-1]
        if fault == "raise":
            raise RuntimeError(f"kernel failed in {SECRET_PATH}")
        if fault == "abort":
            raise WorkerAbort
        return self.engine.predict(images)


@pytest.fixture(scope="module")
def engine(exported_models: Path) -> TensorFlowEngine:
    return TensorFlowEngine(exported_models / "separable" / "1")


def images(count: int) -> list[np.ndarray]:
    return [sample_pixels(seed, width=32, height=32) for seed in range(count)]


def alone(engine: TensorFlowEngine, pixels: np.ndarray) -> np.ndarray:
    answer: np.ndarray = engine.predict(pixels[np.newaxis].astype(np.float32))[0]
    return answer


def run_with_batcher(
    engine: FaultyEngine,
    scenario: Callable[[MicroBatcher], Awaitable[T]],
    on_restart: Callable[[str], None] | None = None,
) -> T:
    """``scenario(batcher)`` on a fresh batcher over ``engine``, stopped afterwards."""

    async def run() -> T:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                "separable",
                engine,
                executor,
                max_batch_size=8,
                batch_timeout_ms=5,
                max_queue=64,
                num_classes=10,
                on_restart=on_restart,
            )
            try:
                return await asyncio.wait_for(scenario(batcher), timeout=30)
            finally:
                await batcher.stop()

    return asyncio.run(run())


async def one_batch(batcher: MicroBatcher, pixels: list[np.ndarray]) -> list[Any]:
    """Queue ``pixels`` before the worker runs, so they ride one engine call; their outcomes."""
    waiting = [asyncio.ensure_future(batcher.submit(p)) for p in pixels]
    while batcher.depth != len(pixels):
        await asyncio.sleep(0.001)
    batcher.start()
    return list(await asyncio.gather(*waiting, return_exceptions=True))


def assert_engine_errors(outcomes: list[Any], *fragments: str) -> None:
    for outcome in outcomes:
        assert isinstance(outcome, ApiError), outcome
        assert (outcome.status_code, outcome.code) == (500, "ENGINE_ERROR")
        assert "'separable'" in outcome.message
        for fragment in fragments:
            assert fragment in outcome.message, outcome.message
        assert SECRET_PATH not in outcome.message and "Traceback" not in outcome.message


def test_batcher_too_few_rows_fail_only_that_batch(
    engine: TensorFlowEngine, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = FaultyEngine(engine, ["short"])
    first, later = images(3), images(4)[3]

    async def scenario(batcher: MicroBatcher) -> tuple[list[Any], BatchResult]:
        return await one_batch(batcher, first), await batcher.submit(later)

    with caplog.at_level(logging.ERROR, logger="sepconv.batching"):
        failed, served = run_with_batcher(faulty, scenario)

    assert faulty.calls == [3, 1]
    assert_engine_errors(failed, "2 rows for a batch of 3", "None batch dimension")
    np.testing.assert_allclose(served.probabilities, alone(engine, later), atol=TOLERANCE)
    logged = [r for r in caplog.records if r.name == "sepconv.batching"]
    assert [getattr(r, "model", None) for r in logged] == ["separable"]
    assert "2 rows for a batch of 3" in getattr(logged[0], "reason", "")


def test_batcher_engine_raising_fails_only_that_batch(
    engine: TensorFlowEngine, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = FaultyEngine(engine, ["raise"])
    first, later = images(2), images(3)[2]

    async def scenario(batcher: MicroBatcher) -> tuple[list[Any], BatchResult]:
        return await one_batch(batcher, first), await batcher.submit(later)

    with caplog.at_level(logging.ERROR, logger="sepconv.batching"):
        failed, served = run_with_batcher(faulty, scenario)

    assert_engine_errors(failed, "RuntimeError")
    assert served.batch_size == 1
    np.testing.assert_allclose(served.probabilities, alone(engine, later), atol=TOLERANCE)
    logged = [r for r in caplog.records if r.name == "sepconv.batching"]
    assert [getattr(r, "model", None) for r in logged] == ["separable"]
    assert logged[0].exc_info is not None  # the trace goes to the log, never to the client


def test_batcher_crashed_worker_restarts_and_is_counted(engine: TensorFlowEngine) -> None:
    faulty = FaultyEngine(engine, ["abort", "abort"])
    restarts: list[str] = []
    first, again, later = images(2), images(3)[2], images(4)[3]

    async def scenario(batcher: MicroBatcher) -> tuple[list[Any], Any, BatchResult, int]:
        failed = await one_batch(batcher, first)
        # A second crash right after the first: restarted again, after a short back-off.
        crashed_again = (await asyncio.gather(batcher.submit(again), return_exceptions=True))[0]
        return failed, crashed_again, await batcher.submit(later), batcher.restarts

    failed, crashed_again, served, counted = run_with_batcher(
        faulty, scenario, on_restart=restarts.append
    )

    assert_engine_errors([*failed, crashed_again], "crashed (WorkerAbort)")
    assert restarts == ["separable", "separable"] and counted == 2
    assert faulty.calls == [2, 1, 1]
    np.testing.assert_allclose(served.probabilities, alone(engine, later), atol=TOLERANCE)


def test_inference_service_counts_batcher_restarts(exported_models: Path) -> None:
    settings = Settings(model_dir=exported_models, models="separable", warmup_runs=1)
    registry = ModelRegistry(exported_models, ["separable"], "tensorflow", warmup_runs=1)
    registry.load_all()
    metrics = ServiceMetrics()
    inference = InferenceService(registry, settings, metrics)
    (entry,) = registry.ready_entries()
    real = entry.engine
    assert isinstance(real, TensorFlowEngine)
    pixels = images(1)[0]

    def restarts() -> float | None:
        return metrics.registry.get_sample_value(
            "sepconv_batcher_restarts_total", {"model": "separable"}
        )

    async def run() -> str:
        inference.start_ready_models()
        try:
            assert restarts() == 0.0
            inference.batchers["separable"].engine = FaultyEngine(real, ["abort"])
            with pytest.raises(ApiError) as crashed:
                await inference.predict(pixels, [entry], top_k=3)
            assert crashed.value.code == "ENGINE_ERROR"
            (answer,) = await asyncio.wait_for(inference.predict(pixels, [entry], top_k=3), 30)
            return answer.label
        finally:
            await inference.stop()

    label = asyncio.run(run())

    assert label in entry.classes
    assert restarts() == 1.0


def export_fixed_batch_model(target: Path, refuses_larger_batches: bool) -> None:
    """A real SavedModel whose batch dimension is fixed at 1: it either answers one row
    whatever it is given, or fails on any larger batch (a reshape to ``[1, -1]``)."""
    import tensorflow as tf

    weights = tf.Variable(tf.random.stateless_normal([32 * 32 * 3, 10], seed=[0, 1]) * 1e-3)

    def probabilities(image: tf.Tensor) -> dict[str, tf.Tensor]:
        if refuses_larger_batches:
            flat = tf.reshape(image, [1, -1])
        else:
            # Averaged over the batch too: one row, however many images come in.
            flat = tf.reshape(tf.reduce_mean(image, axis=0), [1, -1])
        return {"probabilities": tf.nn.softmax(flat @ weights)}

    serve = tf.function(
        probabilities,
        input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")],
    )

    root = tf.train.Checkpoint()
    root.variables = [weights]
    root.trainable_variables = [weights]
    root.serve = serve
    tf.saved_model.save(root, str(target), signatures={"serving_default": serve})


@pytest.mark.parametrize(
    ("refuses_larger_batches", "reason"),
    [
        (False, "the engine answered 1 rows for a batch of 2"),
        (True, "the engine failed on a batch of 2 (InvalidArgumentError)"),
    ],
    ids=["answers-one-row", "refuses-batch-of-two"],
)
def test_fixed_batch_model_is_refused_at_load(
    exported_models: Path, tmp_path: Path, refuses_larger_batches: bool, reason: str
) -> None:
    model_dir = tmp_path / "models"
    shutil.copytree(exported_models / "separable", model_dir / "separable")
    export_fixed_batch_model(model_dir / "fixed" / "1", refuses_larger_batches)

    with TestClient(create_app(Settings(model_dir=model_dir, warmup_runs=1))) as client:
        wait_until_loaded(client)
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        served = client.post("/predict", params={"model": "separable"}, content=IMAGE, headers=PNG)

    assert listed["fixed"]["status"] == "failed"
    error = listed["fixed"]["error"]
    assert reason in error
    assert "the model must accept any batch size (export with a None batch dimension)" in error
    assert str(model_dir) not in error
    assert listed["separable"]["status"] == "ready"
    assert served.status_code == 200, served.text
    assert [p["model"] for p in served.json()["predictions"]] == ["separable"]


@pytest.fixture
def swappable_client(exported_models: Path) -> Iterator[TestClient]:
    """Its own app (not the shared session one): the test swaps a model's engine."""
    settings = Settings(model_dir=exported_models, models="separable", warmup_runs=1)
    with TestClient(create_app(settings)) as started:
        wait_until_loaded(started)
        yield started


def test_engine_error_reaches_the_client_in_the_envelope(
    swappable_client: TestClient, exported_models: Path
) -> None:
    client = swappable_client
    state = client.app.state.sepconv  # type: ignore[attr-defined]
    entry = state.registry.get("separable")
    # Both paths into the batcher: a raw image body and a multipart upload.
    faulty = FaultyEngine(entry.engine, ["short", "short"])
    entry.engine = faulty
    state.inference.batchers["separable"].engine = faulty

    raw = client.post("/predict", params={"model": "separable"}, content=IMAGE, headers=PNG)
    upload = client.post("/predict", params={"model": "separable"}, files=multipart(IMAGE))
    healed = client.post("/predict", params={"model": "separable"}, content=IMAGE, headers=PNG)

    for failed in (raw, upload):
        message = assert_error(failed, 500, "ENGINE_ERROR", server_paths=[exported_models])
        assert "'separable'" in message and "0 rows for a batch of 1" in message
        assert set(failed.json()) == {"error"}
    assert healed.status_code == 200, healed.text
    assert faulty.calls == [1, 1, 1]
    assert 'sepconv_batcher_restarts_total{model="separable"} 0.0' in client.get("/metrics").text
