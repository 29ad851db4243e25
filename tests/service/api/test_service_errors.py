"""The error envelope ``{"error": {code, message, request_id}}``: each code with its status."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.process.settings import Settings
from tests.helpers.apps import ready_client
from tests.helpers.images import encode, image_bytes

UPLOAD_LIMIT = 4096


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check the envelope and its invariants; return the ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "request_id"} <= set(error)
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert "/tmp" not in response.text
    assert "Traceback" not in response.text
    return error


def raw_post(client: TestClient, data: bytes, content_type: str, **params: Any) -> httpx.Response:
    return client.post(
        "/predict", params=params, content=data, headers={"Content-Type": content_type}
    )


@pytest.fixture(scope="module")
def limited(exported_models: Path) -> Iterator[TestClient]:
    """The separable model behind small upload and image-size limits."""
    settings = Settings(
        model_dir=exported_models,
        models="separable",
        max_upload_bytes=UPLOAD_LIMIT,
        max_image_pixels=100,
    )
    with ready_client(settings) as client:
        yield client


# 400


def test_errors_invalid_image_text_sent_as_png(client: TestClient) -> None:
    response = raw_post(client, b"hello, I am not a picture", "image/png")

    assert_error(response, 400, "INVALID_IMAGE")


def test_errors_invalid_image_truncated_png(client: TestClient) -> None:
    data = image_bytes("PNG", seed=1, width=64, height=64)

    response = raw_post(client, data[: len(data) // 2], "image/png")

    error = assert_error(response, 400, "INVALID_IMAGE")
    assert "truncated or corrupt" in error["message"]


def test_errors_missing_file_empty_raw_body(client: TestClient) -> None:
    response = raw_post(client, b"", "image/jpeg")

    assert_error(response, 400, "MISSING_FILE")


def test_errors_missing_file_post_without_body_or_content_type(client: TestClient) -> None:
    response = client.post("/predict")

    assert "content-type" not in response.request.headers
    error = assert_error(response, 400, "MISSING_FILE")
    assert "'file'" in error["message"]


def test_errors_missing_file_multipart_without_file_field(client: TestClient) -> None:
    response = client.post("/predict", files={"image": ("a.png", image_bytes("PNG"), "image/png")})

    error = assert_error(response, 400, "MISSING_FILE")
    assert "'file'" in error["message"] and "'image'" in error["message"]


@pytest.mark.parametrize(
    ("path", "field", "count"), [("/predict/batch", "files", 100), ("/predict", "file", 3)]
)
def test_errors_too_many_files_far_over_the_limit(
    client: TestClient, path: str, field: str, count: int
) -> None:
    data = image_bytes("PNG", width=8, height=8)
    files = [(field, (f"{i}.png", data, "image/png")) for i in range(count)]

    response = client.post(path, files=files)

    assert_error(response, 400, "TOO_MANY_FILES")


# 415


def test_errors_unsupported_media_type_json_body(client: TestClient) -> None:
    response = client.post("/predict", json={"image": "cat.jpg"})

    error = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in error["message"]


def test_errors_unsupported_media_type_tiff(client: TestClient) -> None:
    tiff = encode(Image.new("RGB", (16, 16), (10, 200, 30)), "TIFF")

    response = client.post("/predict", files={"file": ("a.tiff", tiff, "image/tiff")})

    error = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "TIFF" in error["message"]


# 413


def test_errors_payload_too_large_by_content_length(limited: TestClient) -> None:
    response = raw_post(limited, bytes(UPLOAD_LIMIT + 1), "image/png")

    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert str(UPLOAD_LIMIT) in error["message"]


def test_errors_payload_too_large_streamed_without_content_length(limited: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield bytes(1024)

    response = limited.post("/predict", content=chunks(), headers={"Content-Type": "image/png"})

    assert "content-length" not in response.request.headers
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert str(UPLOAD_LIMIT) in error["message"]


def test_errors_image_too_large(limited: TestClient) -> None:
    data = encode(Image.new("RGB", (20, 20), (250, 20, 20)), "PNG")
    assert len(data) < UPLOAD_LIMIT

    response = raw_post(limited, data, "image/png")

    error = assert_error(response, 413, "IMAGE_TOO_LARGE")
    assert "20x20" in error["message"] and "100" in error["message"]


def test_errors_small_image_passes_the_limits(limited: TestClient) -> None:
    data = encode(Image.new("RGB", (10, 10), (250, 20, 20)), "PNG")

    response = raw_post(limited, data, "image/png")

    assert response.status_code == 200, response.text


# 404, 405, 422


@pytest.mark.parametrize("model", ["nope", "../models"])
def test_errors_model_not_found(client: TestClient, model: str) -> None:
    response = client.post(
        "/predict", params={"model": model}, files={"file": ("a.png", image_bytes(), "image/png")}
    )

    error = assert_error(response, 404, "MODEL_NOT_FOUND")
    assert "regular" in error["message"]


@pytest.mark.parametrize("top_k", ["0", "11", "abc"])
def test_errors_validation_error_top_k(client: TestClient, top_k: str) -> None:
    response = raw_post(client, image_bytes(), "image/png", top_k=top_k)

    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "top_k" in error["message"]
    if not top_k.isdigit():
        assert top_k not in error["message"]  # the client's input is never echoed back


def test_errors_not_found_unknown_route(client: TestClient) -> None:
    response = client.get("/no/such/route")

    error = assert_error(response, 404, "NOT_FOUND")
    assert "/no/such/route" in error["message"]


def test_errors_method_not_allowed_get_predict(client: TestClient) -> None:
    response = client.get("/predict")

    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]


# 503


def test_errors_overloaded_with_retry_after(exported_models: Path) -> None:
    settings = Settings(model_dir=exported_models, models="regular", max_queue=1, max_batch_size=1)
    data = image_bytes("PNG", seed=2, width=64, height=64)
    with ready_client(settings) as client:

        def post(_: int) -> httpx.Response:
            return raw_post(client, data, "image/png")

        with ThreadPoolExecutor(max_workers=24) as pool:
            responses = list(pool.map(post, range(48)))
        metrics = client.get("/metrics").text

    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert_error(response, 503, "OVERLOADED")
            assert response.headers["Retry-After"] == "1"
    rejected = statuses.count(503)
    assert f'sepconv_overloaded_total{{model="regular"}} {float(rejected)}' in metrics


# Request ids


def test_errors_request_id_echoes_the_clients_header(client: TestClient) -> None:
    response = client.get("/models/nope", headers={"X-Request-ID": "trace-42.a_b"})

    assert response.headers["X-Request-ID"] == "trace-42.a_b"
    assert assert_error(response, 404, "MODEL_NOT_FOUND")["request_id"] == "trace-42.a_b"


@pytest.mark.parametrize("given", ["has spaces", "x" * 65, "<script>"])
def test_errors_request_id_replaces_an_unsafe_client_header(client: TestClient, given: str) -> None:
    response = client.get("/models/nope", headers={"X-Request-ID": given})

    request_id = assert_error(response, 404, "MODEL_NOT_FOUND")["request_id"]
    assert request_id != given
    assert len(request_id) == 32 and request_id.isalnum()


def test_errors_request_ids_differ_between_requests(client: TestClient) -> None:
    first = client.get("/models/nope").headers["X-Request-ID"]
    second = client.get("/models/nope").headers["X-Request-ID"]

    assert first != second


def test_success_responses_carry_a_request_id(client: TestClient) -> None:
    response = client.get("/health/live", headers={"X-Request-ID": "live-1"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "live-1"


def test_errors_batch_larger_than_the_queue_is_refused_whole(exported_models: Path) -> None:
    settings = Settings(model_dir=exported_models, max_queue=4)
    with ready_client(settings) as small_queue:
        files = [("files", (f"{i}.png", image_bytes(seed=i), "image/png")) for i in range(6)]
        response = small_queue.post("/predict/batch", files=files)
        assert_error(response, 503, "OVERLOADED")
        assert response.headers["retry-after"] == "1"
        # Nothing of the refused batch was queued: a batch that fits is served at once.
        batchers = small_queue.app.state.sepconv.inference.batchers  # type: ignore[attr-defined]
        assert all(batcher.depth == 0 for batcher in batchers.values())
        fits = [("files", (f"{i}.png", image_bytes(seed=i), "image/png")) for i in range(4)]
        assert small_queue.post("/predict/batch", files=fits).status_code == 200


def test_errors_unexpected_failure_is_a_500_envelope_with_request_id(
    exported_models: Path,
) -> None:
    from service.main import create_app

    app = create_app(Settings(model_dir=exported_models))

    @app.get("/broken")
    async def broken() -> None:  # a route with a bug, to see how the service answers one
        raise RuntimeError("/srv/secret/path exploded")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/broken")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert response.headers["x-request-id"] == error["request_id"]
    assert "/srv" not in response.text and "Traceback" not in response.text
