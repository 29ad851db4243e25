"""The Open Inference Protocol under ``/v2``, driven by the real third-party clients.

tritonclient's ``InferenceServerClient`` (JSON and binary tensor data) and KServe's
``InferenceRESTClient`` (v2) against a real uvicorn on the test SavedModels; their answers are
checked against ``/predict``'s for the same images.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from sepconv_contract import CLASS_NAMES
from service.core.imaging import decode_image
from service.process.settings import Settings
from tests.helpers.images import image_bytes
from tests.helpers.servers import live_server

TOLERANCE = 1e-5
MODEL = "separable"
IMAGES = [image_bytes("PNG", seed=11), image_bytes("JPEG", seed=12), image_bytes("PNG", seed=13)]


@pytest.fixture(scope="module")
def server_url(exported_models: Any) -> Iterator[str]:
    settings = Settings(model_dir=exported_models, warmup_runs=1)
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def triton_client(server_url: str) -> Iterator[triton.InferenceServerClient]:
    # tritonclient takes host:port, without the scheme.
    client = triton.InferenceServerClient(url=server_url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def expected(server_url: str) -> np.ndarray:
    """``/predict``'s probabilities for ``IMAGES``, in class order: what /v2 must answer."""
    rows = []
    with httpx.Client(base_url=server_url) as http:
        for data in IMAGES:
            response = http.post(
                "/predict",
                params={"model": MODEL},
                content=data,
                headers={"Content-Type": "image/png"},
            )
            assert response.status_code == 200, response.text
            probabilities = response.json()["predictions"][0]["probabilities"]
            rows.append([probabilities[label] for label in CLASS_NAMES])
    return np.array(rows, dtype=np.float32)


def pixels_of(images: list[bytes]) -> np.ndarray:
    """The FP32 [N, 32, 32, 3] tensor of ``images``: the 0-255 pixels /predict decodes."""
    return np.stack([decode_image(data, 40_000_000).pixels for data in images]).astype(np.float32)


def bytes_tensor(images: list[bytes]) -> np.ndarray:
    return np.array(images, dtype=np.object_)


# tritonclient: health, metadata, configuration


def test_triton_health_and_readiness(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert triton_client.is_model_ready(MODEL, "1")
    assert not triton_client.is_model_ready("no-such-model")
    assert not triton_client.is_model_ready(MODEL, "7")


def test_triton_server_metadata(triton_client: triton.InferenceServerClient) -> None:
    metadata = triton_client.get_server_metadata()

    assert metadata["name"] == "sepconv-serve"
    assert metadata["version"]
    assert {"binary_tensor_data", "classification", "model_configuration"} <= set(
        metadata["extensions"]
    )


def test_triton_model_metadata_names_the_signature_tensors(
    triton_client: triton.InferenceServerClient,
) -> None:
    metadata = triton_client.get_model_metadata(MODEL)

    assert metadata == triton_client.get_model_metadata(MODEL, "1")
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "tensorflow_savedmodel"
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]


def test_triton_model_config_has_what_perf_analyzer_reads(
    triton_client: triton.InferenceServerClient,
) -> None:
    config = triton_client.get_model_config(MODEL)

    assert config == triton_client.get_model_config(MODEL, "1")
    assert config["name"] == MODEL
    assert (config["platform"], config["backend"]) == ("tensorflow_savedmodel", "tensorflow")
    assert config["max_batch_size"] == Settings().max_batch_files
    assert config["input"] == [
        {"name": "image", "data_type": "TYPE_FP32", "dims": [32, 32, 3], "format": "FORMAT_NHWC"}
    ]
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]}]


# tritonclient: inference


@pytest.mark.parametrize("binary_data", [False, True], ids=["json", "binary"])
def test_triton_infer_fp32_answers_like_predict(
    triton_client: triton.InferenceServerClient, expected: np.ndarray, binary_data: bool
) -> None:
    image = triton.InferInput("image", [len(IMAGES), 32, 32, 3], "FP32")
    image.set_data_from_numpy(pixels_of(IMAGES), binary_data=binary_data)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary_data)

    result = triton_client.infer(MODEL, [image], outputs=[wanted], request_id="req-7")

    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(IMAGES), 10)
    np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        MODEL,
        "1",
        "req-7",
    )


