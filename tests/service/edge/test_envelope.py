"""The one envelope encoder: its bytes are what the middleware, the fast path and FastAPI's
handlers all send."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from service.edge.envelope import encode_envelope, envelope_response
from service.edge.middleware import RequestContextMiddleware
from service.errors import internal_error, not_ready, overloaded, payload_too_large
from service.process.metrics import ServiceMetrics

LIMIT = 16


async def _echo_or_fail(scope: Scope, receive: Receive, send: Send) -> None:
    """A tiny app behind the middleware: /fail is a bug, anything else echoes its body size."""
    if scope["path"] == "/fail":
        raise RuntimeError("a bug")
    body = await Request(scope, receive).body()
    await PlainTextResponse(str(len(body)))(scope, receive, send)


def _client() -> TestClient:
    # Used without ``with``: the tiny app has no lifespan to run.
    app = RequestContextMiddleware(
        _echo_or_fail, metrics=ServiceMetrics(), max_body_bytes=LIMIT, body_timeout_s=5.0
    )
    return TestClient(app, raise_server_exceptions=False)


def test_encode_envelope_leaves_out_a_missing_request_id_and_details() -> None:
    body = json.loads(encode_envelope(payload_too_large(LIMIT), None))
    assert body == {"error": {"code": "PAYLOAD_TOO_LARGE", "message": body["error"]["message"]}}


def test_encode_envelope_carries_the_request_id_and_details() -> None:
    error = not_ready("not ready: regular: loading", details={"models": {"regular": {}}})
    body = json.loads(encode_envelope(error, "abc"))
    assert body == {
        "error": {
            "code": "NOT_READY",
            "message": "not ready: regular: loading",
            "request_id": "abc",
            "details": {"models": {"regular": {}}},
        }
    }


def test_envelope_response_keeps_the_error_headers_and_adds_the_given_ones() -> None:
    response = envelope_response(overloaded(2), "abc", headers={"Connection": "close"})
    assert response.status_code == 503
    assert response.body == encode_envelope(overloaded(2), "abc")
    assert response.headers["retry-after"] == "2"
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.body))


def test_middleware_413_body_is_the_encoders_output() -> None:
    response = _client().post("/", content=b"x" * (LIMIT + 1), headers={"X-Request-ID": "r-413"})
    assert response.status_code == 413
    assert response.content == encode_envelope(payload_too_large(LIMIT), "r-413")
    assert response.headers["connection"] == "close"
    assert response.headers["x-request-id"] == "r-413"


def test_middleware_500_body_is_the_encoders_output() -> None:
    response = _client().get("/fail", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.content == encode_envelope(internal_error(), "r-500")


def test_middleware_passes_a_body_within_the_limit() -> None:
    response = _client().post("/", content=b"x" * LIMIT)
    assert (response.status_code, response.text) == (200, str(LIMIT))
