"""Python clients for sepconv-serve over httpx, sync and async, with typed results.

    with SepconvClient("http://127.0.0.1:8000") as client:
        answer = client.predict("cat.jpg")
        print(answer.predictions[0].label)

Images may be a path, bytes or a PIL image. 503 answers (OVERLOADED, NOT_READY) are retried
after their ``Retry-After`` delay, and a connection the server closed without an answer (a
worker retiring just as it accepted it) is retried at once; both a bounded number of times.
Every endpoint is free of side effects, so a retried request never does anything twice.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from PIL import Image
from pydantic import BaseModel

from sepconv_contract.limits import ALL_MODELS, DEFAULT_PREVIEW, DEFAULT_TOP_K
from sepconv_contract.schemas import (
    BatchPredictResponse,
    CompareResponse,
    ModelHealth,
    ModelInfo,
    ModelList,
    PredictResponse,
    ReadyResponse,
)

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_RETRY_DELAY_S = 10.0
# The connection broke before any answer came: the server may have closed it while shutting
# down a worker. Not retried: connection refused (nothing listens there) and timeouts.
BROKEN_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
BROKEN_CONNECTION_DELAY_S = 0.05
ImageInput = str | Path | bytes | Image.Image
T = TypeVar("T", bound=BaseModel)


class SepconvError(Exception):
    """The service answered with an error envelope (or not at all in the expected shape)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or {}


@dataclass(frozen=True)
class HealthReport:
    """Readiness in one object: never raises for a 503, so it suits health checks."""

    ready: bool
    message: str
    models: dict[str, ModelHealth]


def encode_image(image: ImageInput) -> tuple[str, bytes, str]:
    """``(filename, bytes, content type)`` for a path, raw bytes or a PIL image."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "image.png", buffer.getvalue(), "image/png"
    if isinstance(image, bytes | bytearray):
        return "image", bytes(image), "application/octet-stream"
    path = Path(image)
    return path.name, path.read_bytes(), "application/octet-stream"


def _error_from(response: httpx.Response) -> SepconvError:
    try:
        error = response.json()["error"]
        return SepconvError(
            response.status_code,
            str(error["code"]),
            str(error["message"]),
            error.get("request_id"),
            error.get("details"),
        )
    except (ValueError, KeyError, TypeError):
        return SepconvError(response.status_code, "HTTP_ERROR", response.text[:200])


def _parse(response: httpx.Response, schema: type[T]) -> T:
    if response.status_code >= 400:
        raise _error_from(response)
    return schema.model_validate(response.json())


def _health(response: httpx.Response) -> HealthReport:
    if response.status_code == 200:
        ready = ReadyResponse.model_validate(response.json())
        return HealthReport(True, "ready", ready.models)
    error = _error_from(response)
    models = {
        name: ModelHealth.model_validate(value)
        for name, value in (error.details.get("models") or {}).items()
    }
    return HealthReport(False, error.message, models)


def _retry_delay(response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before retrying a 503, or None when it should not be retried."""
    if response.status_code != 503:
        return None
    header = response.headers.get("retry-after", "")
    delay = float(header) if header.replace(".", "", 1).isdigit() else 0.5 * 2**attempt
    return min(delay, MAX_RETRY_DELAY_S)


def _predict_params(model: str, top_k: int, preview: bool) -> dict[str, Any]:
    return {"model": model, "top_k": top_k, **({"preview": "true"} if preview else {})}


def _compare_params(
    repeats: int,
    batch_size: int,
    warmup: int,
    models: str | Sequence[str],
    runtimes: str | Sequence[str] | None,
) -> dict[str, Any]:
    names = models if isinstance(models, str) else ",".join(models)
    params: dict[str, Any] = {
        "repeats": repeats,
        "batch_size": batch_size,
        "warmup": warmup,
        "models": names,
    }
    if runtimes is not None:
        params["runtimes"] = runtimes if isinstance(runtimes, str) else ",".join(runtimes)
    return params


