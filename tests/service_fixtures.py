"""Fixtures and helpers for the service tests: a ready app on the test SavedModels, test images.

tests/conftest.py registers this module as a plugin, so every test module sees its fixtures.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sepconv_contract import CLASS_NAMES
from service.main import create_app
from service.process.settings import Settings

READY_TIMEOUT_S = 120.0
CLASSES = list(CLASS_NAMES)
MODELS = ["regular", "separable"]
PARAMETERS = {"regular": 1186378, "separable": 174821}
MACS_PER_IMAGE = {"regular": 152805376, "separable": 18295808}


def wait_until_ready(client: TestClient, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``/health/ready`` until it answers 200, or fail the test with its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/health/ready")
        if response.status_code == 200:
            return
        details = response.json()["error"].get("details", {})
        statuses = {m["status"] for m in details.get("models", {}).values()}
        # A failed model with none still loading will never turn ready: fail now, not at the
        # deadline.
        if time.monotonic() > deadline or ("failed" in statuses and "loading" not in statuses):
            pytest.fail(f"not ready: {response.status_code} {response.text}")
        time.sleep(0.05)


@contextlib.contextmanager
def ready_client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient on ``create_app(settings)`` with its lifespan running and models loaded."""
    with TestClient(create_app(settings)) as client:
        wait_until_ready(client)
        yield client


@pytest.fixture(scope="session")
def client(exported_models: Path) -> Iterator[TestClient]:
    """The service on both test SavedModels, shared by every test that only reads from it."""
    with ready_client(Settings(model_dir=exported_models)) as ready:
        yield ready


def sample_pixels(seed: int, width: int = 40, height: int = 36) -> np.ndarray:
    """A gradient with seeded noise, so different seeds give visibly different images."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    base = np.stack(np.broadcast_arrays(x, y, 255 - x), axis=-1)
    noise = rng.integers(-40, 40, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def encode(image: Image.Image, format: str, **options: Any) -> bytes:
    """``image`` saved by Pillow in ``format``, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def image_bytes(format: str = "PNG", seed: int = 0, width: int = 40, height: int = 36) -> bytes:
    """A colourful RGB test image in ``format``."""
    return encode(Image.fromarray(sample_pixels(seed, width, height), "RGB"), format)


def multipart(data: bytes, name: str = "image.png", content_type: str = "image/png") -> Any:
    """A ``files=`` argument uploading ``data`` as the multipart field ``file``."""
    return {"file": (name, data, content_type)}


def predict(client: TestClient, data: bytes, **params: Any) -> dict[str, Any]:
    """``POST /predict`` of ``data`` as multipart; asserts a 200 and returns the answer."""
    response = client.post("/predict", params=params, files=multipart(data))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
