"""HTTP load against the running service: ``wrk`` when installed, else worker processes.

A Python load loop saturates at a few hundred requests per second here, so ``wrk`` is the
default; the fallback spreads the loop over processes and says when it is the bottleneck.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

WRK_SCRIPT = """
wrk.method = "{method}"
{body}
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\\nBENCH-JSON {{"requests": %d, "duration_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %f}}\\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""
WRK_BODY = """wrk.headers["Content-Type"] = "{content_type}"
local f = assert(io.open("{path}", "rb"))
wrk.body = f:read("*all")
f:close()"""


@dataclass(frozen=True)
class LoadResult:
    target: str
    concurrency: int
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    non_200: int
    errors: int
    generator: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_loopback(url: str, allow_remote: bool) -> None:
    """Refuse to aim load at anything but loopback unless explicitly allowed."""
    host = urlsplit(url).hostname or ""
    if not allow_remote and host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(
            f"sepconv-bench: refusing to load {host!r}; pass --allow-remote to "
            "benchmark a service that is not on this machine"
        )


def run_wrk(
    url: str,
    target: str,
    concurrency: int,
    seconds: float,
    body: Path | None,
    content_type: str = "image/png",
) -> LoadResult:
    method = "POST" if body is not None else "GET"
    body_lua = WRK_BODY.format(content_type=content_type, path=body) if body else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(method=method, body=body_lua))
    threads = max(1, min(2, concurrency))
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(concurrency),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        script.name,
        url,
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    Path(script.name).unlink(missing_ok=True)
    line = next(x for x in output.splitlines() if x.startswith("BENCH-JSON"))
    stats = json.loads(line.removeprefix("BENCH-JSON "))
    duration = stats["duration_us"] / 1e6
    return LoadResult(
        target=target,
        concurrency=concurrency,
        requests=stats["requests"],
        seconds=round(duration, 2),
        requests_per_second=round(stats["requests"] / duration, 1) if duration else 0.0,
        p50_ms=stats["p50_us"] / 1000,
        p95_ms=stats["p95_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        non_200=stats["non_2xx"],
        errors=stats["socket_errors"],
        generator="wrk",
    )


def _worker(args: tuple[str, float, bytes | None, str, int]) -> tuple[list[float], int, int]:
    import httpx

    url, seconds, body, content_type, max_requests = args
    latencies: list[float] = []
    non_200 = errors = 0
    deadline = time.perf_counter() + seconds
    with httpx.Client(timeout=10) as client:
        while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
            started = time.perf_counter()
            try:
                if body is None:
                    response = client.get(url)
                else:
                    response = client.post(
                        url, content=body, headers={"content-type": content_type}
                    )
            except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000.0)
            non_200 += response.status_code != 200
    return latencies, non_200, errors


def run_processes(
    url: str,
    target: str,
    concurrency: int,
    seconds: float,
    body: Path | None,
    content_type: str = "image/png",
    max_requests: int = 100_000,
) -> LoadResult:
    data = body.read_bytes() if body else None
    per_worker = max(1, max_requests // concurrency)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        results = pool.map(_worker, [(url, seconds, data, content_type, per_worker)] * concurrency)
    elapsed = time.perf_counter() - started
    latencies = np.asarray([x for r in results for x in r[0]] or [0.0])
    count = sum(len(r[0]) for r in results)
    return LoadResult(
        target=target,
        concurrency=concurrency,
        requests=count,
        seconds=round(elapsed, 2),
        requests_per_second=round(count / elapsed, 1),
        p50_ms=round(float(np.percentile(latencies, 50)), 3),
        p95_ms=round(float(np.percentile(latencies, 95)), 3),
        p99_ms=round(float(np.percentile(latencies, 99)), 3),
        non_200=sum(r[1] for r in results),
        errors=sum(r[2] for r in results),
        generator="processes",
    )


def run_load(
    url: str,
    target: str,
    concurrency: int,
    seconds: float,
    body: Path | None,
    generator: str = "auto",
) -> LoadResult:
    """One bounded load run; ``generator`` is ``wrk``, ``processes`` or ``auto``."""
    use_wrk = generator == "wrk" or (generator == "auto" and shutil.which("wrk"))
    if use_wrk:
        return run_wrk(url, target, concurrency, seconds, body)
    return run_processes(url, target, concurrency, seconds, body)
