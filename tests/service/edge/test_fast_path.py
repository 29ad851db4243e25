"""The raw-body fast path of ``POST /predict``: what it answers itself, what it passes on, and
that both paths give the same answers and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.edge.fast_path import PredictQuery, parse_query
from service.main import create_app
from service.process.settings import Settings
from tests.helpers.apps import wait_until_ready
from tests.helpers.images import image_bytes

PNG = {"Content-Type": "image/png"}


class PassedOn:
    """Innermost middleware: counts the requests the fast path handed to FastAPI's routing."""

    paths: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            PassedOn.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def client(exported_models: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model_dir=exported_models))
    app.user_middleware.append(Middleware(PassedOn))
    with TestClient(app) as ready:
        wait_until_ready(ready)
        yield ready


@pytest.fixture
def passed_on() -> list[str]:
    PassedOn.paths.clear()
    return PassedOn.paths


def _without_timing(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timing_ms"}


def test_raw_body_is_answered_without_fastapi_like_a_multipart_upload(
    client: TestClient, passed_on: list[str]
) -> None:
    data = image_bytes("PNG", seed=11)

    raw = client.post("/predict?top_k=2&preview=true", content=data, headers=PNG)
    assert raw.status_code == 200, raw.text
    assert passed_on == []
    form = client.post("/predict?top_k=2&preview=true", files={"file": ("a.png", data)})
    assert passed_on == ["/predict"]

    assert raw.headers["content-type"] == form.headers["content-type"] == "application/json"
    assert raw.headers["x-request-id"]
    assert raw.headers["server-timing"].startswith("decode;dur=")
    raw_body, form_body = raw.json(), form.json()
    for by_raw, by_form in zip(raw_body["predictions"], form_body["predictions"], strict=True):
        by_raw.pop("latency_ms"), by_form.pop("latency_ms")
        by_raw.pop("batch_size"), by_form.pop("batch_size")
    assert _without_timing(raw_body) == _without_timing(form_body)


@pytest.mark.parametrize(
    ("query", "data", "status", "code"),
    [
        ("?model=nope", b"\x89PNG", 404, "MODEL_NOT_FOUND"),
        ("", b"", 400, "MISSING_FILE"),
        ("", b"not an image at all", 400, "INVALID_IMAGE"),
        ("", b"GIF89a\x01\x00\x01\x00", 400, "INVALID_IMAGE"),
    ],
)
def test_fast_path_errors_use_the_envelope_and_keep_the_connection(
    client: TestClient, passed_on: list[str], query: str, data: bytes, status: int, code: str
) -> None:
    response = client.post(f"/predict{query}", content=data, headers=PNG)

    assert passed_on == []
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert "connection" not in response.headers
    # The route gives the same answer to the same mistake sent as multipart.
    if data:
        form = client.post(f"/predict{query}", files={"file": ("x.png", data)})
        assert (form.status_code, form.json()["error"]["code"]) == (status, code)
        assert form.json()["error"]["message"] == error["message"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/predict?top_k=0", PNG),
        ("/predict?top_k=3&top_k=4", PNG),
        ("/predict?preview=maybe", PNG),
        ("/predict?top_k=" + "0" * 4400 + "3", PNG),
        ("/predict", {"Content-Type": "text/plain"}),
        ("/predict", {}),
        ("/predict/batch", PNG),
    ],
)
def test_anything_unusual_is_passed_on_to_fastapi(
    client: TestClient, passed_on: list[str], path: str, headers: dict[str, str]
) -> None:
    response = client.post(path, content=image_bytes("PNG"), headers=headers)

    assert passed_on == [path.split("?")[0]]
    assert response.status_code in (200, 400, 415, 422), response.text
    if response.status_code != 200:
        assert set(response.json()) == {"error"}


def test_fast_path_requests_are_counted_under_the_predict_route(client: TestClient) -> None:
    client.post("/predict?model=separable", content=image_bytes("PNG"), headers=PNG)

    metrics = client.get("/metrics").text
    assert 'sepconv_requests_total{endpoint="/predict",method="POST",status="200"}' in metrics
    assert 'endpoint="unmatched",method="POST"' not in metrics


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", PredictQuery()),
        (b"model=separable&top_k=10&preview=TRUE", PredictQuery("separable", 10, True)),
        (b"top_k=03&preview=0&unknown=1", PredictQuery("all", 3, False)),
        (b"model=a%20b", PredictQuery("a b", 3, False)),
    ],
)
def test_parse_query_takes_plain_values(query: bytes, expected: PredictQuery) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        b"top_k=0",
        b"top_k=11",
        b"top_k=-1",
        b"top_k=+3",
        b"top_k=3.0",
        b"top_k=" + b"0" * 4400 + b"3",  # FastAPI takes it as 3; int() here would raise
        b"top_k=" + b"1" * 4400,
        b"top_k=%D9%A3",  # an Arabic-Indic digit: FastAPI, not this parser, decides
        b"model=",
        b"model=" + b"x" * 129,
        b"model=a&model=b",
        b"preview=maybe",
    ],
)
def test_parse_query_leaves_anything_else_to_fastapi(query: bytes) -> None:
    assert parse_query(query) is None
