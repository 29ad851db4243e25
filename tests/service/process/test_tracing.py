"""OpenTelemetry tracing (``SEPCONV_TRACING=on``): each ``POST /predict`` is a server span with
``decode``, ``queue`` and ``engine`` children, in the caller's trace when it sends
``traceparent``; off, the app never imports OpenTelemetry."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.main import create_app
from service.process.settings import Settings
from service.process.tracing import NO_TRACING, start_tracing
from tests.helpers.apps import wait_until_ready
from tests.helpers.images import image_bytes, multipart

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"}
PNG = {"Content-Type": "image/png"}


class RoutedPaths:
    """Innermost middleware: the requests the fast path handed on to FastAPI's routing."""

    paths: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            RoutedPaths.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def traced(exported_models: Path) -> Iterator[tuple[TestClient, Any]]:
    """The app with tracing on, its spans exported to an in-memory exporter as they end."""
    memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = memory.InMemorySpanExporter()
    settings = Settings(model_dir=exported_models, tracing="on", warmup_runs=1)
    app = create_app(settings, tracing=start_tracing(settings, exporter=exporter))
    app.user_middleware.append(Middleware(RoutedPaths))
    with TestClient(app) as client:
        wait_until_ready(client)
        yield client, exporter


@pytest.fixture
def spans(traced: tuple[TestClient, Any]) -> Any:
    """The exporter, emptied of the spans of earlier requests (readiness polls included)."""
    _, exporter = traced
    exporter.clear()
    RoutedPaths.paths.clear()
    return exporter


def _tree(
    finished: Sequence[Any], server_name: str = "POST /predict"
) -> tuple[Any, dict[str, list[Any]]]:
    """The one server span and its children by name; asserts nothing else was recorded."""
    servers = [s for s in finished if s.kind.name == "SERVER"]
    assert [s.name for s in servers] == [server_name], [s.name for s in finished]
    server = servers[0]
    children: dict[str, list[Any]] = {}
    for span in finished:
        if span is not server:
            assert span.parent is not None and span.parent.span_id == server.context.span_id
            assert span.context.trace_id == server.context.trace_id
            children.setdefault(span.name, []).append(span)
    return server, children


def _assert_continues_caller(server: Any) -> None:
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and server.parent.is_remote
    assert format(server.parent.span_id, "016x") == CALLER_SPAN_ID


def _assert_request_tree(
    children: dict[str, list[Any]], answer: dict[str, Any], runtime: str = "tensorflow"
) -> None:
    """decode, then a queue wait and an engine call per model that answered."""
    models = [p["model"] for p in answer["predictions"]]
    assert sorted(children) == ["decode", "engine", "queue"]
    (decode,) = children["decode"]
    assert decode.attributes["sepconv.upload_bytes"] > 0
    queues = {s.attributes["sepconv.model"]: s for s in children["queue"]}
    engines = {s.attributes["sepconv.model"]: s for s in children["engine"]}
    assert sorted(queues) == sorted(engines) == sorted(models)
    for prediction in answer["predictions"]:
        queue, engine = queues[prediction["model"]], engines[prediction["model"]]
        assert dict(engine.attributes) == {
            "sepconv.model": prediction["model"],
            "sepconv.runtime": runtime,
            "sepconv.batch_size": prediction["batch_size"],
        }
        # In order and back to back: decoded, queued until the call, then the call.
        assert decode.end_time <= queue.start_time <= queue.end_time == engine.start_time
        assert engine.end_time > engine.start_time
        assert engine.status.is_ok


def test_tracing_raw_body_predict_is_traced_by_the_fast_path(
    traced: tuple[TestClient, Any], spans: Any
) -> None:
    client, _ = traced
    response = client.post(
        "/predict",
        params={"model": "separable"},
        content=image_bytes(seed=3),
        headers={**PNG, **TRACEPARENT},
    )

    assert response.status_code == 200, response.text
    assert RoutedPaths.paths == []  # answered by the fast path, before FastAPI's routing
    server, children = _tree(spans.get_finished_spans())
    _assert_continues_caller(server)
    assert server.attributes["http.route"] == "/predict"
    _assert_request_tree(children, response.json())


def test_tracing_multipart_predict_has_a_queue_and_engine_span_per_model(
    traced: tuple[TestClient, Any], spans: Any
) -> None:
    client, _ = traced
    response = client.post("/predict", files=multipart(image_bytes(seed=4)), headers=TRACEPARENT)

    assert response.status_code == 200, response.text
    assert RoutedPaths.paths == ["/predict"]  # the route answered this one
    server, children = _tree(spans.get_finished_spans())
    _assert_continues_caller(server)
    assert len(response.json()["predictions"]) == 2
    _assert_request_tree(children, response.json())


def test_tracing_without_traceparent_starts_a_new_trace(
    traced: tuple[TestClient, Any], spans: Any
) -> None:
    client, _ = traced
    response = client.post("/predict?model=regular", content=image_bytes(seed=5), headers=PNG)

    assert response.status_code == 200, response.text
    server, children = _tree(spans.get_finished_spans())
    assert server.parent is None
    assert format(server.context.trace_id, "032x") != TRACE_ID
    _assert_request_tree(children, response.json())


def test_tracing_images_sharing_an_engine_call_each_get_its_spans(
    traced: tuple[TestClient, Any], spans: Any
) -> None:
    client, _ = traced
    files = [("files", (f"{i}.png", image_bytes(seed=i), "image/png")) for i in range(4)]
    response = client.post("/predict/batch?model=separable", files=files)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    _, children = _tree(spans.get_finished_spans(), "POST /predict/batch")
    assert len(children["decode"]) == len(children["queue"]) == len(children["engine"]) == 4
    # Each engine call appears once per image it served, with the same times and batch size.
    calls: dict[tuple[int, int], list[Any]] = {}
    for engine in children["engine"]:
        calls.setdefault((engine.start_time, engine.end_time), []).append(engine)
    for served in calls.values():
        assert {s.attributes["sepconv.batch_size"] for s in served} == {len(served)}
    assert sorted(len(served) for served in calls.values()) == sorted(
        _batch_sizes([r["predictions"][0]["batch_size"] for r in results])
    )