def test_triton_infer_bytes_decodes_like_predict(
    triton_client: triton.InferenceServerClient, expected: np.ndarray
) -> None:
    image = triton.InferInput("image", [len(IMAGES)], "BYTES")
    image.set_data_from_numpy(bytes_tensor(IMAGES), binary_data=True)

    # No outputs named: tritonclient asks for every output as binary data.
    result = triton_client.infer(MODEL, [image], model_version="1")

    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=TOLERANCE)


@pytest.mark.parametrize("binary_data", [False, True], ids=["json", "binary"])
def test_triton_classification_lists_the_top_labels(
    triton_client: triton.InferenceServerClient, expected: np.ndarray, binary_data: bool
) -> None:
    image = triton.InferInput("image", [len(IMAGES), 32, 32, 3], "FP32")
    image.set_data_from_numpy(pixels_of(IMAGES), binary_data=True)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary_data, class_count=3)

    labels = triton_client.infer(MODEL, [image], outputs=[wanted]).as_numpy("probabilities")

    assert labels.shape == (len(IMAGES), 3)
    for row, probabilities in zip(labels, expected, strict=True):
        entries = [(v.decode() if isinstance(v, bytes) else str(v)).split(":") for v in row]
        best = np.argsort(-probabilities, kind="stable")[:3]
        assert [int(index) for _, index, _ in entries] == best.tolist()
        assert [label for _, _, label in entries] == [CLASS_NAMES[i] for i in best]
        for value, index, _ in entries:
            assert float(value) == pytest.approx(float(probabilities[int(index)]), abs=1e-6)


def test_triton_error_raises_its_exception_with_our_message(
    triton_client: triton.InferenceServerClient,
) -> None:
    image = triton.InferInput("image", [1, 32, 32, 4], "FP32")
    image.set_data_from_numpy(np.zeros((1, 32, 32, 4), np.float32), binary_data=True)

    with pytest.raises(InferenceServerException) as wrong_shape:
        triton_client.infer(MODEL, [image])
    with pytest.raises(InferenceServerException) as unknown:
        triton_client.get_model_metadata("no-such-model")

    assert wrong_shape.value.status() == "400"
    assert "has shape [1, 32, 32, 4]" in wrong_shape.value.message()
    assert "FP32 [N, 32, 32, 3]" in wrong_shape.value.message()
    assert unknown.value.status() == "404"
    assert unknown.value.message().startswith("no model named 'no-such-model'; available:")


# KServe's Python SDK (v2 protocol)


def test_kserve_client_live_ready_and_infer(server_url: str, expected: np.ndarray) -> None:
    async def scenario() -> tuple[Any, ...]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
        try:
            live = await client.is_server_live(server_url)
            ready = await client.is_server_ready(server_url)
            model_ready = await client.is_model_ready(server_url, MODEL)
            as_json = InferInput("image", [len(IMAGES), 32, 32, 3], "FP32", data=pixels_of(IMAGES))
            json_answer = await client.infer(server_url, InferRequest(MODEL, [as_json]), MODEL)
            as_binary = InferInput("image", [len(IMAGES)], "BYTES")
            as_binary.set_data_from_numpy(bytes_tensor(IMAGES), binary_data=True)
            binary_answer = await client.infer(server_url, InferRequest(MODEL, [as_binary]), MODEL)
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await client.infer(server_url, InferRequest(MODEL, [as_binary]), "no-such-model")
            return live, ready, model_ready, json_answer, binary_answer, refused.value
        finally:
            await client.close()

    live, ready, model_ready, json_answer, binary_answer, refused = asyncio.run(scenario())

    assert (live, ready, model_ready) == (True, True, True)
    for answer in (json_answer, binary_answer):
        assert answer.model_name == MODEL
        [output] = answer.outputs
        assert output.name == "probabilities"
        np.testing.assert_allclose(output.as_numpy(), expected, atol=TOLERANCE)
    assert refused.response.status_code == 404
    assert "no model named 'no-such-model'" in str(refused)


# The request head guard (service/edge/protocol.py)


# A JSON body arriving in the same read as its head once met the head guard's line cap (431).
def test_json_body_in_one_read_reaches_the_app_with_default_limits(exported_models: Any) -> None:
    settings = Settings(model_dir=exported_models, models="separable", warmup_runs=1)
    image = triton.InferInput("image", [len(IMAGES), 32, 32, 3], "FP32")
    image.set_data_from_numpy(pixels_of(IMAGES), binary_data=False)

    with live_server(settings) as url:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            result = client.infer(MODEL, [image])
        finally:
            client.close()

    assert result.as_numpy("probabilities").shape == (len(IMAGES), 10)
