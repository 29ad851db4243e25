"""Load figures: N requests at a fixed concurrency against a real ``sepconv-serve`` process.

Usage:

    python -m sepconv_bench.soak                    # the repository's models/
    python -m sepconv_bench.soak --model-dir DIR    # another model repository
    python -m sepconv_bench.soak --untrained        # untrained exports of both architectures:
                                                    # the same compute, no training needed
    python -m sepconv_bench.soak --requests 300 --warmup-requests 100   # a quick check

It starts the console script on a free loopback port, POSTs a 32x32 PNG as the raw body of
``/predict`` (both models answer each request) with ``wrk`` when installed (a Lua script stops
each thread after its share of the requests), else with worker processes, and reports errors,
p50/p99 latency, throughput, and the server's resident memory (VmRSS) after a warm-up and after
the run. It exits 1 on any error or non-200, or if memory grew by 5% or more.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sepconv_bench.http_load import LoadResult, run_load  # noqa: E402
from sepconv_bench.proc_stats import rss_bytes  # noqa: E402
from sepconv_bench.server import running_service  # noqa: E402

REPOSITORY_MODELS = Path(__file__).resolve().parents[1] / "models"
MAX_RSS_GROWTH = 0.05
# The request count ends each run; this only bounds one whose answers stop coming.
MAX_RUN_SECONDS = 600.0
# The fields a run reports, in the order this script has always printed them.
FIGURES = (
    "generator",
    "requests",
    "concurrency",
    "seconds",
    "requests_per_second",
    "p50_ms",
    "p99_ms",
    "non_200",
    "errors",
)


def export_untrained(root: Path) -> Path:
    """Both architectures, untrained, exported like real models: the same inference cost."""
    from training.architectures import ARCHITECTURES, build_model
    from training.export import export_saved_model, version_dir

    for architecture in ARCHITECTURES:
        export_saved_model(build_model(architecture), version_dir(root, architecture, 1))
    return root


def sample_png(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sepconv_bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=REPOSITORY_MODELS)
    parser.add_argument("--untrained", action="store_true", help="export untrained models first")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--warmup-requests",
        "--warmup",
        dest="warmup",
        type=int,
        default=3_000,
        help="requests before measuring",
    )
    parser.add_argument("--generator", choices=["auto", "wrk", "processes"], default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)

    def run(url: str, body: Path, requests: int) -> LoadResult:
        return run_load(
            f"{url}/predict",
            "/predict",
            args.concurrency,
            MAX_RUN_SECONDS,
            body,
            args.generator,
            max_requests=requests,
        )

    with tempfile.TemporaryDirectory(prefix="sepconv-load-") as scratch:
        work = Path(scratch)
        model_dir = export_untrained(work / "models") if args.untrained else args.model_dir
        if not any(model_dir.glob("*/[0-9]*/saved_model.pb")):
            raise SystemExit(f"no models in {model_dir}; train them, or pass --untrained")
        body = sample_png(work / "image.png")
        # One process, so that its resident memory is the server's (with several, the pid
        # would be a supervisor that never loads a model).
        one_process = {"SEPCONV_WORKERS": "1"}
        with running_service(model_dir, one_process, log=work / "server.log") as service:
            url, pid = service.url, service.pid
            rss_ready = rss_bytes(pid) / 2**20
            warmup = run(url, body, args.warmup)
            rss_warm = rss_bytes(pid) / 2**20
            figures = run(url, body, args.requests)
            rss_after = rss_bytes(pid) / 2**20

    growth = (rss_after - rss_warm) / rss_warm
    measured = figures.as_dict()
    report: dict[str, Any] = {
        **{name: measured[name] for name in FIGURES},
        "warmup_requests": warmup.requests,
        "rss_ready_mib": round(rss_ready, 1),
        "rss_after_warmup_mib": round(rss_warm, 1),
        "rss_after_run_mib": round(rss_after, 1),
        "rss_growth_percent": round(growth * 100, 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failures = []
    if figures.errors or figures.non_200 or warmup.errors or warmup.non_200:
        failures.append(f"{figures.errors} errors and {figures.non_200} non-200 answers")
    if growth >= MAX_RSS_GROWTH:
        failures.append(f"resident memory grew {growth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
