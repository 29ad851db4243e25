"""Hostile and mistaken requests under ``/v2``: each gets its 4xx as ``{"error": "<string>"}``.

The in-process app on the test SavedModels (``client``), through its lifespan and the real
middleware; the rest of the service keeps its envelope.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.process.settings import Settings
from tests.helpers.images import image_bytes

MODEL = "separable"
INFER = f"/v2/models/{MODEL}/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"
IMAGE_BYTES = 32 * 32 * 3 * 4
MAX_IMAGES = Settings().max_batch_files


def protocol_error(response: httpx.Response, status: int) -> str:
    """The protocol's error message, once the answer is ``status`` in the protocol's shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    message: str = body["error"]
    return message


def image_input(shape: list[int], datatype: str = "FP32", **fields: Any) -> dict[str, Any]:
    return {"name": "image", "shape": shape, "datatype": datatype, **fields}


def json_request(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **fields}).encode()


def binary_request(header: dict[str, Any], binary: bytes) -> tuple[bytes, dict[str, str]]:
    """A body with binary tensor data after its JSON header, and the header that sizes it."""
    encoded = json.dumps(header).encode()
    return encoded + binary, {HEADER_LENGTH: str(len(encoded))}


def fp32_binary(count: int, data: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    data = bytes(count * IMAGE_BYTES) if data is None else data
    tensor = image_input([count, 32, 32, 3], parameters={"binary_data_size": len(data)})
    return binary_request({"inputs": [tensor]}, data)


def serialized(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def post(client: TestClient, content: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(INFER, content=content, headers=headers or {})


# Shapes, datatypes, element counts


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        (image_input([1, 32, 32, 4], data=[0] * 4096), "has shape [1, 32, 32, 4]"),
        (image_input([32, 32, 3], data=[0] * 3072), "has shape [32, 32, 3]"),
        (image_input([1, 3072], data=[0] * 3072), "has shape [1, 3072]"),
        (image_input([1, 32, 32, 3], "INT8", data=[0] * 3072), "has datatype 'INT8'"),
        (image_input([1, 32, 32, 3], "FP64", data=[0] * 3072), "has datatype 'FP64'"),
        (image_input([2, 32, 32, 3], data=[0] * 3072), "has 3072 values, but its shape"),
        (image_input([1, 32, 32, 3], data=[0] * 3073), "has 3073 values, but its shape"),
        (image_input([1, 32, 32, 3], data=["0"] * 3072), "must be numbers only"),
        (image_input([1, 32, 32, 3], data=[[0] * 3071, [0]]), "not a regular array"),
        (image_input([1, 32, 32, 3], data=[1e39] * 3072), "NaN or infinite"),
        (image_input([1, 32, 32, 3]), "has no data"),
        (image_input([0, 32, 32, 3], data=[]), "at least one image"),
        (image_input([-1, 32, 32, 3], data=[]), "at least one image"),
        (image_input([1, 2], "BYTES", data=["eA==", "eA=="]), "(BYTES) has shape [1, 2]"),
        (image_input([2], "BYTES", data=["eA=="]), "has 1 elements, but its shape holds 2"),
        (image_input([1], "BYTES", data=[5]), "must be a string: the image file in base64"),
        (image_input([1], "BYTES", data=["not base64!"]), "is not base64"),
        ({"name": "pixels", "shape": [1, 32, 32, 3], "datatype": "FP32"}, "unknown input"),
    ],
)
def test_infer_refuses_a_wrong_tensor_with_400(
    client: TestClient, tensor: dict[str, Any], expected: str
) -> None:
    message = protocol_error(post(client, json_request(tensor)), 400)

    assert expected in message


def test_infer_refuses_two_inputs(client: TestClient) -> None:
    tensor = image_input([1, 32, 32, 3], data=[0] * 3072)

    message = protocol_error(post(client, json_request(tensor, tensor)), 400)

    assert "send exactly one, named 'image'" in message


@pytest.mark.parametrize(
    ("outputs", "parameters", "expected"),
    [
        ([{"name": "logits"}], None, "unknown output tensor 'logits'"),
        ([{"name": "probabilities"}] * 2, None, "requested 2 times"),
        ([{"name": "probabilities", "parameters": {"classification": 11}}], None, "from 1 to 10"),
        ([{"name": "probabilities", "parameters": {"classification": True}}], None, "from 1"),
        ([{"name": "probabilities", "parameters": {"binary_data": "yes"}}], None, "true or false"),
        (None, {"binary_data_output": 1}, "true or false"),
    ],
)
def test_infer_refuses_a_wrong_output_request_with_400(
    client: TestClient, outputs: Any, parameters: Any, expected: str
) -> None:
    fields = {k: v for k, v in (("outputs", outputs), ("parameters", parameters)) if v}
    body = json_request(image_input([1, 32, 32, 3], data=[0] * 3072), **fields)

    assert expected in protocol_error(post(client, body), 400)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"inputs": "image"}', b'{"inputs": [{"name": "image"}]}', b"\xff\xfe"],
    ids=["empty", "truncated", "array", "inputs-string", "no-shape", "not-utf8"],
)
def test_infer_refuses_a_body_that_is_not_a_request_with_400(
    client: TestClient, body: bytes
) -> None:
    message = protocol_error(post(client, body), 400)

    assert message.startswith("the inference request is not valid JSON of the protocol")


