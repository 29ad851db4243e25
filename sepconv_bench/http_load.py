"""HTTP load against the running service: ``wrk`` when installed, else worker processes.

A Python load loop saturates at a few hundred requests per second here, so ``wrk`` is the
default; the fallback spreads the loop over processes and says when it is the bottleneck.
A run lasts ``seconds``, or, given ``max_requests``, until that many answers have come back
(whichever is first).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

WRK_SCRIPT = """
wrk.method = "{method}"
{body}
{cap}
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\\nBENCH-JSON {{"requests": %d, "duration_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %f, ' ..
    '"max_us": %d}}\\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean,
    latency.max))
end
"""
WRK_BODY = """wrk.headers["Content-Type"] = "{content_type}"
local f = assert(io.open("{path}", "rb"))
wrk.body = f:read("*all")
f:close()"""
# wrk runs for its whole -d duration even when every thread has stopped, so each thread says
# when it has its share of answers and the driver interrupts wrk, which then reports.
WRK_CAP = """local shares = {{{shares}}}
local started = 0
function setup(thread)
  started = started + 1
  thread:set("limit", shares[started])
end

local seen = 0
function response(status, headers, body)
  seen = seen + 1
  if seen == limit then
    io.write("THREAD-DONE\\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end"""
THREAD_DONE = "THREAD-DONE"


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
    max_ms: float

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


def split_requests(total: int, parts: int) -> list[int]:
    """``total`` requests shared out over ``parts`` senders, the first ones taking the rest."""
    if total < 1:
        raise ValueError(f"max_requests must be at least 1, got {total}")
    return [total // parts + (index < total % parts) for index in range(parts)]


def run_wrk(
    url: str,
    target: str,
    concurrency: int,
    seconds: float,
    body: Path | None,
    content_type: str = "image/png",
    max_requests: int | None = None,
) -> LoadResult:
    method = "POST" if body is not None else "GET"
    body_lua = WRK_BODY.format(content_type=content_type, path=body) if body else ""
    threads = max(1, min(2, concurrency, max_requests or concurrency))
    cap_lua = ""
    if max_requests is not None:
        shares = split_requests(max_requests, threads)
        cap_lua = WRK_CAP.format(shares=", ".join(map(str, shares)))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(method=method, body=body_lua, cap=cap_lua))
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:g}s"]
    command += ["--timeout", "10s", "-s", script.name, url]
    try:
        lines = _stream_wrk(command, Path(script.name), threads, timeout_s=seconds + 30)
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next(x for x in lines if x.startswith("BENCH-JSON"))
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
        max_ms=stats["max_us"] / 1000,
    )


def _stream_wrk(command: list[str], script: Path, threads: int, timeout_s: float) -> list[str]:
    """wrk's output lines; it is interrupted once every thread has reported its share done."""
    lines: list[str] = []
    expired = threading.Event()
    finished = threading.Event()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:

        def expire() -> None:
            expired.set()
            process.kill()

        def interrupt() -> None:
            # wrk ignores SIGINT until its threads are running, and a tiny share can be done
            # before that, so the interrupt is repeated until wrk has printed its summary.
            while not finished.wait(0.5):
                process.send_signal(signal.SIGINT)

        # The output is read line by line, so a wrk that never ends needs its own deadline.
        watchdog = threading.Timer(timeout_s, expire)
        watchdog.start()
        try:
            assert process.stdout is not None
            done = 0
            for line in process.stdout:
                lines.append(line)
                if str(script) in line:  # a Lua error: wrk would otherwise idle for -d
                    process.kill()
                    raise SystemExit(f"wrk rejected its script: {line.strip()}")
                if line.startswith(THREAD_DONE):
                    done += 1
                    if done == threads:
                        process.send_signal(signal.SIGINT)  # wrk stops and prints its summary
                        threading.Thread(target=interrupt, daemon=True).start()
            process.wait()
        finally:
            finished.set()
            watchdog.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(command, timeout_s, output="".join(lines))
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command, output="".join(lines))
    return lines


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
    shares = split_requests(max_requests, concurrency)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        results = pool.map(_worker, [(url, seconds, data, content_type, n) for n in shares])
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
        max_ms=round(float(latencies.max()), 3),
    )


def run_load(
    url: str,
    target: str,
    concurrency: int,
    seconds: float,
    body: Path | None,
    generator: str = "auto",
    max_requests: int | None = None,
) -> LoadResult:
    """One bounded load run; ``generator`` is ``wrk``, ``processes`` or ``auto``."""
    use_wrk = generator == "wrk" or (generator == "auto" and shutil.which("wrk"))
    if use_wrk:
        return run_wrk(url, target, concurrency, seconds, body, max_requests=max_requests)
    if max_requests is None:
        return run_processes(url, target, concurrency, seconds, body)
    return run_processes(url, target, concurrency, seconds, body, max_requests=max_requests)
