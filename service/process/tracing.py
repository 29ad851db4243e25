"""Tracing: the small facade the serving code calls, a no-op unless ``SEPCONV_TRACING=on``.

Off (the default), nothing here imports OpenTelemetry and every hook costs a method call: the
hot path pays no more than that. On, ``start_tracing`` imports ``service.process.otel``, which
records each request's spans with the OpenTelemetry SDK (the ``tracing`` extra):

    POST /predict            the server span (FastAPI instrumentation, fast path included)
      decode                 the upload to 32x32 pixels
      queue                  enqueued until its batch went to the engine
      engine                 the engine call its batch rode in (model, runtime, batch_size)

A batch serves several requests, so each request gets its own ``queue`` and ``engine`` span in
its own trace (see ``record_batch``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.export import SpanExporter

    from service.process.settings import Settings

# Span names and attribute keys: the vocabulary a trace backend is queried with (docs/tracing.md).
DECODE = "decode"
QUEUE = "queue"
ENGINE = "engine"
MODEL = "sepconv.model"
RUNTIME = "sepconv.runtime"
BATCH_SIZE = "sepconv.batch_size"
UPLOAD_BYTES = "sepconv.upload_bytes"

Attributes = Mapping[str, str | int | float | bool]

_NO_SPAN: AbstractContextManager[object] = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class QueuedTrace:
    """A request's trace context when it joined a model's queue, and when it did."""

    context: object  # an OpenTelemetry Context, opaque to the code that carries it
    enqueued_ns: int  # time.time_ns(), the clock spans are stamped with


@dataclass(frozen=True, slots=True)
class EngineCall:
    """One engine call of a batch, as its requests' spans describe it."""

    model: str
    runtime: str
    batch_size: int
    started_ns: int  # time.time_ns()
    ended_ns: int
    error: BaseException | None = None


class Tracing:
    """Tracing off: every hook does nothing. ``service.process.otel`` overrides them all."""

    enabled: bool = False

    def span(
        self, name: str, attributes: Attributes | None = None
    ) -> AbstractContextManager[object]:
        """A child span of the current one around a ``with`` block."""
        return _NO_SPAN

    def enqueue(self) -> QueuedTrace | None:
        """The current request's context, taken as it joins a queue; None when off."""
        return None

    def record_batch(self, traces: Sequence[QueuedTrace], call: EngineCall) -> None:
        """One engine call, seen by each request it served: a ``queue`` span (enqueued until
        the call started) and an ``engine`` span (the call), both in that request's trace."""

    def instrument(self, app: FastAPI) -> None:
        """Give every HTTP request of ``app`` a server span, continuing ``traceparent``."""

    def shutdown(self) -> None:
        """Export what is still buffered, then stop (at the end of the app's lifespan)."""


NO_TRACING = Tracing()


def start_tracing(settings: Settings, *, exporter: SpanExporter | None = None) -> Tracing:
    """The tracing ``settings`` ask for: ``NO_TRACING``, or OpenTelemetry exporting its spans
    to ``exporter`` (a test's) or else by OTLP when the SDK's endpoint variable is set."""
    if settings.tracing == "off":
        return NO_TRACING
    try:
        from service.process.otel import OpenTelemetryTracing
    except ImportError as error:
        raise RuntimeError(
            f"SEPCONV_TRACING=on needs OpenTelemetry, which is not installed ({error.name}): "
            "pip install 'sepconv-serve[tracing]', or set SEPCONV_TRACING=off"
        ) from error
    return OpenTelemetryTracing.start(exporter)
