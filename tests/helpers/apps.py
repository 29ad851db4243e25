"""A ready app on the test SavedModels, in-process (``TestClient`` through its lifespan)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sepconv_contract import CLASS_NAMES
from service.main import create_app
from service.process.settings import Settings
from tests.helpers.images import multipart

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


@pytest.fixture(scope="session")
def runtime_artifact_models(
    exported_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Both test models with every runtime's artifact written and scored, as sepconv-export
    writes them (``tests.helpers.runtimes``), shared by the suites that only read them."""
    from tests.helpers.runtimes import write_runtime_models

    root, _ = write_runtime_models(exported_models, tmp_path_factory.mktemp("runtime-models"))
    return root


def predict(client: TestClient, data: bytes, **params: Any) -> dict[str, Any]:
    """``POST /predict`` of ``data`` as multipart; asserts a 200 and returns the answer."""
    response = client.post("/predict", params=params, files=multipart(data))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