# The binary tensor data extension


def test_binary_element_count_must_match_the_shape(client: TestClient) -> None:
    body, headers = fp32_binary(2, bytes(IMAGE_BYTES))

    message = protocol_error(post(client, body, headers), 400)

    assert f"has {IMAGE_BYTES} bytes of binary data, but FP32 [2, 32, 32, 3]" in message


@pytest.mark.parametrize("claimed", ["1000000", "-5", "1.5", "0x10", "9" * 13])
def test_header_length_beyond_the_body_or_malformed_is_400(
    client: TestClient, claimed: str
) -> None:
    body, _ = fp32_binary(1)

    message = protocol_error(post(client, body, {HEADER_LENGTH: claimed}), 400)

    assert HEADER_LENGTH in message


def test_binary_data_size_beyond_the_binary_data_is_400(client: TestClient) -> None:
    tensor = image_input([1, 32, 32, 3], parameters={"binary_data_size": IMAGE_BYTES})
    body, headers = binary_request({"inputs": [tensor]}, bytes(100))

    message = protocol_error(post(client, body, headers), 400)

    assert f"declares binary_data_size {IMAGE_BYTES}, but only 100 bytes follow" in message


def test_bytes_no_input_claims_are_400(client: TestClient) -> None:
    tensor = image_input([1, 32, 32, 3], data=[0] * 3072)
    body, headers = binary_request({"inputs": [tensor]}, b"stray")

    message = protocol_error(post(client, body, headers), 400)

    assert "5 bytes follow the JSON header that no input's binary_data_size claims" in message


@pytest.mark.parametrize(
    ("binary", "expected"),
    [
        (b"\x05\x00", "truncated length prefix"),
        (struct.pack("<I", 1000) + b"short", "claims 1000 bytes, but only 5 remain"),
        (serialized([b"a", b"b"]), "more than the 1 elements"),
    ],
    ids=["prefix", "element", "extra"],
)
def test_malformed_binary_bytes_tensor_is_400(
    client: TestClient, binary: bytes, expected: str
) -> None:
    tensor = image_input([1], "BYTES", parameters={"binary_data_size": len(binary)})
    body, headers = binary_request({"inputs": [tensor]}, binary)

    assert expected in protocol_error(post(client, body, headers), 400)


def test_nan_pixels_are_400(client: TestClient) -> None:
    pixels = np.zeros((1, 32, 32, 3), np.float32)
    pixels[0, 5, 5, 1] = np.nan

    message = protocol_error(post(client, *fp32_binary(1, pixels.tobytes())), 400)

    assert "NaN or infinite values" in message


# Limits


def test_too_many_images_is_400_before_any_is_run(client: TestClient) -> None:
    fp32 = protocol_error(post(client, *fp32_binary(MAX_IMAGES + 1)), 400)
    elements = serialized([b"x"] * (MAX_IMAGES + 1))
    tensor = image_input([MAX_IMAGES + 1], "BYTES", parameters={"binary_data_size": len(elements)})
    encoded = protocol_error(post(client, *binary_request({"inputs": [tensor]}, elements)), 400)

    for message in (fp32, encoded):
        assert f"carries {MAX_IMAGES + 1} images, over the limit of {MAX_IMAGES}" in message


def test_as_many_images_as_the_limit_are_answered(client: TestClient) -> None:
    response = post(client, *fp32_binary(MAX_IMAGES))

    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [MAX_IMAGES, 10]


def test_a_body_over_the_cap_is_413_whether_declared_or_streamed(client: TestClient) -> None:
    limit = Settings().max_upload_bytes
    declared = post(client, bytes(limit + 1))

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // (1024 * 1024) + 2):
            yield bytes(1024 * 1024)

    streamed = client.post(INFER, content=chunks())

    for response in (declared, streamed):
        assert f"exceeds the limit of {limit} bytes" in protocol_error(response, 413)


def test_an_encoded_image_that_is_not_an_image_is_400(client: TestClient) -> None:
    tensor = image_input([1], "BYTES", data=[base64.b64encode(b"not an image").decode()])

    message = protocol_error(post(client, json_request(tensor)), 400)

    # The decode path's own message, as /predict answers it.
    assert (
        message
        == client.post("/predict", files={"file": ("x", b"not an image")}).json()["error"][
            "message"
        ]
    )


