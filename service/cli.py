"""``sepconv-serve`` and ``python -m service``: run the app under uvicorn with its settings."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.settings import Settings

# A worker loading TensorFlow and the models can keep its health-check thread waiting for a
# while; uvicorn's default of 5 s would have the supervisor kill and restart a healthy worker.
WORKER_HEALTHCHECK_TIMEOUT_S = 30


def serve_main() -> None:
    """Start uvicorn on ``SEPCONV_HOST:SEPCONV_PORT`` with ``SEPCONV_WORKERS`` processes."""
    import uvicorn

    from service.logs import configure_logging
    from service.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler
    # that was installed before it started; make that a clean exit (status 0), which is what
    # Docker and Kubernetes expect from a graceful stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    options = _uvicorn_options(settings)
    if settings.workers == 1:
        from service.main import create_app

        uvicorn.run(create_app(settings), **options)
        return
    # Several workers: uvicorn's supervisor spawns fresh interpreters that each build the app
    # from the same environment, forwards SIGTERM to them and restarts one that dies. The
    # supervisor itself never imports the app, and so neither TensorFlow (about 600 MB).
    with _shared_metrics_dir():
        uvicorn.run(
            "service.cli:worker_app",
            factory=True,
            workers=settings.workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT_S,
            **options,
        )


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this in each of them)."""
    from service.logs import configure_logging
    from service.main import create_app
    from service.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,  # the service logs one structured line per request itself
        "timeout_graceful_shutdown": int(settings.graceful_timeout_s),
    }


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[Path]:
    """An empty folder for the workers' metric files, named in the environment they inherit.

    prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is imported, so it must be set
    before any worker starts. A folder the operator named is emptied (old files would add a
    previous run's counts); one made here is removed afterwards.
    """
    from service.metrics import MULTIPROCESS_DIR_ENV

    given = os.environ.get(MULTIPROCESS_DIR_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="sepconv-metrics-"))
    os.environ[MULTIPROCESS_DIR_ENV] = str(folder)
    try:
        yield folder
    finally:
        del os.environ[MULTIPROCESS_DIR_ENV]
        shutil.rmtree(folder, ignore_errors=True)
