"""Python clients for sepconv-serve over httpx, sync and async, with typed results.

    with SepconvClient("http://127.0.0.1:8000") as client:
        answer = client.predict("examples/cat.png")
        print(answer.predictions[0].label)

Images may be a path, bytes or a PIL image (Pillow itself is not a dependency). One image is
sent as the raw request body, the service's fast path; a batch as one multipart request.
503 answers (OVERLOADED, NOT_READY) are retried after their ``Retry-After`` delay, and a
connection the server closed without an answer (a worker retiring just as it accepted it) is
retried at once; both a bounded number of times. Every endpoint is free of side effects, so a
retried request never does anything twice.

Both clients send the requests ``sepconv_client.calls`` builds; they differ only in waiting.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import TypeVar

import httpx

from sepconv_client import calls
from sepconv_client.calls import (
    BROKEN_CONNECTION,
    BROKEN_CONNECTION_DELAY_S,
    DEFAULT_BATCH_SIZE,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    Call,
    HealthReport,
    ImageInput,
    SepconvError,
    encode_image,
    retry_delay,
)
from sepconv_contract.limits import ALL_MODELS, DEFAULT_PREVIEW, DEFAULT_TOP_K
from sepconv_contract.schemas import (
    BatchPredictResponse,
    CompareResponse,
    ModelInfo,
    PredictResponse,
)

__all__ = [
    "DEFAULT_URL",
    "AsyncSepconvClient",
    "HealthReport",
    "ImageInput",
    "SepconvClient",
    "SepconvError",
    "default_url",
    "encode_image",
]

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "SEPCONV_URL"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
T = TypeVar("T")


def default_url() -> str:
    """``$SEPCONV_URL`` when set, else the service's own default address."""
    return os.environ.get(URL_VARIABLE) or DEFAULT_URL


class SepconvClient:
    """Blocking client. Pass ``http_client`` to reuse an ``httpx.Client`` (or a test client)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._http = http_client or httpx.Client(
            base_url=base_url or default_url(), timeout=timeout
        )
        self._owns_http = http_client is None
        self.max_retries = max_retries

    def __enter__(self) -> SepconvClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def send(self, call: Call[T]) -> T:
        """Send ``call``, retrying as the module says, and read its answer."""
        retries = self.max_retries if call.retries else 0
        for attempt in range(retries + 1):
            try:
                response = self._http.request(**call.request())
            except BROKEN_CONNECTION:
                if attempt == retries:
                    raise
                time.sleep(BROKEN_CONNECTION_DELAY_S)
                continue
            delay = retry_delay(response, attempt)
            if delay is None or attempt == retries:
                return call.read(response)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def predict(
        self,
        image: ImageInput,
        *,
        model: str = ALL_MODELS,
        top_k: int = DEFAULT_TOP_K,
        preview: bool = DEFAULT_PREVIEW,
    ) -> PredictResponse:
        """Classify one image with every model (or ``model``)."""
        return self.send(calls.predict(image, model=model, top_k=top_k, preview=preview))

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        model: str = ALL_MODELS,
        top_k: int = DEFAULT_TOP_K,
        preview: bool = DEFAULT_PREVIEW,
    ) -> BatchPredictResponse:
        """Classify up to 64 images in one request; results come back in order."""
        return self.send(calls.predict_batch(images, model=model, top_k=top_k, preview=preview))

    def models(self) -> list[ModelInfo]:
        """Every model with its parameters, MACs, accuracy, device and status."""
        return self.send(calls.models())

    def model(self, name: str) -> ModelInfo:
        return self.send(calls.model(name))

    def compare(
        self,
        image: ImageInput | None = None,
        *,
        repeats: int = DEFAULT_REPEATS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        warmup: int = DEFAULT_WARMUP,
        models: str | Sequence[str] = ALL_MODELS,
        runtimes: str | Sequence[str] | None = None,
    ) -> CompareResponse:
        """A fair, interleaved latency comparison (on ``image``, or a synthetic input)."""
        return self.send(
            calls.compare(
                image,
                repeats=repeats,
                batch_size=batch_size,
                warmup=warmup,
                models=models,
                runtimes=runtimes,
            )
        )

    def health(self) -> HealthReport:
        """Readiness of the service and of each model (no retries, never raises on 503)."""
        return self.send(calls.health())


class AsyncSepconvClient:
    """The asyncio twin of ``SepconvClient``: the same methods, awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http_client or httpx.AsyncClient(
            base_url=base_url or default_url(), timeout=timeout
        )
        self._owns_http = http_client is None
        self.max_retries = max_retries

    async def __aenter__(self) -> AsyncSepconvClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def send(self, call: Call[T]) -> T:
        """Send ``call``, retrying as the module says, and read its answer."""
        retries = self.max_retries if call.retries else 0
        for attempt in range(retries + 1):
            try:
                response = await self._http.request(**call.request())
            except BROKEN_CONNECTION:
                if attempt == retries:
                    raise
                await asyncio.sleep(BROKEN_CONNECTION_DELAY_S)
                continue
            delay = retry_delay(response, attempt)
            if delay is None or attempt == retries:
                return call.read(response)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def predict(
        self,
        image: ImageInput,
        *,
        model: str = ALL_MODELS,
        top_k: int = DEFAULT_TOP_K,
        preview: bool = DEFAULT_PREVIEW,
    ) -> PredictResponse:
        """Classify one image with every model (or ``model``)."""
        return await self.send(calls.predict(image, model=model, top_k=top_k, preview=preview))

    async def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        model: str = ALL_MODELS,
        top_k: int = DEFAULT_TOP_K,
        preview: bool = DEFAULT_PREVIEW,
    ) -> BatchPredictResponse:
        """Classify up to 64 images in one request; results come back in order."""
        return await self.send(
            calls.predict_batch(images, model=model, top_k=top_k, preview=preview)
        )

    async def models(self) -> list[ModelInfo]:
        """Every model with its parameters, MACs, accuracy, device and status."""
        return await self.send(calls.models())

    async def model(self, name: str) -> ModelInfo:
        return await self.send(calls.model(name))

    async def compare(
        self,
        image: ImageInput | None = None,
        *,
        repeats: int = DEFAULT_REPEATS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        warmup: int = DEFAULT_WARMUP,
        models: str | Sequence[str] = ALL_MODELS,
        runtimes: str | Sequence[str] | None = None,
    ) -> CompareResponse:
        """A fair, interleaved latency comparison (on ``image``, or a synthetic input)."""
        return await self.send(
            calls.compare(
                image,
                repeats=repeats,
                batch_size=batch_size,
                warmup=warmup,
                models=models,
                runtimes=runtimes,
            )
        )

    async def health(self) -> HealthReport:
        """Readiness of the service and of each model (no retries, never raises on 503)."""
        return await self.send(calls.health())