class FailingEngine:
    """Stands in for a model's engine and fails every call, as a broken runtime would."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime

    def predict(self, images: Any) -> Any:
        raise RuntimeError("the engine failed")


def test_tracing_a_failed_engine_call_is_an_error_span(
    traced: tuple[TestClient, Any], spans: Any
) -> None:
    client, _ = traced
    batcher = client.app.state.sepconv.inference.batchers["separable"]  # type: ignore[attr-defined]
    real = batcher.engine
    batcher.engine = FailingEngine(real.runtime)
    try:
        response = client.post("/predict?model=separable", content=image_bytes(seed=9), headers=PNG)
    finally:
        batcher.engine = real

    assert response.status_code == 500 and response.json()["error"]["code"] == "ENGINE_ERROR"
    server, children = _tree(spans.get_finished_spans())
    (engine,) = children["engine"]
    assert not engine.status.is_ok and engine.status.description == "RuntimeError"
    assert [event.name for event in engine.events] == ["exception"]
    assert engine.attributes["sepconv.batch_size"] == 1
    # The HTTP semantic conventions' old name, or the stable one (OTEL_SEMCONV_STABILITY_OPT_IN).
    status = server.attributes.get(
        "http.response.status_code", server.attributes.get("http.status_code")
    )
    assert status == 500


def _batch_sizes(per_image: list[int]) -> list[int]:
    """The engine calls' sizes from each image's ``batch_size`` (n images said n, per call)."""
    sizes: list[int] = []
    for size in sorted(set(per_image)):
        sizes += [size] * (per_image.count(size) // size)
    return sizes


class _Collector(http.server.BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP receiver: keeps the bodies posted to /v1/traces."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            _Collector.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _otlp_collector() -> Iterator[str]:
    _Collector.bodies.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_tracing_exports_by_otlp_when_an_endpoint_is_configured(
    exported_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    with _otlp_collector() as endpoint:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sepconv-test")
        monkeypatch.setenv("SEPCONV_TRACING", "on")
        # From the environment, as a deployment configures it.
        settings = Settings(model_dir=exported_models, models="separable", warmup_runs=1)
        with TestClient(create_app(settings)) as client:
            wait_until_ready(client)
            response = client.post("/predict", content=image_bytes(seed=6), headers=PNG)
            assert response.status_code == 200, response.text
        # Leaving the lifespan shut the provider down, which flushed the batch processor.

    names: list[str] = []
    services: set[str] = set()
    for body in _Collector.bodies:
        request = trace_service.ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services |= {
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            }
            for scope_spans in resource_spans.scope_spans:
                names += [span.name for span in scope_spans.spans]
    assert services == {"sepconv-test"}
    assert {"POST /predict", "decode", "queue", "engine"} <= set(names)


# Runs in a fresh interpreter: this test process may already have imported OpenTelemetry.
# FastAPI itself (0.16x) imports opentelemetry-api for its native telemetry: what tracing off
# must add is nothing beyond that, and in particular none of the SDK, exporter or instrumentation.
OFF_PROGRAM = r"""
import json, sys, time

def opentelemetry_modules():
    return {m for m in sys.modules if m.split(".")[0] == "opentelemetry"}

import fastapi
from fastapi.testclient import TestClient
fastapis_own = opentelemetry_modules()

from service.main import create_app
from service.process.settings import Settings
from service.process.tracing import NO_TRACING
from tests.helpers.images import image_bytes

app = create_app(Settings(model_dir=sys.argv[1], models="separable", warmup_runs=1))
header = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
with TestClient(app) as client:
    for _ in range(1200):
        if client.get("/health/ready").status_code == 200:
            break
        time.sleep(0.05)
    raw = client.post(
        "/predict", content=image_bytes(), headers={"Content-Type": "image/png", **header}
    )
    upload = client.post(
        "/predict", files={"file": ("a.png", image_bytes(), "image/png")}, headers=header
    )
added = sorted(opentelemetry_modules() - fastapis_own)
sdk = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter",
    "opentelemetry.instrumentation")))
provider = None
if "opentelemetry.trace" in sys.modules:
    provider = type(sys.modules["opentelemetry.trace"].get_tracer_provider()).__name__
print(json.dumps({
    "statuses": [raw.status_code, upload.status_code],
    "no_tracing": app.state.sepconv.inference.tracing is NO_TRACING,
    "added": added,
    "sdk": sdk,
    "provider": provider,
    "traceparent_echoed": "traceparent" in raw.headers or "traceparent" in upload.headers,
}))
"""


def test_tracing_off_imports_no_opentelemetry_and_records_nothing(exported_models: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SEPCONV_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-c", OFF_PROGRAM, str(exported_models)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=environment,
        cwd=Path(__file__).resolve().parents[3],
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200] and report["no_tracing"]
    assert report["added"] == [] and report["sdk"] == []
    # No tracer provider was ever installed (the API's proxy, or no API at all): no span
    # can be recorded, by this app or by FastAPI's own telemetry.
    assert report["provider"] in (None, "ProxyTracerProvider")
    assert not report["traceparent_echoed"]


def test_tracing_off_is_the_default() -> None:
    assert Settings().tracing == "off"
    assert start_tracing(Settings(tracing="off")) is NO_TRACING
