"""In-process engine timings: each model and runtime at several batch sizes, no HTTP.

The timing loop and its statistics are the service's own (``service.core.latency``), so these
numbers and ``/compare``'s are measured and summarised alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sepconv_contract import INPUT_SHAPE, SIGNATURE_NAME, latest_version, model_folders
from service.core.engines import Engine, open_engine
from service.core.latency import images_per_second, latency_stats, time_rounds


@dataclass(frozen=True)
class EngineTiming:
    model: str
    runtime: str
    batch_size: int
    calls: int
    latency_ms_p50: float
    latency_ms_mean: float
    images_per_second: float
    latency_ms_p95: float | None = None
    latency_ms_p99: float | None = None

    @classmethod
    def from_samples(
        cls, model: str, runtime: str, batch_size: int, samples_ms: Sequence[float]
    ) -> EngineTiming:
        """The timing of ``samples_ms``, summarised exactly as ``/compare`` summarises its own."""
        stats = latency_stats(samples_ms)
        return cls(
            model=model,
            runtime=runtime,
            batch_size=batch_size,
            calls=len(samples_ms),
            latency_ms_p50=stats.p50,
            latency_ms_mean=stats.mean,
            images_per_second=images_per_second(batch_size, stats),
            latency_ms_p95=stats.p95,
            latency_ms_p99=stats.p99,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version_path(model_dir: Path, name: str) -> Path:
    """The newest version folder of ``name``, found as the service finds it."""
    folder = model_folders(model_dir).get(name) if model_dir.is_dir() else None
    latest = latest_version(folder) if folder is not None else None
    if latest is None:
        raise FileNotFoundError(
            f"no model {name!r} with a numeric version folder in {model_dir} "
            "(expected <model_dir>/<name>/<version>/)"
        )
    return latest[1]


def load_engines(
    model_dir: Path, names: list[str], runtimes: list[str], threads: int
) -> list[tuple[str, Engine]]:
    """Every (model, runtime) pair that can be loaded; a missing ONNX file is skipped."""
    engines: list[tuple[str, Engine]] = []
    for name in names:
        path = _version_path(model_dir, name)
        for runtime in runtimes:
            try:
                engine = open_engine(path, runtime, threads)
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
    images = (
        np.random.default_rng(0).integers(0, 256, (batch_size, *INPUT_SHAPE)).astype(np.float32)
    )
    (samples,) = time_rounds(
        [lambda: engine.predict(images)],
        max_rounds=max_calls,
        budget_s=max_seconds,
        min_rounds=3,
        warmup_rounds=warmup,
    )
    return EngineTiming.from_samples(name, engine.runtime, batch_size, samples)


def time_keras_predict(model_dir: Path, name: str, calls: int = 10) -> float:
    """Milliseconds per ``model.predict()`` call at batch 1: the naive serving baseline."""
    import keras

    layer = keras.layers.TFSMLayer(
        str(_version_path(model_dir, name)), call_endpoint=SIGNATURE_NAME
    )
    inputs = keras.Input(INPUT_SHAPE)
    model = keras.Model(inputs, layer(inputs))
    image = np.zeros((1, *INPUT_SHAPE), np.float32)
    model.predict(image, verbose=0)
    started = time.perf_counter()
    for _ in range(calls):
        model.predict(image, verbose=0)
    return (time.perf_counter() - started) * 1000.0 / calls


def time_engines_interleaved(
    engines: Sequence[tuple[str, Engine]],
    batch_size: int,
    *,
    max_rounds: int = 400,
    max_seconds: float = 20.0,
    warmup: int = 5,
) -> list[EngineTiming]:
    """Every engine at ``batch_size`` in one run, the calls taking turns (round after round),
    so a change in the machine's speed (other load, clocks) reaches each engine alike and the
    ratios between them hold even where the absolute figures drift."""
    images = (
        np.random.default_rng(0).integers(0, 256, (batch_size, *INPUT_SHAPE)).astype(np.float32)
    )
    calls = [(lambda engine=engine: engine.predict(images)) for _, engine in engines]
    samples = time_rounds(
        calls,
        max_rounds=max_rounds,
        budget_s=max_seconds,
        min_rounds=3,
        warmup_rounds=warmup,
    )
    return [
        EngineTiming.from_samples(name, engine.runtime, batch_size, timed)
        for (name, engine), timed in zip(engines, samples, strict=True)
    ]


def format_ratios(timings: Sequence[EngineTiming], reference: str = "tensorflow") -> list[str]:
    """A row per timing: batch-1 latency or throughput, and its ratio to ``reference``'s."""
    base = {(t.model, t.batch_size): t for t in timings if t.runtime == reference}
    rows = [f"{'model':<10} {'runtime':<17} {'batch':>5} {'p50 ms':>8} {'img/s':>9} {'x TF':>6}"]
    for timing in timings:
        other = base.get((timing.model, timing.batch_size))
        ratio = timing.images_per_second / other.images_per_second if other else float("nan")
        rows.append(
            f"{timing.model:<10} {timing.runtime:<17} {timing.batch_size:>5} "
            f"{timing.latency_ms_p50:>8.3f} {timing.images_per_second:>9.1f} {ratio:>6.2f}"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sepconv_bench.engine``: the runtime matrix, interleaved, against TensorFlow."""
    import argparse
    import json

    from service.core.engines import RUNTIMES
    from service.process.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m sepconv_bench.engine", description=main.__doc__
    )
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--models", default="regular,separable")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per engine")
    parser.add_argument("--seconds", type=float, default=20.0, help="budget per batch size")
    parser.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or Settings().model_dir
    if "tensorflow" in args.runtimes.split(","):
        from service.core.engines import configure_tensorflow

        # The same thread count for every runtime, TensorFlow's pools included.
        configure_tensorflow(args.threads, 1, gpu_memory_growth=True)
    engines = load_engines(
        model_dir, args.models.split(","), args.runtimes.split(","), args.threads
    )
    timings: list[EngineTiming] = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        timings += time_engines_interleaved(engines, batch_size, max_seconds=args.seconds)
    print("\n".join(format_ratios(timings)))
    if args.json is not None:
        args.json.write_text(json.dumps([t.as_dict() for t in timings], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
