"""``sepconv-serve`` and ``python -m service``: run the app under uvicorn with its settings."""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def serve_main() -> None:
    """Start uvicorn on ``SEPCONV_HOST:SEPCONV_PORT``."""
    import uvicorn

    from service.logs import configure_logging
    from service.main import create_app
    from service.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler
    # that was installed before it started; make that a clean exit (status 0), which is what
    # Docker and Kubernetes expect from a graceful stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # the service logs one structured line per request itself
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
    )
