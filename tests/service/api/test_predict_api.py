"""The HTTP contract of ``/predict`` and ``/predict/batch``, on real exported SavedModels."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.core.imaging import decode_image
from tests.helpers.apps import CLASSES, MODELS, predict
from tests.helpers.images import image_bytes, multipart

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def serving_signatures(exported_models: Path) -> dict[str, Any]:
    """Each exported SavedModel's ``serving_default``, loaded directly with TensorFlow."""
    import tensorflow as tf

    return {
        name: tf.saved_model.load(str(exported_models / name / "1")).signatures["serving_default"]
        for name in MODELS
    }


def direct_probabilities(signature: Any, data: bytes) -> np.ndarray:
    """What the SavedModel itself says for the 32x32 pixels the service decodes from ``data``."""
    import tensorflow as tf

    pixels = decode_image(data, max_pixels=40_000_000).pixels
    outputs = signature(image=tf.constant(pixels[np.newaxis].astype(np.float32)))
    return np.asarray(outputs["probabilities"])[0]


# POST /predict


def test_predict_multipart_answers_every_model_in_order(client: TestClient) -> None:
    body = predict(client, image_bytes("PNG", seed=1, width=40, height=36))

    assert set(body) == {"image", "predictions", "agreement", "timing_ms"}
    assert body["image"] == {"format": "PNG", "width": 40, "height": 36, "mode": "RGB"}
    assert [p["model"] for p in body["predictions"]] == MODELS
    for prediction in body["predictions"]:
        assert set(prediction) == {
            "model",
            "label",
            "confidence",
            "top_k",
            "probabilities",
            "latency_ms",
            "batch_size",
        }
        assert list(prediction["probabilities"]) == CLASSES
        assert prediction["label"] in CLASSES
        assert prediction["confidence"] == max(prediction["probabilities"].values())
        assert prediction["probabilities"][prediction["label"]] == prediction["confidence"]
        assert len(prediction["top_k"]) == 3
        assert prediction["latency_ms"] > 0
        assert prediction["batch_size"] >= 1
    assert isinstance(body["agreement"], bool)
    assert body["timing_ms"]["total"] >= body["timing_ms"]["decode"] > 0


def test_predict_raw_jpeg_body_answers_like_multipart(client: TestClient) -> None:
    data = image_bytes("JPEG", seed=2)

    raw = client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"})
    form = predict(client, data)

    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["image"]["format"] == "JPEG"
    assert [p["model"] for p in body["predictions"]] == MODELS
    for by_raw, by_form in zip(body["predictions"], form["predictions"], strict=True):
        assert by_raw["label"] == by_form["label"]
        assert by_raw["probabilities"] == pytest.approx(by_form["probabilities"], abs=TOLERANCE)


def test_predict_probabilities_sum_to_one(client: TestClient) -> None:
    body = predict(client, image_bytes("PNG", seed=3))

    for prediction in body["predictions"]:
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert all(0.0 <= p <= 1.0 for p in prediction["probabilities"].values())


@pytest.mark.parametrize("top_k", [1, 4, 10])
def test_predict_top_k_lists_the_most_probable_classes(client: TestClient, top_k: int) -> None:
    body = predict(client, image_bytes("PNG", seed=4), top_k=top_k)

    for prediction in body["predictions"]:
        listed = prediction["top_k"]
        assert len(listed) == top_k
        probabilities = [entry["probability"] for entry in listed]
        assert probabilities == sorted(probabilities, reverse=True)
        assert listed[0]["label"] == prediction["label"]
        ranked = sorted(prediction["probabilities"].values(), reverse=True)
        assert probabilities == ranked[:top_k]
        for entry in listed:
            assert prediction["probabilities"][entry["label"]] == entry["probability"]


def test_predict_model_query_answers_one_model(client: TestClient) -> None:
    body = predict(client, image_bytes("PNG", seed=5), model="separable")

    assert [p["model"] for p in body["predictions"]] == ["separable"]
    assert body["agreement"] is True


def test_predict_server_timing_names_decode_and_each_model(client: TestClient) -> None:
    response = client.post("/predict", files=multipart(image_bytes("PNG", seed=6)))

    assert response.status_code == 200
    metrics = response.headers["Server-Timing"].split(", ")
    names = [metric.split(";", 1)[0] for metric in metrics]
    assert names == ["decode", *MODELS]
    for metric in metrics:
        assert re.search(r";dur=\d+\.\d{3}$", metric), metric


