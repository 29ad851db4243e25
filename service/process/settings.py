"""Service settings, read from ``SEPCONV_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import resource
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.core.cpus import available_cpus
from service.core.engines import RUNTIMES

MiB = 1024 * 1024
# File descriptors a worker keeps for itself beyond its connections: model files, logs, the
# metrics files, the event loop's, TensorFlow's and ONNX Runtime's own.
_RESERVED_FDS = 256


def default_max_connections() -> int:
    """Connections one worker may hold: its soft file-descriptor limit less a reserve."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft - _RESERVED_FDS))


def _default_model_dir() -> Path:
    # An editable install or a source checkout serves the repository's committed models; an
    # installed wheel (or a container) looks in ./models relative to the working directory.
    repository_models = Path(__file__).resolve().parents[2] / "models"
    return repository_models if repository_models.is_dir() else Path("models")


class Settings(BaseSettings):
    """Every knob of the service; each is also an environment variable ``SEPCONV_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="SEPCONV_", protected_namespaces=(), extra="ignore"
    )

    model_dir: Path = Field(
        default_factory=_default_model_dir,
        description="Model repository: <model_dir>/<name>/<version>/",
    )
    models: str = Field("", description="Comma-separated model names to load; empty = all found")
    runtime: Literal["tensorflow", "onnxruntime", "onnxruntime-int8", "litert", "litert-int8"] = (
        "tensorflow"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    max_upload_bytes: int = Field(10 * MiB, ge=1, description="Largest request body accepted")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest width*height decoded")
    decode_memory_bytes: int = Field(
        512 * MiB,
        ge=16 * MiB,
        description="Memory the image decodes of one worker may hold at once, estimated from "
        "each header; an image that alone needs more is refused (413 IMAGE_TOO_LARGE)",
    )
    decode_wait_s: float = Field(
        2.0,
        ge=0,
        description="How long an upload waits for decode memory before 503 OVERLOADED",
    )
    max_jpeg_scans: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Most scans a progressive JPEG may have (each costs a pass over the whole "
        "image); more is refused before decoding (422 IMAGE_TOO_COMPLEX)",
    )
    max_batch_files: int = Field(64, ge=1, le=1024)
    body_timeout_s: float = Field(30.0, gt=0, description="Deadline to receive a request body")
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Longest request line or header line; longer is refused (414 URI_TOO_LONG "
        "for the request line, 431 HEADER_FIELDS_TOO_LARGE for a header) and the connection "
        "closed",
    )
    max_head_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="Largest request head, request line and every header together (431)",
    )
    head_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Deadline for the request line and headers, from the moment the "
        "connection opens or the next request begins; then 408 and the connection is closed",
    )
    keep_alive_s: float = Field(
        5.0, gt=0, description="How long an idle keep-alive connection is kept open"
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="Open connections one worker may hold; more are answered 503 OVERLOADED "
        "and closed at once; unset = the file-descriptor limit less a reserve, at most 4096",
    )

    max_batch_size: int = Field(32, ge=1, le=1024)
    batch_timeout_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long a batch waits for more images; 0 = take what is queued and go",
    )
    max_queue: int = Field(256, ge=1)

    workers: int | Literal["auto"] = Field(
        "auto",
        description="Server processes, each with its own copy of the models; more than one "
        "spreads the Python side of serving over several cores (metrics are summed over them). "
        "auto = one per available CPU, as many as the memory holds (an estimate per runtime), "
        "and one when a GPU is visible",
    )
    # uvicorn uses one timeout for both: a worker replaced on SIGHUP must be ready within it,
    # and a worker that dies while its supervisor pings it is noticed only after it.
    worker_start_timeout_s: float = Field(
        30.0,
        gt=0,
        description="With several workers: how long one may take to load and warm its models "
        "when SIGHUP replaces it, and to answer its supervisor's health check",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="0 = the CPUs available to the process, shared among the workers"
    )
    inter_op_threads: int = Field(0, ge=0, description="0 = let TensorFlow choose")
    gpu_memory_growth: bool = True
    warmup_runs: int = Field(3, ge=0)
    strict_readiness: bool = Field(True, description="Ready only when every model is ready")
    compare_budget_s: float = Field(
        30.0,
        gt=0,
        description="Wall-time budget of one /compare run, warm-up and every runtime included; "
        "it stops early past it (the answer says stopped_at_budget)",
    )
    # Long enough to queue behind a couple of short comparisons (a few hundred rounds at batch
    # 1 take seconds with the duty cycle's rests), far shorter than a budget-long one.
    compare_wait_s: float = Field(
        10.0,
        ge=0,
        description="How long a /compare queues behind the one running (one at a time per "
        "server, every worker included) before it is answered 503 OVERLOADED",
    )
    compare_max_waiting: int = Field(
        4, ge=0, description="Comparisons that may queue at once; more are answered 503 at once"
    )
    compare_duty: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Most of the wall time a /compare keeps the engines busy; it rests in "
        "between calls, so /predict batches get the CPU meanwhile (1 = never rest)",
    )
    compare_lock_dir: Path | None = Field(
        None,
        description="Folder of the comparison lock file, shared by every worker (sepconv-serve "
        "names its metrics folder with several workers); unset = a private one (one process)",
    )
    graceful_timeout_s: float = Field(20.0, ge=0)
    compare_runtimes: str = Field(
        "",
        description="Comma-separated runtimes /compare may time each model on (tensorflow, "
        "onnxruntime), loaded at start-up; empty = only the serving runtime",
    )
    tracing: Literal["off", "on"] = Field(
        "off",
        description="OpenTelemetry spans for each request, its decode, queue wait and engine "
        "call (needs the tracing extra); exported by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT "
        "or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Off: nothing is imported",
    )

    cors_origins: str = Field(
        "",
        description="Comma-separated origins a browser app may call the API from, e.g. "
        "https://app.example.com (or * for any); empty = no CORS headers at all",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _count_or_auto(cls, value: object) -> object:
        # One message for either spelling, rather than one per member of the union.
        if value == "auto" or (isinstance(value, int) and 1 <= value <= 64):
            return value
        if isinstance(value, str) and value.strip().isdigit() and 1 <= int(value) <= 64:
            return int(value)
        raise ValueError(f"got {value!r}: expected a number of processes from 1 to 64, or auto")

    @field_validator("compare_runtimes")
    @classmethod
    def _known_runtimes(cls, value: str) -> str:
        unknown = [r for r in _split(value) if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"unknown runtime {unknown[0]!r}: expected {', '.join(RUNTIMES)}")
        return value

    @property
    def connection_limit(self) -> int:
        """Open connections per worker: the configured bound or one the fd limit allows."""
        return self.max_connections or default_max_connections()

    @property
    def worker_processes(self) -> int:
        """The server processes this app is one of. ``sepconv-serve`` turns ``auto`` into a
        number before it starts any; an app built otherwise (a test, ``uvicorn
        service.main:app``) is one process."""
        return 1 if self.workers == "auto" else self.workers

    @property
    def threads_per_worker(self) -> int:
        """Intra-op threads of each worker's engines: the configured count, or a fair share."""
        return self.intra_op_threads or max(1, available_cpus() // self.worker_processes)

    @property
    def compare_runtime_list(self) -> list[str]:
        """The runtimes /compare may use: the serving runtime first, then the configured ones."""
        return list(dict.fromkeys([self.runtime, *_split(self.compare_runtimes)]))

    @property
    def cors_origin_list(self) -> list[str]:
        """The origins CORS allows, in order; empty when cross-origin calls are not allowed."""
        return _split(self.cors_origins)

    @property
    def model_names(self) -> list[str] | None:
        """The explicit model allowlist, or None to load every model found."""
        names = [name.strip() for name in self.models.split(",") if name.strip()]
        return names or None


def _split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build their own ``Settings`` instead."""
    return Settings()
