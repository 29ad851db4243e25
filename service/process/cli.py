"""``sepconv-serve`` and ``python -m service``: run the app under uvicorn with its settings."""

from __future__ import annotations

import contextlib
import logging
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

    from service.process.settings import Settings

# uvicorn's exit status for a worker that could not start: its supervisor then stops instead of
# starting the same failure again and again.
STARTUP_FAILURE = 3
# Left in the metrics folder by a worker that could not build the app, so that the supervisor
# exits with STARTUP_FAILURE too rather than 0.
FAILED_MARKER = "worker-startup-failed"


def serve_main() -> None:
    """Start uvicorn on ``SEPCONV_HOST:SEPCONV_PORT`` with ``SEPCONV_WORKERS`` processes."""
    import uvicorn

    from service.process.logs import configure_logging
    from service.process.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler
    # that was installed before it started; make that a clean exit (status 0), which is what
    # Docker and Kubernetes expect from a graceful stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    options = _uvicorn_options(settings)
    with _metrics_dir(settings.workers) as folder:
        if settings.workers == 1:
            from service.core.engines import import_runtime
            from service.main import create_app

            try:
                import_runtime(settings.runtime)
            except ImportError as error:
                logging.getLogger("sepconv.main").error(
                    "the serving runtime cannot be imported",
                    extra={"runtime": settings.runtime, "reason": str(error)},
                )
                sys.exit(STARTUP_FAILURE)

            uvicorn.run(create_app(settings), **options)
            return
        # The workers share one comparison slot, a lock file in this folder they all see.
        os.environ.setdefault("SEPCONV_COMPARE_LOCK_DIR", str(folder))
        # Several workers: uvicorn's supervisor spawns fresh interpreters that each build the
        # app from the same environment, forwards SIGTERM to them and restarts one that dies.
        # The supervisor itself never imports the app, and so neither TensorFlow (~600 MB).
        uvicorn.run(
            "service.process.cli:worker_app",
            factory=True,
            workers=settings.workers,
            # Also how long a worker may take to load its models when SIGHUP replaces it.
            timeout_worker_healthcheck=int(settings.worker_start_timeout_s),
            **options,
        )
        if folder is not None and (folder / FAILED_MARKER).exists():
            sys.exit(STARTUP_FAILURE)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this in each of them)."""
    from service.process.logs import configure_logging
    from service.process.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        from service.core.engines import import_runtime
        from service.main import create_app

        import_runtime(settings.runtime)
        return create_app(settings)
    except Exception:
        from service.process.metrics import MULTIPROCESS_DIR_ENV

        logging.getLogger("sepconv.main").exception("this worker cannot start")
        folder = os.environ.get(MULTIPROCESS_DIR_ENV)
        if folder:
            (Path(folder) / FAILED_MARKER).touch()
        sys.exit(STARTUP_FAILURE)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    # Imported here, as everything else: the command starts before the HTTP stack is loaded.
    from service.edge.protocol import ConnectionLimits, protocol_class

    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        max_head_bytes=settings.max_head_bytes,
        head_timeout_s=settings.head_timeout_s,
        max_connections=settings.connection_limit,
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,  # the service logs one structured line per request itself
        "timeout_graceful_shutdown": int(settings.graceful_timeout_s),
        # httptools, with caps and deadlines on request heads and a bound on connections;
        # a partial of a module-level class, so it pickles into the worker processes.
        "http": protocol_class(limits),
        "timeout_keep_alive": settings.keep_alive_s,
    }


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[Path | None]:
    """The folder of prometheus-client's multiprocess mode, ready and empty, or None.

    prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is imported and then keeps
    every value in files there, whatever the worker count. A folder the operator named is
    created or emptied (old files would add a previous run's counts); with several workers and
    none named, one is made here, named in the environment the workers inherit, and removed
    afterwards.
    """
    from service.process.metrics import MULTIPROCESS_DIR_ENV

    given = os.environ.get(MULTIPROCESS_DIR_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("*.db"), folder / FAILED_MARKER]:
            stale.unlink(missing_ok=True)
        yield folder
        return
    if workers == 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="sepconv-metrics-"))
    os.environ[MULTIPROCESS_DIR_ENV] = str(folder)
    try:
        yield folder
    finally:
        del os.environ[MULTIPROCESS_DIR_ENV]
        shutil.rmtree(folder, ignore_errors=True)
