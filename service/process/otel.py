"""The tracing facade on the OpenTelemetry SDK: imported only when ``SEPCONV_TRACING=on``.

The provider is the app's own, not the SDK's global one: two apps in one process (tests, or an
embedding program) keep separate traces, and nothing else in the process is traced by accident.
The SDK reads its standard variables itself (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``, ``OTEL_PROPAGATORS``,
``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``); this module only asks whether an endpoint is set.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from service.process.tracing import (
    BATCH_SIZE,
    ENGINE,
    MODEL,
    QUEUE,
    RUNTIME,
    Attributes,
    EngineCall,
    QueuedTrace,
    Tracing,
)

logger = logging.getLogger("sepconv.tracing")

# Either names where spans go; the SDK's exporter reads them (the first wins, as is).
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_SERVICE_NAME = "sepconv-serve"


def service_resource() -> Resource:
    """The SDK's resource (``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` included),
    named ``sepconv-serve`` rather than ``unknown_service`` when the environment names none."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class OpenTelemetryTracing(Tracing):
    """Spans recorded by the SDK on this app's own ``TracerProvider``."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("sepconv")

    @classmethod
    def start(cls, exporter: SpanExporter | None = None) -> OpenTelemetryTracing:
        """A provider exporting to ``exporter`` as each span ends, or else in batches by OTLP
        over HTTP when an endpoint is configured; with neither, spans are only propagated."""
        provider = TracerProvider(resource=service_resource())
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            logger.warning(
                "tracing is on but no OTLP endpoint is configured: spans are recorded and "
                "traceparent is continued, but nothing is exported; set "
                "OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318)"
            )
        return cls(provider)

    def span(
        self, name: str, attributes: Attributes | None = None
    ) -> AbstractContextManager[object]:
        return self.tracer.start_as_current_span(name, attributes=attributes)

    def enqueue(self) -> QueuedTrace:
        return QueuedTrace(otel_context.get_current(), time.time_ns())

    def record_batch(self, traces: Sequence[QueuedTrace], call: EngineCall) -> None:
        # One engine span per request, not one batch span linked to each: trace views (Jaeger,
        # Tempo, Zipkin) draw a request's own spans in its waterfall, while a link is a
        # footnote to follow by hand, so a linked batch span would leave a gap where the time
        # went. The spans share their start and end, and batch_size says how many they are.
        queue_attributes: Attributes = {MODEL: call.model}
        engine_attributes: Attributes = {
            MODEL: call.model,
            RUNTIME: call.runtime,
            BATCH_SIZE: call.batch_size,
        }
        for queued in traces:
            parent = queued.context if isinstance(queued.context, Context) else None
            self.tracer.start_span(
                QUEUE, parent, attributes=queue_attributes, start_time=queued.enqueued_ns
            ).end(end_time=call.started_ns)
            engine = self.tracer.start_span(
                ENGINE, parent, attributes=engine_attributes, start_time=call.started_ns
            )
            if call.error is not None:
                engine.record_exception(call.error)
                engine.set_status(Status(StatusCode.ERROR, type(call.error).__name__))
            engine.end(end_time=call.ended_ns)

    def instrument(self, app: FastAPI) -> None:
        # It wraps Starlette's whole middleware stack, so the raw-body fast path (a middleware
        # that answers before routing) gets the same server span as the routes.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            # A span per ASGI message (each body chunk) says nothing the server span does not.
            exclude_spans=["receive", "send"],
        )

    def shutdown(self) -> None:
        self.provider.shutdown()
