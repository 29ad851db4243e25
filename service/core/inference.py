"""Runs predictions through the micro-batchers and turns probabilities into answers."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sepconv_contract.schemas import ClassProbability, ModelPrediction
from service.core.batching import BatchResult, MicroBatcher, Pixels, QueueFull
from service.core.engines import Engine
from service.core.registry import ModelEntry, ModelRegistry
from service.errors import model_not_found, not_ready, overloaded
from service.process.metrics import ServiceMetrics
from service.process.settings import Settings
from service.process.tracing import NO_TRACING, Tracing


class InferenceService:
    """The models that serve traffic, each behind its own micro-batcher."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: Settings,
        metrics: ServiceMetrics,
        *,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        # The app's tracing: the batchers record each request's queue and engine spans, and the
        # HTTP layers their decode spans (NO_TRACING: all of them no-ops).
        self.tracing = tracing
        # One inference thread per model: the two models can run at once, and each engine call
        # already spreads over the TensorFlow intra-op pool.
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, len(registry.names) * len(registry.runtimes)),
            thread_name_prefix="inference",
        )
        self.batchers: dict[str, MicroBatcher] = {}
        # The other runtimes loaded at start-up (SEPCONV_COMPARE_RUNTIMES), for ?runtime=: each
        # (model, runtime) has a batcher of its own, so requests that chose it batch together.
        self.runtime_batchers: dict[tuple[str, str], MicroBatcher] = {}

    def start_ready_models(self) -> None:
        """Give every model that finished loading a running batcher."""
        for entry in self.registry.ready_entries():
            if entry.name not in self.batchers and entry.engine is not None:
                self.batchers[entry.name] = self._start_batcher(entry, entry.engine)
                # The series exists from the start, at 0, so an alert can watch its rate.
                self.metrics.batcher_restarts.labels(entry.name)
            for runtime, engine in entry.extra_engines.items():
                if (entry.name, runtime) not in self.runtime_batchers:
                    self.runtime_batchers[(entry.name, runtime)] = self._start_batcher(
                        entry, engine
                    )

    def _start_batcher(self, entry: ModelEntry, engine: Engine) -> MicroBatcher:
        batcher = MicroBatcher(
            entry.name,
            engine,
            self.executor,
            max_batch_size=self.settings.max_batch_size,
            batch_timeout_ms=self.settings.batch_timeout_ms,
            max_queue=self.settings.max_queue,
            num_classes=len(entry.classes),
            observe=self.metrics.observe_batch,
            on_restart=self._count_restart,
            tracing=self.tracing,
        )
        batcher.start()
        return batcher

    def _batcher(self, entry: ModelEntry) -> MicroBatcher:
        """The batcher of ``entry``'s runtime (``ModelRegistry.on_runtime`` picks it)."""
        if entry.runtime == self.registry.runtime:
            return self.batchers[entry.name]
        return self.runtime_batchers[(entry.name, entry.runtime)]

    def _count_restart(self, name: str) -> None:
        self.metrics.batcher_restarts.labels(name).inc()

    async def stop(self) -> None:
        for batcher in [*self.batchers.values(), *self.runtime_batchers.values()]:
            await batcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def select(self, model: str, runtime: str = "") -> list[ModelEntry]:
        """The models a ``model`` query names (``all`` = every ready model), or a 404/503;
        answering on ``runtime`` when one is named (409 where a model has no engine on it)."""
        if runtime:
            return [self.registry.on_runtime(e, runtime) for e in self.select(model)]
        if model == "all":
            # Ready and given a batcher: a model loads before the app starts its batcher.
            entries = [e for e in self.registry.ready_entries() if e.name in self.batchers]
            if not entries:
                raise not_ready("no model is ready yet; retry shortly")
            return entries
        entry = self.registry.get(model)
        if entry is None:
            raise model_not_found(model, self.registry.names)
        if entry.status != "ready" or entry.name not in self.batchers:
            raise not_ready(f"model {model!r} is {entry.status}: {entry.error or 'still loading'}")
        return [entry]

    def ensure_capacity(self, entries: list[ModelEntry], images: int) -> None:
        """Refuse a request whole (503) when any selected queue cannot take all its images.

        Checked before anything is queued, with no await in between, so a refused batch never
        leaves some of its images queued and costing engine time during an overload.
        """
        for entry in entries:
            batcher = self._batcher(entry)
            if batcher.depth + images > batcher.max_queue:
                self.metrics.rejected.labels(entry.name).inc()
                raise overloaded()

    async def predict(
        self, pixels: Pixels, entries: list[ModelEntry], top_k: int
    ) -> list[ModelPrediction]:
        """Every selected model's prediction for one 32x32x3 image, in registry order."""
        self.ensure_capacity(entries, 1)
        if len(entries) == 1:
            # One model (the hot path of ?model=NAME): no gather, which costs a task per model.
            results = [await self._submit(entries[0], pixels)]
        else:
            results = list(await asyncio.gather(*(self._submit(e, pixels) for e in entries)))
        return [
            to_prediction(entry, result, top_k)
            for entry, result in zip(entries, results, strict=True)
        ]

    async def _submit(self, entry: ModelEntry, pixels: Pixels) -> BatchResult:
        name = entry.name
        batcher = self._batcher(entry)
        try:
            return await batcher.submit(pixels)
        except QueueFull:
            self.metrics.rejected.labels(name).inc()
            raise overloaded() from None
        finally:
            self.metrics.queue_depth.labels(name).set(batcher.depth)


def to_prediction(entry: ModelEntry, result: BatchResult, top_k: int) -> ModelPrediction:
    """Probabilities to the response shape: label, confidence, top-k and the full table."""
    classes = entry.classes
    # Plain floats and a Python sort: for ten values, cheaper than numpy's per-call overhead.
    # Ties keep class order, as a stable argsort would.
    probabilities: list[float] = result.probabilities.tolist()
    ranked = probabilities
    if any(p != p for p in probabilities):  # NaN, from a broken model: ranked last
        ranked = [p if p == p else -1.0 for p in probabilities]
    order = sorted(range(len(ranked)), key=ranked.__getitem__, reverse=True)
    best = order[0]
    return ModelPrediction(
        model=entry.name,
        label=classes[best],
        confidence=probabilities[best],
        top_k=[
            ClassProbability(label=classes[i], probability=probabilities[i]) for i in order[:top_k]
        ],
        probabilities=dict(zip(classes, probabilities, strict=True)),
        latency_ms=round(result.latency_ms, 3),
        batch_size=result.batch_size,
    )
