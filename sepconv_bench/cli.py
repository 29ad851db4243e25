"""``sepconv-bench``: engine limits and served throughput, with a table, JSON and a figure.

sepconv-bench                       # start the service on models/ and measure everything
sepconv-bench --url http://127.0.0.1:8000 --duration 5
sepconv-bench --attacks [--only decode,comparisons]   # hostile workloads (sepconv_bench.attacks)
sepconv-bench --sweep-workers       # the best worker count and thread split, and the default's
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sample_image() -> Path:
    """A random 32x32 PNG in a temporary file (the caller removes it)."""
    import numpy as np
    from PIL import Image

    from sepconv_contract import INPUT_SHAPE

    pixels = np.random.default_rng(7).integers(0, 256, INPUT_SHAPE, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path = Path(tempfile.mkstemp(suffix=".png")[1])
    path.write_bytes(buffer.getvalue())
    return path


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sepconv-bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="models to measure (default: the service's default, models/)",
    )
    parser.add_argument("--models", default="regular,separable")
    parser.add_argument("--url", default=None, help="benchmark a running service instead")
    parser.add_argument("--allow-remote", action="store_true")
    parser.add_argument("--runtimes", default="tensorflow,onnxruntime")
    parser.add_argument(
        "--served-runtimes",
        default="",
        help="also load these runtimes in the service it starts (SEPCONV_COMPARE_RUNTIMES) and "
        "serve each model on each through /predict?runtime= (default: the service's runtime)",
    )
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--generator", choices=["auto", "wrk", "processes"], default="auto")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument(
        "--skip-naive", action="store_true", help="skip timing the model.predict() baseline"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes of the service it starts (default: the service's own, auto)",
    )
    parser.add_argument(
        "--sweep-workers",
        action="store_true",
        help="find the best worker count and thread split instead; see --sweep-workers --help",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra settings for the service it starts (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument(
        "--attacks",
        action="store_true",
        help="run the adversarial workloads instead; see sepconv-bench --attacks --help",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if "--sweep-workers" in arguments:
        # Its own options too: a fresh service per configuration, not one for every stage.
        from sepconv_bench.sweep import main as sweep_main

        return sweep_main([a for a in arguments if a != "--sweep-workers"])
    if "--attacks" in arguments:
        # Its own options (--only, --json, a --duration per attack): a mode, not a stage.
        from sepconv_bench.attacks import main as attacks_main

        return attacks_main([a for a in arguments if a != "--attacks"])
    args = _parse(arguments)
    import httpx

    from sepconv_bench.engine import load_engines, time_engine, time_keras_predict
    from sepconv_bench.http_load import check_loopback, run_load
    from sepconv_bench.report import draw_figure, format_table
    from sepconv_bench.server import serving_gauges
    from service.core.cpus import available_cpus
    from service.process.settings import Settings

    model_dir = args.model_dir or Settings().model_dir
    names = [n for n in args.models.split(",") if n]
    results: dict[str, Any] = {
        "machine": {
            "cpus": available_cpus(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "engine": [],
        "http": [],
        "engine_best": {},
        "keras_predict_ms": {},
    }
    if not args.skip_engine:
        print(f"[1/3] engine: {', '.join(names)} at batch sizes {args.batch_sizes}")
        engines = load_engines(model_dir, names, args.runtimes.split(","), available_cpus())
        for name, engine in engines:
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                timing = time_engine(name, engine, batch_size)
                print(
                    f"  {name:<10} {engine.runtime:<12} batch {batch_size:>3}: "
                    f"{timing.latency_ms_p50:8.2f} ms  {timing.images_per_second:8.1f} img/s"
                )
                results["engine"].append(timing.as_dict())
                if engine.runtime == "tensorflow":
                    best = results["engine_best"].get(name, 0.0)
                    results["engine_best"][name] = max(best, timing.images_per_second)
        del engines
        if not args.skip_naive:
            for name in names:
                results["keras_predict_ms"][name] = round(time_keras_predict(model_dir, name), 1)
                print(
                    f"  {name:<10} model.predict() batch 1: "
                    f"{results['keras_predict_ms'][name]:.1f} ms"
                )

    body = sample_image()
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    if args.url is None and args.workers is not None:
        extra_env.setdefault("SEPCONV_WORKERS", str(args.workers))
    served = [r for r in args.served_runtimes.split(",") if r]
    serving = extra_env.get("SEPCONV_RUNTIME", "tensorflow")
    if args.url is None and served:
        others = [r for r in served if r != serving]
        extra_env.setdefault("SEPCONV_COMPARE_RUNTIMES", ",".join(others))
    service = (
        _started(model_dir, extra_env)
        if args.url is None
        else _existing(args.url, args.allow_remote, check_loopback)
    )
    with service as url:
        # What the service runs as, from its own gauges (None from one that has none).
        workers, threads = serving_gauges(httpx.get(f"{url}/metrics", timeout=10).text)
        results["service"] = {"workers": workers, "threads_per_worker": threads, "url": args.url}
        print(f"[2/3] ceiling: GET /health/live for {args.duration:g}s at concurrency 32")
        ceiling = run_load(f"{url}/health/live", "ceiling", 32, args.duration, None, args.generator)
        results["ceiling_rps"] = ceiling.requests_per_second
        results["generator"] = ceiling.generator
        print(f"  {ceiling.requests_per_second:.0f} req/s")
        print(f"[3/3] POST /predict?model=NAME at concurrency {args.concurrency}")
        for name in names:
            for runtime in served or [""]:
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    choice = f"&runtime={runtime}" if runtime else ""
                    load = run_load(
                        f"{url}/predict?model={name}&top_k=1{choice}",
                        name,
                        concurrency,
                        args.duration,
                        body,
                        args.generator,
                    ).as_dict()
                    load["runtime"] = runtime or None
                    # The engine's best is TensorFlow's: a share only for what it measures.
                    on_tensorflow = (runtime or serving) == "tensorflow"
                    best = results["engine_best"].get(name) if on_tensorflow else None
                    load["share_of_engine"] = (
                        (load["requests_per_second"] / best) if best else None
                    )
                    results["http"].append(load)
                    print(
                        f"  {name:<10} {runtime or '':<17} c={concurrency:<3} "
                        f"{load['requests_per_second']:8.1f} req/s"
                        f"  p50 {load['p50_ms']:7.2f} ms  p99 {load['p99_ms']:7.2f} ms  "
                        f"non-200 {load['non_200']}  errors {load['errors']}"
                    )
    body.unlink(missing_ok=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    draw_figure(results, args.out / "bench.png")
    print()
    print(format_table(results))
    print(f"\nWrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0


@contextmanager
def _started(model_dir: Path, extra_env: dict[str, str]) -> Iterator[str]:
    from sepconv_bench.server import running_service

    with running_service(model_dir, extra_env) as service:
        yield service.url


@contextmanager
def _existing(url: str, allow_remote: bool, check: Any) -> Iterator[str]:
    check(url, allow_remote)
    yield url.rstrip("/")
