"""Does OpenVINO earn a place among the runtimes? Its CPU plugin on each model's ``model.onnx``,
timed interleaved with the served runtimes' engines, one thread each, as docs/runtimes.md's
engine table is (``service.core.latency.time_rounds``: the calls take turns round after round).

    pip install openvino
    python -m sepconv_bench.openvino_probe [--model-dir models] [--batch-sizes 1,32]

A one-off measurement, not a runtime the service serves: docs/runtimes.md has its figures and
the verdict.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from sepconv_contract import INPUT_SHAPE, ONNX_FILE
from sepconv_contract.versions import latest_versions
from service.core.engines import open_engine
from service.core.latency import time_rounds

REPOSITORY = Path(__file__).resolve().parents[1]
COMPARED = ("tensorflow", "onnxruntime", "litert")


def openvino_call(onnx_path: Path, images: np.ndarray) -> Callable[[], object]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(onnx_path)),
        "CPU",
        {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    return lambda: request.infer({0: images})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPOSITORY / "models")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args(argv)
    print(f"{'model':<10} {'runtime':<12} {'batch':>5} {'p50 ms':>8} {'x TF':>6}")
    for path in latest_versions(args.model_dir):
        name = path.parent.name
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            images = (
                np.random.default_rng(0)
                .integers(0, 256, (batch_size, *INPUT_SHAPE))
                .astype(np.float32)
            )
            labels = [*COMPARED, "openvino"]
            engines = [open_engine(path, runtime, 1) for runtime in COMPARED]
            calls = [partial(engine.predict, images) for engine in engines]
            calls.append(openvino_call(path / ONNX_FILE, images))  # type: ignore[arg-type]
            samples = time_rounds(
                calls, max_rounds=2000, budget_s=args.seconds, min_rounds=20, warmup_rounds=5
            )
            p50 = {label: float(np.median(s)) for label, s in zip(labels, samples, strict=True)}
            for label in labels:
                print(
                    f"{name:<10} {label:<12} {batch_size:>5} {p50[label]:>8.3f} "
                    f"{p50['tensorflow'] / p50[label]:>6.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
