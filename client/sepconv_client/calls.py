"""The API's calls as data, free of I/O: what to send for each, and how to read the answer.

``SepconvClient`` and ``AsyncSepconvClient`` differ only in how they wait; everything they say
to the service is built here once, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

import httpx
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

T = TypeVar("T")
S = TypeVar("S", bound=BaseModel)
MAX_RETRY_DELAY_S = 10.0
# The connection broke before any answer came: the server may have closed it while shutting
# down a worker. Not retried: connection refused (nothing listens there) and timeouts.
BROKEN_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
BROKEN_CONNECTION_DELAY_S = 0.05
# /compare's defaults (the service's own).
DEFAULT_REPEATS = 50
DEFAULT_BATCH_SIZE = 1
DEFAULT_WARMUP = 5


class SavableImage(Protocol):
    """An image object that can write itself, as a PIL image does (Pillow is not required)."""

    def save(self, fp: IO[bytes], format: str | None = ...) -> None: ...


ImageInput = str | os.PathLike[str] | bytes | SavableImage


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


# The first bytes of each format the service decodes, so a raw body says what it is.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def image_type(data: bytes) -> str:
    """The media type of image bytes, from their signature; octet-stream when unknown.

    The service sniffs the format itself either way; a declared image type only sends the
    request down its fast path.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, media in _SIGNATURES:
        if data.startswith(signature):
            return media
    return "application/octet-stream"


def encode_image(image: ImageInput) -> tuple[str, bytes, str]:
    """``(filename, bytes, content type)`` for a path, raw bytes or an image object."""
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
        return "image", data, image_type(data)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        data = path.read_bytes()
        return path.name, data, image_type(data)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "image.png", buffer.getvalue(), "image/png"


def error_from(response: httpx.Response) -> SepconvError:
    """The ``SepconvError`` an error answer stands for (its envelope, or its status alone)."""
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


def retry_delay(response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before retrying a 503, or None when it should not be retried."""
    if response.status_code != 503:
        return None
    header = response.headers.get("retry-after", "")
    delay = float(header) if header.replace(".", "", 1).isdigit() else 0.5 * 2**attempt
    return min(delay, MAX_RETRY_DELAY_S)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reading of its answer."""

    method: str
    url: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    # Health checks take the first answer: a 503 there is the answer, not a reason to wait.
    retries: bool = True

    def request(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` for this call."""
        return {
            "method": self.method,
            "url": self.url,
            "params": self.params,
            "content": self.content,
            "headers": self.headers,
            "files": self.files,
        }


def _reader(schema: type[S]) -> Callable[[httpx.Response], S]:
    def read(response: httpx.Response) -> S:
        if response.status_code >= 400:
            raise error_from(response)
        return schema.model_validate(response.json())

    return read


def _predict_params(model: str, top_k: int, preview: bool) -> dict[str, Any]:
    return {"model": model, "top_k": top_k, **({"preview": "true"} if preview else {})}


def _names(values: str | Sequence[str]) -> str:
    return values if isinstance(values, str) else ",".join(values)


def predict(
    image: ImageInput,
    *,
    model: str = ALL_MODELS,
    top_k: int = DEFAULT_TOP_K,
    preview: bool = DEFAULT_PREVIEW,
) -> Call[PredictResponse]:
    """One image as the raw request body: the service's fast path, no multipart to parse."""
    _, data, media = encode_image(image)
    return Call(
        "POST",
        "/predict",
        _reader(PredictResponse),
        params=_predict_params(model, top_k, preview),
        content=data,
        headers={"content-type": media},
    )


def predict_batch(
    images: Sequence[ImageInput],
    *,
    model: str = ALL_MODELS,
    top_k: int = DEFAULT_TOP_K,
    preview: bool = DEFAULT_PREVIEW,
) -> Call[BatchPredictResponse]:
    """Several images in one multipart request (field ``files``), answered in order."""
    return Call(
        "POST",
        "/predict/batch",
        _reader(BatchPredictResponse),
        params=_predict_params(model, top_k, preview),
        files=[("files", encode_image(image)) for image in images],
    )


def models() -> Call[list[ModelInfo]]:
    read = _reader(ModelList)
    return Call("GET", "/models", lambda response: read(response).models)


def model(name: str) -> Call[ModelInfo]:
    return Call("GET", f"/models/{name}", _reader(ModelInfo))


def compare(
    image: ImageInput | None = None,
    *,
    repeats: int = DEFAULT_REPEATS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    warmup: int = DEFAULT_WARMUP,
    models: str | Sequence[str] = ALL_MODELS,
    runtimes: str | Sequence[str] | None = None,
) -> Call[CompareResponse]:
    """A fair, interleaved latency comparison, on ``image`` or on a synthetic input."""
    params: dict[str, Any] = {
        "repeats": repeats,
        "batch_size": batch_size,
        "warmup": warmup,
        "models": _names(models),
    }
    if runtimes is not None:
        params["runtimes"] = _names(runtimes)
    read = _reader(CompareResponse)
    if image is None:
        return Call("GET", "/compare", read, params=params)
    return Call("POST", "/compare", read, params=params, files=[("file", encode_image(image))])


def _read_health(response: httpx.Response) -> HealthReport:
    if response.status_code == 200:
        ready = ReadyResponse.model_validate(response.json())
        return HealthReport(True, "ready", ready.models)
    error = error_from(response)
    health = {
        name: ModelHealth.model_validate(value)
        for name, value in (error.details.get("models") or {}).items()
    }
    return HealthReport(False, error.message, health)


def health() -> Call[HealthReport]:
    return Call("GET", "/health/ready", _read_health, retries=False)
