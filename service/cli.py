"""``sepconv-serve`` and ``python -m service``: run the app under uvicorn with its settings."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def serve_main() -> None:
    """Start uvicorn on ``SEPCONV_HOST:SEPCONV_PORT``."""
    import uvicorn

    from service.logs import configure_logging
    from service.main import create_app
    from service.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # the service logs one structured line per request itself
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
    )
