"""Structured logs: one JSON object per line, with whatever ``extra`` fields a call passes.

Every line the server writes has this one format: the service's loggers, uvicorn's (its error
and access loggers, in the supervisor and in every worker, through ``uvicorn_log_config``) and
the Python warnings TensorFlow raises. Native libraries write to file descriptor 2 directly;
``native_noise_filtered`` drops the few start-up lines that are noise on a CPU host and lets
every other one through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# uvicorn passes a coloured copy of each message; JSON lines have no use for it.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
# The loggers the server's level applies to: ours and uvicorn's. Every other library's
# warnings (TensorFlow's Python logger, warnings.warn) reach the root logger's handler; with
# the root configured, TensorFlow adds no plain-text handler of its own.
LOGGERS = ("sepconv", "uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ListeningIsNotReady(logging.Filter):
    """uvicorn says "Uvicorn running on ..." when its socket listens, before the models load.

    That reads as ready and is not: the service logs ``ready: http://...`` once they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Uvicorn running on "):
            record.msg = (
                record.msg.replace("Uvicorn running on ", "listening on ").replace(
                    " (Press CTRL+C to quit)", ""
                )
                + "; ready once the models are loaded"
            )
        return True


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for every logger above, JSON lines on stderr.

    uvicorn is given it as its ``log_config`` too, which it applies in each worker process.
    """
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["listening"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "filters": {"listening": {"()": f"{__name__}.ListeningIsNotReady"}},
        "handlers": {"json": handler},
        "loggers": {
            name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
            for name in LOGGERS
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


def configure_logging(level: str) -> None:
    """Send every server log line to stderr as a JSON object at ``level``."""
    logging.captureWarnings(True)
    logging.config.dictConfig(logging_config(level))


# Lines native libraries print on a CPU host while TensorFlow is imported and lists devices:
# absl's banner before its logging is set up (TF_CPP_MIN_LOG_LEVEL does not reach it) and the
# CUDA stubs saying there is no GPU. On a host with an NVIDIA driver a failed cuInit is real,
# so that line is dropped only where no driver is installed.
_ALWAYS_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    # TensorFlow's INFO banner on CPUs where oneDNN's custom operations are on; TensorFlow 2.21
    # prints it whatever TF_CPP_MIN_LOG_LEVEL says.
    "oneDNN custom operations are on",
)
_NO_DRIVER_NOISE = ("Could not find cuda drivers on your machine", "failed call to cuInit")
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def native_noise() -> tuple[str, ...]:
    """The fragments that mark a native start-up line as noise on this host."""
    return _ALWAYS_NOISE + (() if NVIDIA_DRIVER.exists() else _NO_DRIVER_NOISE)


@contextlib.contextmanager
def native_noise_filtered(noise: tuple[str, ...] | None = None) -> Iterator[None]:
    """Drop native lines on file descriptor 2 that contain one of ``noise``; keep the rest.

    Descriptor 2 is a pipe meanwhile, read by a thread that copies each kept line to the real
    stderr, so Python's own lines (logs, tracebacks) pass through unchanged and in order.
    """
    fragments = native_noise() if noise is None else noise
    read_end, write_end = os.pipe()
    saved = os.dup(2)

    def relay() -> None:
        with os.fdopen(read_end, "rb") as lines, os.fdopen(os.dup(saved), "wb", 0) as out:
            for line in lines:
                if not any(f.encode() in line for f in fragments):
                    out.write(line)

    relaying = threading.Thread(target=relay, name="native-stderr-filter", daemon=True)
    relaying.start()
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the relay reads to the end
        os.close(saved)
        relaying.join(timeout=5)
