"""What the tracing hooks cost the hot path: ``python -m sepconv_bench.tracing_overhead``.

Two measurements in one process, on one model of ``--model-dir``:

1. End to end: raw-body ``POST /predict`` requests through ``httpx.ASGITransport`` (the app's
   real lifespan, fast path, micro-batcher and engine, no sockets), with tracing off and on, in
   alternating blocks so that a slow spell of the shared CPU hits both alike. Per block: the
   median request as the client waited for it (``wall``) and as the app timed it
   (``timing_ms.total``: decode, queue, engine, answer), and the event loop thread's CPU time
   per request (``loop_cpu``: every Python layer, client included, but not the engine's
   threads nor time spent waiting for a core, so it is the steadiest on a shared machine);
   each mode's figure is the median over its blocks.
2. The hooks that tracing off leaves on that path (``HOOKS``), each timed with ``timeit`` on the
   app's own objects, less ``timeit``'s empty loop: the sum is what one request pays for them
   (a batch of one: a larger batch shares the batcher's check).

The figure to hold against the 2% budget is ``hooks_off_ns / request_off_us``, the app's own
time of a request: the smaller denominator, so the ratio errs high. An end-to-end
A/B against a copy of the code without hooks would not resolve it: on two shared cores
requests vary by several percent from one block to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import statistics
import sys
import time
import timeit
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from service.main import create_app
from service.process.settings import Settings
from service.process.state import ServiceState
from service.process.tracing import NO_TRACING, Tracing, start_tracing

# Each hook of tracing off on the raw-body path, as the code spells it (``state`` the app's
# ServiceState, ``batcher`` the model's MicroBatcher, ``tracing`` what decode_upload is given).
HOOKS = {
    "fast path: tracing=state.inference.tracing": "state.inference.tracing",
    "decode_upload: if not tracing.enabled": "if not tracing.enabled: pass",
    "MicroBatcher.submit: self.tracing.enqueue()": "batcher.tracing.enqueue()",
    "MicroBatcher._serve: traced, its stamp, two ifs": (
        "traced = batcher.tracing.enabled\n"
        "started = time.time_ns() if traced else 0\n"
        "if traced: pass\n"
        "if traced: pass"
    ),
}
# decode_upload awaits the hook-free _decode: one coroutine frame more per request.
EXTRA_FRAME = "decode_upload: one more coroutine frame"


@dataclass(frozen=True)
class RequestTiming:
    """One mode's request, in microseconds: medians over its blocks."""

    wall_us: float
    in_app_us: float
    loop_cpu_us: float

    @classmethod
    def of_blocks(cls, blocks: Sequence[RequestTiming]) -> RequestTiming:
        return cls(
            wall_us=statistics.median(b.wall_us for b in blocks),
            in_app_us=statistics.median(b.in_app_us for b in blocks),
            loop_cpu_us=statistics.median(b.loop_cpu_us for b in blocks),
        )


@dataclass(frozen=True)
class OverheadReport:
    model: str
    runtime: str
    requests_per_block: int
    blocks: int
    off: RequestTiming
    on: RequestTiming | None
    hooks_off_ns: float
    hooks_ns: dict[str, float]

    @property
    def off_ratio(self) -> float:
        """The hooks' share of a request's own time (``timing_ms.total``) with tracing off."""
        return self.hooks_off_ns / (self.off.in_app_us * 1000.0)

    @property
    def on_ratios(self) -> dict[str, float] | None:
        """How much longer each measure is with tracing on (spans to a discarding exporter)."""
        if self.on is None:
            return None
        off, on = asdict(self.off), asdict(self.on)
        return {measure: on[measure] / off[measure] - 1.0 for measure in off}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "off_ratio": self.off_ratio, "on_ratios": self.on_ratios}


def cifar_sized_png(seed: int = 0) -> bytes:
    """A 32x32 RGB PNG: the size of image the service is made for."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def discarding_tracing(settings: Settings) -> Tracing | None:
    """Tracing on, every span handed to an exporter that drops it; None without the SDK."""
    try:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    except ImportError:
        return None

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return start_tracing(settings.model_copy(update={"tracing": "on"}), exporter=Discard())


async def _ready(client: httpx.AsyncClient, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get("/health/ready")).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not become ready: is --model-dir right?")
        await asyncio.sleep(0.05)


async def _block(
    client: httpx.AsyncClient, body: bytes, model: str, requests: int
) -> RequestTiming:
    """``requests`` sequential raw-body requests: the median one, and the loop's CPU per one."""
    headers = {"Content-Type": "image/png"}
    walls: list[float] = []
    totals: list[float] = []
    loop_cpu_started = time.thread_time()
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.post(
            "/predict", params={"model": model}, content=body, headers=headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"POST /predict answered {response.status_code}: {response.text}")
        walls.append((time.perf_counter() - started) * 1e6)
        totals.append(float(response.json()["timing_ms"]["total"]) * 1000.0)
    loop_cpu_us = (time.thread_time() - loop_cpu_started) / requests * 1e6
    return RequestTiming(statistics.median(walls), statistics.median(totals), loop_cpu_us)


