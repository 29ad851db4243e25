"""Load figures: N requests at a fixed concurrency against a real ``sepconv-serve`` process.

Not part of ``pytest`` (not a ``test_*.py`` file). From the repository root:

    python tests/load/run_load.py                    # the repository's models/
    python tests/load/run_load.py --model-dir DIR    # another model repository
    python tests/load/run_load.py --untrained        # untrained exports of both architectures:
                                                     # the same compute, no training needed

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
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sepconv_bench.server import running_service  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[2]
MAX_RSS_GROWTH = 0.05
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*all")
f:close()

-- wrk runs for its whole -d duration even when every thread has stopped, so each thread says
-- when it has its share of answers and the driver interrupts wrk, which then reports.
local limit = {per_thread}
local seen = 0
function response(status, headers, body)
  seen = seen + 1
  if seen == limit then
    io.write("THREAD-DONE\\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nLOAD-JSON {{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Figures:
    generator: str
    requests: int
    concurrency: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_200: int
    errors: int


def resident_mib(pid: int) -> float:
    """VmRSS of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def export_untrained(root: Path) -> Path:
    """Both architectures, untrained, exported like real models: the same inference cost."""
    from training.architectures import ARCHITECTURES, build_model
    from training.export import export_saved_model, version_dir

    for architecture in ARCHITECTURES:
        export_saved_model(build_model(architecture), version_dir(root, architecture, 1))
    return root


def run_wrk(url: str, body: Path, requests: int, concurrency: int) -> Figures:
    threads = max(1, min(2, concurrency))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=body, per_thread=max(1, requests // threads)))
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", "600s"]
    command += ["--timeout", "10s", "-s", script.name, f"{url}/predict"]
    lines: list[str] = []
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if script.name in line:  # a Lua error: wrk would otherwise idle for -d
                    process.kill()
                    raise SystemExit(f"wrk rejected its script: {line.strip()}")
                if sum(x.startswith("THREAD-DONE") for x in lines) == threads:
                    process.send_signal(signal.SIGINT)  # wrk stops and prints its summary
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next(x for x in lines if x.startswith("LOAD-JSON "))
    stats = json.loads(line.removeprefix("LOAD-JSON "))
    seconds = stats["duration_us"] / 1e6
    return Figures(
        generator="wrk",
        requests=stats["requests"],
        concurrency=concurrency,
        seconds=round(seconds, 2),
        requests_per_second=round(stats["requests"] / seconds, 1),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        non_200=stats["non_2xx"],
        errors=stats["socket_errors"],
    )


def run_processes(url: str, body: Path, requests: int, concurrency: int) -> Figures:
    from sepconv_bench.http_load import run_processes as load

    result = load(f"{url}/predict", "/predict", concurrency, 3600, body, max_requests=requests)
    return Figures(
        generator="processes",
        requests=result.requests,
        concurrency=concurrency,
        seconds=result.seconds,
        requests_per_second=result.requests_per_second,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        non_200=result.non_200,
        errors=result.errors,
    )


def sample_png(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPOSITORY / "models")
    parser.add_argument("--untrained", action="store_true", help="export untrained models first")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3_000, help="requests before measuring")
    parser.add_argument("--generator", choices=["auto", "wrk", "processes"], default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    run = run_wrk if use_wrk else run_processes
    with tempfile.TemporaryDirectory(prefix="sepconv-load-") as scratch:
        work = Path(scratch)
        model_dir = export_untrained(work / "models") if args.untrained else args.model_dir
        if not any(model_dir.glob("*/[0-9]*/saved_model.pb")):
            raise SystemExit(f"no models in {model_dir}; train them, or pass --untrained")
        body = sample_png(work / "image.png")
        with running_service(model_dir, log=work / "server.log") as service:
            url, pid = service.url, service.pid
            rss_ready = resident_mib(pid)
            warmup = run(url, body, args.warmup, args.concurrency)
            rss_warm = resident_mib(pid)
            figures = run(url, body, args.requests, args.concurrency)
            rss_after = resident_mib(pid)

    growth = (rss_after - rss_warm) / rss_warm
    report = {
        **asdict(figures),
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