# Compressed bodies


def test_gzip_and_deflate_bodies_answer_like_plain_ones(client: TestClient) -> None:
    body = json_request(
        image_input([1], "BYTES", data=[base64.b64encode(image_bytes("PNG", seed=3)).decode()])
    )
    plain = post(client, body)
    zipped = post(client, gzip.compress(body), {"Content-Encoding": "gzip"})
    deflated = post(client, zlib.compress(body), {"Content-Encoding": "deflate"})

    assert plain.status_code == zipped.status_code == deflated.status_code == 200, zipped.text
    assert plain.json()["outputs"] == zipped.json()["outputs"] == deflated.json()["outputs"]


def test_a_gzip_bomb_is_413_and_garbage_400_and_brotli_415(client: TestClient) -> None:
    limit = Settings().max_upload_bytes
    bomb = gzip.compress(bytes(limit + 1024))  # about 10 KB that inflate past the cap

    assert "exceeds the limit" in protocol_error(
        post(client, bomb, {"Content-Encoding": "gzip"}), 413
    )
    assert "not valid gzip data" in protocol_error(
        post(client, b"not gzip", {"Content-Encoding": "gzip"}), 400
    )
    assert "Content-Encoding 'br' is not supported" in protocol_error(
        post(client, b"{}", {"Content-Encoding": "br"}), 415
    )


# Models and versions that do not exist


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2/models/ghost", "no model named 'ghost'"),
        ("GET", "/v2/models/ghost/ready", "no model named 'ghost'"),
        ("GET", "/v2/models/ghost/config", "no model named 'ghost'"),
        ("POST", "/v2/models/ghost/infer", "no model named 'ghost'"),
        ("POST", "/v2/models/all/infer", "no model named 'all'"),
        ("GET", f"/v2/models/{MODEL}/versions/2", "has no version '2'; it serves version 1"),
        ("GET", f"/v2/models/{MODEL}/versions/2/ready", "has no version '2'"),
        ("GET", f"/v2/models/{MODEL}/versions/x/config", "has no version 'x'"),
        ("POST", f"/v2/models/{MODEL}/versions/2/infer", "has no version '2'"),
        ("GET", "/v2/repository/index", "no route for GET /v2/repository/index"),
    ],
)
def test_unknown_models_versions_and_routes_are_404(
    client: TestClient, method: str, path: str, expected: str
) -> None:
    response = client.request(method, path, content=json_request())

    assert expected in protocol_error(response, 404)


def test_a_wrong_method_is_405_in_the_protocol_shape(client: TestClient) -> None:
    assert "method GET is not allowed" in protocol_error(client.get(INFER), 405)


def test_the_rest_of_the_service_keeps_its_envelope(client: TestClient) -> None:
    response = client.get("/models/ghost")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "MODEL_NOT_FOUND"


# Not ready


@pytest.fixture(scope="module")
def partly_ready(exported_models: Path) -> Iterator[TestClient]:
    """``separable`` ready, ``ghost`` failed (not in the model directory): never ready whole."""
    settings = Settings(model_dir=exported_models, models="separable,ghost", warmup_runs=1)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get(f"/v2/models/{MODEL}/ready").status_code != 200:
            assert time.monotonic() < deadline, "separable did not turn ready"
            time.sleep(0.05)
        yield client


def test_not_ready_is_503_for_the_server_and_the_model(partly_ready: TestClient) -> None:
    server = protocol_error(partly_ready.get("/v2/health/ready"), 503)
    model = protocol_error(partly_ready.get("/v2/models/ghost/ready"), 503)
    refused = partly_ready.post("/v2/models/ghost/infer", content=bytes(100))

    assert "ghost: failed (not found in the model directory)" in server
    assert model == "model 'ghost' is failed: not found in the model directory"
    assert protocol_error(refused, 503) == model  # refused before the body is read
    assert refused.headers["retry-after"] == "1"
    assert partly_ready.get("/v2/health/live").json() == {"live": True}
    assert partly_ready.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}


# Request ids and metrics, as on every other route


def test_protocol_requests_keep_their_request_id_and_are_counted_by_route(
    client: TestClient,
) -> None:
    answered = post(client, *fp32_binary(1))
    refused = client.post(INFER, content=b"{", headers={"X-Request-ID": "oip-client-7"})

    assert answered.status_code == 200
    assert refused.headers["x-request-id"] == "oip-client-7"
    metrics = client.get("/metrics").text
    route = 'endpoint="/v2/models/{model_name}/infer"'
    assert f'sepconv_requests_total{{{route},method="POST",status="200"}}' in metrics
    assert f'sepconv_requests_total{{{route},method="POST",status="400"}}' in metrics
