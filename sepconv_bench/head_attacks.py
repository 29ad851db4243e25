"""Attacks on request heads and connections, each for a bounded time, with what they cost.

Run against a served URL (and the server's pid for its memory): an endless header line, idle
and slowloris connections, and a normal client's /predict latency while thousands are held.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft file-descriptor limit towards ``wanted``; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class EndlessHeaderFigures:
    connections: int
    bytes_sent: int
    rss_growth_bytes: int
    answered: list[bytes]


def endless_header(
    url: str, pid: int, connections: int = 2, duration_s: float = 10.0
) -> EndlessHeaderFigures:
    """Unterminated ``X-A: aaaa...`` lines, 16 KiB at a time; the server's memory growth."""
    host, port = _address(url)
    before = rss_bytes(pid)
    socks = [socket.create_connection((host, port), timeout=5) for _ in range(connections)]
    for sock in socks:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: ")
        sock.setblocking(False)
    chunk, sent, peak = b"a" * 16 * 1024, 0, before
    answers = [b""] * connections
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        for index, sock in enumerate(socks):
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                sent += sock.send(chunk)
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                answers[index] += sock.recv(4096)
        peak = max(peak, rss_bytes(pid))
        time.sleep(0.005)
    for sock in socks:
        sock.close()
    return EndlessHeaderFigures(connections, sent, peak - before, [a[:80] for a in answers])


@dataclass
class HeldFigures:
    opened: int
    refused_at_once: int
    still_open_after_s: dict[float, int]


def slowloris(
    url: str, connections: int = 3000, duration_s: float = 15.0, mode: str = "silent"
) -> HeldFigures:
    """Hold ``connections`` that never finish their head; how many the server still keeps.

    ``mode``: "silent" sends nothing, "partial" half a request line, "trickle" one header
    byte every 5 seconds.
    """
    raise_fd_limit(connections + 256)
    host, port = _address(url)
    socks: list[socket.socket] = []
    for _ in range(connections):
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError:
            break
        sock.setblocking(False)
        if mode != "silent":
            with contextlib.suppress(OSError):
                sock.send(b"GET /health/li" if mode == "partial" else b"GET / HTTP/1.1\r\n")
        socks.append(sock)
    started = time.monotonic()
    open_after: dict[float, int] = {}
    refused_at_once = _count_closed(socks)
    last_trickle = started
    for mark in (1.0, 2.0, 5.0, 10.0, duration_s):
        if mark > duration_s:
            continue
        while time.monotonic() - started < mark:
            if mode == "trickle" and time.monotonic() - last_trickle >= 5:
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
                last_trickle = time.monotonic()
            time.sleep(0.05)
        open_after[mark] = len(socks) - _count_closed(socks)
    for sock in socks:
        sock.close()
    return HeldFigures(len(socks), refused_at_once, open_after)


def _count_closed(socks: list[socket.socket]) -> int:
    closed = 0
    for sock in socks:
        try:
            data = sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        except OSError:
            closed += 1
            continue
        if not data or b"HTTP/1.1" in data:
            closed += 1
    return closed


def predict_latency_during_slowloris(
    url: str, image: bytes, connections: int = 3000, requests: int = 50
) -> dict[str, float]:
    """/predict p50/p99 (ms) of a normal client while ``connections`` silent ones are held."""
    raise_fd_limit(connections + 256)
    host, port = _address(url)
    held: list[socket.socket] = []
    for _ in range(connections):
        try:
            held.append(socket.create_connection((host, port), timeout=5))
        except OSError:
            break
    timings: list[float] = []
    failures = 0
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(requests):
                began = time.perf_counter()
                try:
                    answer = client.post(
                        f"{url}/predict", content=image, headers={"content-type": "image/png"}
                    )
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    timings.append((time.perf_counter() - began) * 1000)
                else:
                    failures += 1
    finally:
        for sock in held:
            sock.close()
    timings.sort()
    return {
        "held": float(len(held)),
        "failures": float(failures),
        "p50_ms": statistics.median(timings) if timings else float("nan"),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        if timings
        else float("nan"),
    }