class SepconvClient:
    """Blocking client. Pass ``http_client`` to reuse an ``httpx.Client`` (or a test client)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._http = http_client or httpx.Client(base_url=base_url, timeout=timeout)
        self._owns_http = http_client is None
        self.max_retries = max_retries

    def __enter__(self) -> SepconvClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except BROKEN_CONNECTION:
                if attempt == self.max_retries:
                    raise
                time.sleep(BROKEN_CONNECTION_DELAY_S)
                continue
            delay = _retry_delay(response, attempt)
            if delay is None or attempt == self.max_retries:
                return response
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
        files = {"file": encode_image(image)}
        response = self._request(
            "POST", "/predict", params=_predict_params(model, top_k, preview), files=files
        )
        return _parse(response, PredictResponse)

    def predict_batch(
        self, images: Sequence[ImageInput], *, model: str = ALL_MODELS, top_k: int = DEFAULT_TOP_K
    ) -> BatchPredictResponse:
        """Classify up to 64 images in one request; results come back in order."""
        files = [("files", encode_image(image)) for image in images]
        response = self._request(
            "POST", "/predict/batch", params=_predict_params(model, top_k, False), files=files
        )
        return _parse(response, BatchPredictResponse)

    def models(self) -> list[ModelInfo]:
        """Every model with its parameters, MACs, accuracy, device and status."""
        return _parse(self._request("GET", "/models"), ModelList).models

    def model(self, name: str) -> ModelInfo:
        return _parse(self._request("GET", f"/models/{name}"), ModelInfo)

    def compare(
        self,
        image: ImageInput | None = None,
        *,
        repeats: int = 50,
        batch_size: int = 1,
        warmup: int = 5,
        models: str | Sequence[str] = "all",
        runtimes: str | Sequence[str] | None = None,
    ) -> CompareResponse:
        """A fair, interleaved latency comparison (on ``image``, or a synthetic input)."""
        params = _compare_params(repeats, batch_size, warmup, models, runtimes)
        if image is None:
            response = self._request("GET", "/compare", params=params)
        else:
            response = self._request(
                "POST", "/compare", params=params, files={"file": encode_image(image)}
            )
        return _parse(response, CompareResponse)

    def health(self) -> HealthReport:
        """Readiness of the service and of each model (no retries, never raises on 503)."""
        return _health(self._http.get("/health/ready"))


class AsyncSepconvClient:
    """The asyncio twin of ``SepconvClient``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http_client or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._owns_http = http_client is None
        self.max_retries = max_retries

    async def __aenter__(self) -> AsyncSepconvClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._http.request(method, url, **kwargs)
            except BROKEN_CONNECTION:
                if attempt == self.max_retries:
                    raise
                await asyncio.sleep(BROKEN_CONNECTION_DELAY_S)
                continue
            delay = _retry_delay(response, attempt)
            if delay is None or attempt == self.max_retries:
                return response
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
        files = {"file": encode_image(image)}
        response = await self._request(
            "POST", "/predict", params=_predict_params(model, top_k, preview), files=files
        )
        return _parse(response, PredictResponse)

    async def predict_batch(
        self, images: Sequence[ImageInput], *, model: str = ALL_MODELS, top_k: int = DEFAULT_TOP_K
    ) -> BatchPredictResponse:
        files = [("files", encode_image(image)) for image in images]
        response = await self._request(
            "POST", "/predict/batch", params=_predict_params(model, top_k, False), files=files
        )
        return _parse(response, BatchPredictResponse)

    async def models(self) -> list[ModelInfo]:
        return _parse(await self._request("GET", "/models"), ModelList).models

    async def model(self, name: str) -> ModelInfo:
        return _parse(await self._request("GET", f"/models/{name}"), ModelInfo)

    async def compare(
        self,
        image: ImageInput | None = None,
        *,
        repeats: int = 50,
        batch_size: int = 1,
        warmup: int = 5,
        models: str | Sequence[str] = "all",
        runtimes: str | Sequence[str] | None = None,
    ) -> CompareResponse:
        params = _compare_params(repeats, batch_size, warmup, models, runtimes)
        if image is None:
            response = await self._request("GET", "/compare", params=params)
        else:
            response = await self._request(
                "POST", "/compare", params=params, files={"file": encode_image(image)}
            )
        return _parse(response, CompareResponse)

    async def health(self) -> HealthReport:
        return _health(await self._http.get("/health/ready"))