def test_predict_preview_is_the_32x32_input_as_png(client: TestClient) -> None:
    data = image_bytes("PNG", seed=7, width=64, height=48)

    body = predict(client, data, preview="true")

    prefix = "data:image/png;base64,"
    assert body["preview"].startswith(prefix)
    preview = Image.open(io.BytesIO(base64.b64decode(body["preview"][len(prefix) :])))
    assert preview.format == "PNG"
    assert preview.size == (32, 32)
    expected = decode_image(data, max_pixels=40_000_000).pixels
    np.testing.assert_array_equal(np.asarray(preview.convert("RGB")), expected)


def test_predict_without_preview_omits_it(client: TestClient) -> None:
    assert "preview" not in predict(client, image_bytes("PNG", seed=7))


def test_predict_agreement_is_true_iff_labels_match(client: TestClient) -> None:
    files = [("files", (f"{s}.png", image_bytes("PNG", seed=s), "image/png")) for s in range(8)]

    response = client.post("/predict/batch", files=files)

    assert response.status_code == 200, response.text
    for result in response.json()["results"]:
        labels = {p["label"] for p in result["predictions"]}
        assert result["agreement"] is (len(labels) == 1)


def test_predict_probabilities_equal_the_saved_model_called_directly(
    client: TestClient, serving_signatures: dict[str, Any]
) -> None:
    data = image_bytes("JPEG", seed=8, width=90, height=70)

    body = predict(client, data)

    for prediction in body["predictions"]:
        expected = direct_probabilities(serving_signatures[prediction["model"]], data)
        served = np.array([prediction["probabilities"][label] for label in CLASSES])
        np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)


# POST /predict/batch


def test_predict_batch_answers_in_upload_order_like_single_predictions(
    client: TestClient,
) -> None:
    images = [image_bytes("PNG", seed=20 + i, width=30 + 10 * i, height=32) for i in range(3)]
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]

    response = client.post("/predict/batch", files=files)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 3
    assert [r["image"]["width"] for r in body["results"]] == [30, 40, 50]
    for data, result in zip(images, body["results"], strict=True):
        single = predict(client, data)
        assert [p["model"] for p in result["predictions"]] == MODELS
        for batched, alone in zip(result["predictions"], single["predictions"], strict=True):
            assert batched["label"] == alone["label"]
            assert batched["probabilities"] == pytest.approx(alone["probabilities"], abs=TOLERANCE)


def test_predict_batch_without_files_is_missing_file(client: TestClient) -> None:
    body = (
        b"--sepconv\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\n'
        b"no images here\r\n"
        b"--sepconv--\r\n"
    )

    response = client.post(
        "/predict/batch",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=sepconv"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MISSING_FILE"


def test_predict_batch_over_64_files_is_too_many_files(client: TestClient) -> None:
    data = image_bytes("PNG", seed=9, width=8, height=8)
    files = [("files", (f"{i}.png", data, "image/png")) for i in range(65)]

    response = client.post("/predict/batch", files=files)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "TOO_MANY_FILES"
    assert "64" in error["message"]


def test_predict_batch_error_names_the_failing_file_by_index_and_name(
    client: TestClient,
) -> None:
    good = image_bytes("PNG", seed=11, width=16, height=16)
    files = [
        ("files", ("first.png", good, "image/png")),
        ("files", ("holiday.jpg", b"not an image at all", "image/jpeg")),
        ("files", ("third.png", good, "image/png")),
    ]

    response = client.post("/predict/batch", files=files)

    assert response.status_code in (400, 415), response.text
    error = response.json()["error"]
    assert error["message"].startswith("file 1 ('holiday.jpg'): ")
    assert error["details"]["file"] == {"index": 1, "name": "holiday.jpg"}


def test_predict_batch_error_of_a_raw_body_names_its_index_only(client: TestClient) -> None:
    response = client.post(
        "/predict/batch", content=b"\x89PNG broken", headers={"Content-Type": "image/png"}
    )

    assert response.status_code in (400, 415), response.text
    error = response.json()["error"]
    assert error["message"].startswith("file 0: ")
    assert error["details"]["file"] == {"index": 0, "name": None}
