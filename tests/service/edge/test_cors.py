"""``SEPCONV_CORS_ORIGINS``: a browser app on an allowed origin may call the API, others not.

CORS runs outside the request context and the raw-body fast path, so every answer (the fast
path's, FastAPI's routes', the error envelopes) carries the headers, or none does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.process.settings import Settings
from tests.helpers.apps import ready_client
from tests.helpers.images import image_bytes, multipart

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
ALLOW_ORIGIN = "access-control-allow-origin"


@pytest.fixture(scope="module")
def cors_client(exported_models: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=exported_models, cors_origins=f"{ALLOWED}, http://localhost:3000")
    with ready_client(settings) as client:
        yield client


def preflight(client: TestClient, origin: str, path: str = "/predict") -> dict[str, str]:
    response = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    return {"status": str(response.status_code), **response.headers}


def raw_predict(client: TestClient, origin: str, **params: str) -> tuple[int, dict[str, str]]:
    response = client.post(
        "/predict",
        params=params,
        content=image_bytes(),
        headers={"Content-Type": "image/png", "Origin": origin},
    )
    return response.status_code, dict(response.headers)


def test_cors_origins_setting_is_a_comma_list() -> None:
    settings = Settings(cors_origins=" https://a.example ,,https://b.example:8443 ")
    assert settings.cors_origin_list == ["https://a.example", "https://b.example:8443"]
    assert Settings().cors_origin_list == []


def test_cors_preflight_allows_only_the_configured_origins(cors_client: TestClient) -> None:
    allowed = preflight(cors_client, ALLOWED)
    assert allowed["status"] == "200"
    assert allowed[ALLOW_ORIGIN] == ALLOWED
    assert "POST" in allowed["access-control-allow-methods"]
    assert "content-type" in allowed["access-control-allow-headers"].lower()

    refused = preflight(cors_client, OTHER)
    assert refused["status"] == "400"
    assert ALLOW_ORIGIN not in refused


def test_cors_headers_on_the_raw_body_fast_path(cors_client: TestClient) -> None:
    status, headers = raw_predict(cors_client, ALLOWED)
    assert status == 200
    assert headers[ALLOW_ORIGIN] == ALLOWED
    # The request id is readable by the page's script, for bug reports.
    assert "x-request-id" in headers["access-control-expose-headers"].lower()

    status, headers = raw_predict(cors_client, OTHER)
    assert status == 200  # CORS is the browser's rule: the server answers, without the header
    assert ALLOW_ORIGIN not in headers


def test_cors_headers_on_routes_and_error_envelopes(cors_client: TestClient) -> None:
    # Multipart goes through FastAPI's route, not the fast path.
    routed = cors_client.post(
        "/predict", files=multipart(image_bytes()), headers={"Origin": ALLOWED}
    )
    assert routed.status_code == 200 and routed.headers[ALLOW_ORIGIN] == ALLOWED
    status, headers = raw_predict(cors_client, ALLOWED, model="mobilenet")
    assert status == 404 and headers[ALLOW_ORIGIN] == ALLOWED
    listed = cors_client.get("/models", headers={"Origin": OTHER})
    assert listed.status_code == 200 and ALLOW_ORIGIN not in listed.headers


def test_no_cors_headers_by_default(client: TestClient) -> None:
    response = client.post(
        "/predict",
        content=image_bytes(),
        headers={"Content-Type": "image/png", "Origin": ALLOWED},
    )
    assert response.status_code == 200 and ALLOW_ORIGIN not in response.headers
    refused = client.options(
        "/predict", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    )
    assert ALLOW_ORIGIN not in refused.headers
    assert refused.status_code == 405
