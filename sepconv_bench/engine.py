"""In-process engine timings: each model and runtime at several batch sizes, no HTTP."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.core.engines import Engine, OnnxRuntimeEngine, TensorFlowEngine


@dataclass(frozen=True)
class EngineTiming:
    model: str
    runtime: str
    batch_size: int
    calls: int
    latency_ms_p50: float
    latency_ms_mean: float
    images_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_engines(
    model_dir: Path, names: list[str], runtimes: list[str], threads: int
) -> list[tuple[str, Engine]]:
    """Every (model, runtime) pair that can be loaded; a missing ONNX file is skipped."""
    engines: list[tuple[str, Engine]] = []
    for name in names:
        versions = sorted(
            (p for p in (model_dir / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        path = versions[-1]
        for runtime in runtimes:
            try:
                engine: Engine = (
                    OnnxRuntimeEngine(path, threads)
                    if runtime == "onnxruntime"
                    else TensorFlowEngine(path)
                )
            except (ImportError, FileNotFoundError) as error:
                print(f"  skipping {name}/{runtime}: {error}")
                continue
            engines.append((name, engine))
    return engines


def time_engine(
    name: str,
    engine: Engine,
    batch_size: int,
    *,
    max_calls: int = 200,
    max_seconds: float = 2.0,
    warmup: int = 3,
) -> EngineTiming:
    """Call the engine until ``max_calls`` or ``max_seconds``, whichever comes first."""
    images = np.random.default_rng(0).integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32)
    for _ in range(warmup):
        engine.predict(images)
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < max_calls and (len(samples) < 3 or time.perf_counter() < deadline):
        started = time.perf_counter()
        engine.predict(images)
        samples.append((time.perf_counter() - started) * 1000.0)
    values = np.asarray(samples)
    return EngineTiming(
        model=name,
        runtime=engine.runtime,
        batch_size=batch_size,
        calls=len(samples),
        latency_ms_p50=round(float(np.percentile(values, 50)), 3),
        latency_ms_mean=round(float(values.mean()), 3),
        images_per_second=round(batch_size * 1000.0 / float(values.mean()), 1),
    )


def time_keras_predict(model_dir: Path, name: str, calls: int = 10) -> float:
    """Milliseconds per ``model.predict()`` call at batch 1: the naive serving baseline."""
    import keras

    versions = sorted(
        (p for p in (model_dir / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    layer = keras.layers.TFSMLayer(str(versions[-1]), call_endpoint="serving_default")
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, layer(inputs))
    image = np.zeros((1, 32, 32, 3), np.float32)
    model.predict(image, verbose=0)
    started = time.perf_counter()
    for _ in range(calls):
        model.predict(image, verbose=0)
    return (time.perf_counter() - started) * 1000.0 / calls