def hook_costs_ns(state: ServiceState, model: str, number: int, repeat: int) -> dict[str, float]:
    """Each hook's cost in nanoseconds: the best of ``repeat`` runs of ``number`` calls."""
    namespace = {
        "state": state,
        "batcher": state.inference.batchers[model],
        "tracing": state.inference.tracing,
        "time": time,
    }

    def best_ns(statement: str) -> float:
        runs = timeit.repeat(statement, number=number, repeat=repeat, globals=namespace)
        return min(runs) / number * 1e9

    empty = best_ns("pass")
    return {name: max(0.0, best_ns(statement) - empty) for name, statement in HOOKS.items()}


async def _extra_frame_ns(number: int, repeat: int) -> float:
    async def inner() -> None:
        return None

    async def wrapper() -> None:
        return await inner()

    async def direct_ns() -> float:
        started = time.perf_counter_ns()
        for _ in range(number):
            await inner()
        return (time.perf_counter_ns() - started) / number

    async def wrapped_ns() -> float:
        started = time.perf_counter_ns()
        for _ in range(number):
            await wrapper()
        return (time.perf_counter_ns() - started) / number

    direct = min([await direct_ns() for _ in range(repeat)])
    wrapped = min([await wrapped_ns() for _ in range(repeat)])
    return max(0.0, wrapped - direct)


async def measure(settings: Settings, model: str, requests: int, blocks: int) -> OverheadReport:
    body = cifar_sized_png()
    apps: dict[str, FastAPI] = {"off": create_app(settings, tracing=NO_TRACING)}
    traced = discarding_tracing(settings)
    if traced is not None:
        apps["on"] = create_app(settings, tracing=traced)
    times: dict[str, list[RequestTiming]] = {mode: [] for mode in apps}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            mode: await stack.enter_async_context(_serving(app)) for mode, app in apps.items()
        }
        for client in clients.values():
            await _ready(client)
            await _block(client, body, model, max(10, requests // 10))  # warm
        for _ in range(blocks):
            for mode, client in clients.items():
                times[mode].append(await _block(client, body, model, requests))
        state: ServiceState = apps["off"].state.sepconv
        hooks = hook_costs_ns(state, model, number=200_000, repeat=7)
        hooks[EXTRA_FRAME] = await _extra_frame_ns(number=200_000, repeat=7)
    return OverheadReport(
        model=model,
        runtime=settings.runtime,
        requests_per_block=requests,
        blocks=blocks,
        off=RequestTiming.of_blocks(times["off"]),
        on=RequestTiming.of_blocks(times["on"]) if "on" in times else None,
        hooks_off_ns=sum(hooks.values()),
        hooks_ns=hooks,
    )


@contextlib.asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running, and an in-process client on it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client


def format_report(report: OverheadReport) -> str:
    lines = [
        f"raw-body POST /predict?model={report.model} ({report.runtime}), in-process, "
        f"{report.blocks} blocks of {report.requests_per_block} requests per mode",
        "  per request (us)          wall    in app  loop CPU",
    ]
    modes = [("tracing off", report.off), ("tracing on", report.on)]
    for label, timing in modes:
        if timing is not None:
            lines.append(
                f"  {label:<20} {timing.wall_us:9.1f} {timing.in_app_us:9.1f} "
                f"{timing.loop_cpu_us:9.1f}"
            )
    if report.on_ratios is not None:
        ratios = report.on_ratios
        lines.append(
            f"  on vs off            {ratios['wall_us']:+9.1%} {ratios['in_app_us']:+9.1%} "
            f"{ratios['loop_cpu_us']:+9.1%}  (spans to a discarding exporter)"
        )
    lines.append("  hooks left on the path with tracing off (ns per request):")
    lines += [f"    {ns:7.1f}  {name}" for name, ns in report.hooks_ns.items()]
    lines.append(
        f"  total {report.hooks_off_ns:.0f} ns = {report.off_ratio:.4%} of a request's in-app "
        f"time, {report.hooks_off_ns / (report.off.loop_cpu_us * 1000.0):.4%} of its loop CPU "
        "(budget: 2%)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sepconv_bench.tracing_overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the service's")
    parser.add_argument("--model", default="separable")
    parser.add_argument("--runtime", choices=["tensorflow", "onnxruntime"], default="tensorflow")
    parser.add_argument("--requests", type=int, default=200, help="requests per block")
    parser.add_argument("--blocks", type=int, default=6, help="blocks per mode, alternating")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"models": args.model, "runtime": args.runtime, "warmup_runs": 3}
    if args.model_dir is not None:
        options["model_dir"] = args.model_dir
    settings = Settings(**options)
    report = asyncio.run(measure(settings, args.model, args.requests, args.blocks))
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
