"""The ASGI app: ``create_app(settings)`` builds one; ``app`` is the default, for uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.api import compare, health, metrics, models, predict
from service.api.error_handlers import install_error_handlers
from service.api.oip import router as oip_router
from service.core.decode_budget import DecodeBudget
from service.core.engines import configure_tensorflow
from service.core.inference import InferenceService
from service.core.registry import ModelRegistry
from service.edge.fast_path import FastPredictPath
from service.edge.middleware import RequestContextMiddleware
from service.process import fleet
from service.process.metrics import MULTIPROCESS_DIR_ENV, ServiceMetrics
from service.process.settings import Settings, get_settings
from service.process.state import ServiceState
from service.process.tracing import Tracing, start_tracing

logger = logging.getLogger("sepconv.main")
STATIC_DIR = Path(__file__).parent / "static"
# Swagger UI and ReDoc, shipped with the app (static/vendor/README.md): /docs works offline.
VENDOR_URL = "/static/vendor"


async def _load_models(state: ServiceState) -> None:
    settings = state.settings
    if "tensorflow" in state.registry.runtimes:
        # Only then: a process serving ONNX Runtime alone never imports TensorFlow (~600 MB).
        await asyncio.to_thread(
            configure_tensorflow,
            settings.threads_per_worker,
            settings.inter_op_threads,
            settings.gpu_memory_growth,
        )
    await asyncio.to_thread(state.registry.load_all)
    state.inference.start_ready_models()
    state.registry.loaded.set()
    # TensorFlow and the loaded graphs leave millions of long-lived objects behind; a full
    # garbage collection walks them all and stalls every request for tens to hundreds of
    # milliseconds. Freezing them moves them out of the collector's reach.
    gc.collect()
    gc.freeze()
    for entry in state.registry.entries():
        info = entry.info()
        state.metrics.model_info.labels(
            entry.name,
            str(info.version),
            str(info.architecture),
            info.runtime,
            str(info.device),
            info.status,
        ).set(1)
        if info.parameters is not None:
            state.metrics.model_parameters.labels(entry.name).set(info.parameters)
    state.metrics.workers.set(1)  # this process; /metrics sums the live workers
    state.metrics.engine_threads.set(settings.threads_per_worker)
    logger.info(
        "models loaded",
        extra={
            "ready": [e.name for e in state.registry.ready_entries()],
            "failed": [e.name for e in state.registry.entries() if e.status == "failed"],
        },
    )
    if state.registry.is_ready(settings.strict_readiness):
        # The one line that says requests will be answered (uvicorn's "listening" says less).
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        # With several workers each says so once, naming itself.
        worker = {"worker_pid": os.getpid()} if settings.worker_processes > 1 else {}
        logger.info(f"ready: http://{host}:{settings.port}", extra=worker)


def _report_to_fleet(state: ServiceState) -> None:
    """Tell the supervisor and the other workers what this worker serves; a replacement whose
    models did not load exits here, before it takes a connection."""
    if state.fleet_reports is None:
        return
    report = fleet.report_of(state.registry, state.settings.strict_readiness, os.getpid())
    fleet.write_report(state.fleet_reports, report)
    if fleet.is_replacement() and not report.ready:
        logger.error(
            "this replacement worker does not serve: its models did not load",
            extra={"reason": report.summary()},
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        # Straight out: uvicorn would log a failed startup as a traceback, and nothing here
        # holds anything a clean exit would release (no connection was ever taken).
        os._exit(fleet.MODELS_NOT_READY)


def _report_load_failure(state: ServiceState, task: asyncio.Task[None]) -> None:
    """A crash of the loading task itself (not of one model) must not leave readiness silent."""
    if task.cancelled() or task.exception() is None:
        return
    error = task.exception()
    logger.error("model loading stopped", exc_info=error)
    for entry in state.registry.entries():
        if entry.status == "loading":
            entry.status = "failed"
            entry.error = f"loading stopped: {type(error).__name__}"


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm the models in the background; /health/ready turns 200 when they are."""
    state: ServiceState = app.state.sepconv
    loading = asyncio.create_task(_load_models(state), name="load-models")
    loading.add_done_callback(lambda task: _report_load_failure(state, task))
    if state.settings.worker_processes > 1:
        # One of several workers starts accepting connections only once its models are
        # loaded: the others serve meanwhile, nothing meets a 503 NOT_READY from a worker that
        # is still loading, and uvicorn's supervisor can replace the workers one at a time
        # (SIGHUP) without refusing a request. A lone process answers /health at once instead.
        await asyncio.wait({loading})
        _report_to_fleet(state)
    try:
        yield
    finally:
        state.shutting_down = True
        # A comparison still running here outlived uvicorn's graceful timeout: stop it, or the
        # interpreter waits for its thread to time every round before it can exit.
        state.comparisons.stop_all()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(loading), timeout=60)
        await state.inference.stop()
        # Exports the spans still buffered (OTLP batches) before the process goes.
        await asyncio.to_thread(state.inference.tracing.shutdown)
        state.metrics.close()
        state.comparisons.close()
        if state.fleet_reports is not None:
            fleet.remove_report(state.fleet_reports, os.getpid())


def create_app(settings: Settings | None = None, *, tracing: Tracing | None = None) -> FastAPI:
    """Build the service for ``settings`` (default: the ``SEPCONV_*`` environment); ``tracing``
    replaces the one ``settings.tracing`` asks for (a test's in-memory exporter)."""
    settings = settings or get_settings()
    tracing = tracing if tracing is not None else start_tracing(settings)
    metrics_ = ServiceMetrics()
    registry = ModelRegistry(
        settings.model_dir,
        settings.model_names,
        settings.runtime,
        warmup_runs=settings.warmup_runs,
        threads=settings.threads_per_worker,
        compare_runtimes=settings.compare_runtime_list,
        pinned_versions=fleet.pinned_versions() if settings.worker_processes > 1 else None,
    )
    state = ServiceState(
        settings=settings,
        registry=registry,
        metrics=metrics_,
        inference=InferenceService(registry, settings, metrics_, tracing=tracing),
        decode_budget=DecodeBudget(
            settings.decode_memory_bytes,
            wait_s=settings.decode_wait_s,
            max_jpeg_scans=settings.max_jpeg_scans,
        ),
        fleet_reports=(
            fleet.fleet_folder(os.environ.get(MULTIPROCESS_DIR_ENV))
            if settings.worker_processes > 1
            else None
        ),
    )
    app = FastAPI(
        title="sepconv-serve",
        version="0.1.0",
        summary="Regular vs depthwise separable VGG classifiers for CIFAR-10, side by side.",
        lifespan=lifespan,
        docs_url=None,  # served by _add_api_docs from the vendored assets
        redoc_url=None,
    )
    app.state.sepconv = state
    install_error_handlers(app)
    # Added first, so it runs inside the request context (ids, limits, metrics, access log).
    app.add_middleware(FastPredictPath, state=state)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics_,
        max_body_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    if settings.cors_origin_list:
        # Outside the request context: a preflight is answered before any limit or route, and
        # every answer (the fast path's, the error envelopes) carries the CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    tracing.instrument(app)  # outside every middleware, so the fast path is traced too
    for router in (
        predict.router,
        models.router,
        compare.router,
        health.router,
        metrics.router,
        oip_router,
    ):
        app.include_router(router)

    _add_api_docs(app)
    if (STATIC_DIR / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> Response:
            return FileResponse(STATIC_DIR / "index.html")
    else:

        @app.get("/", include_in_schema=False)
        async def index() -> Response:
            return RedirectResponse("/docs")

    return app


def _add_api_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the vendored files, never from a CDN."""
    app.mount(VENDOR_URL, StaticFiles(directory=STATIC_DIR / "vendor"), name="vendor")
    favicon = "swagger-ui/favicon-32x32.png"

    def swagger_ui(root: str) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{VENDOR_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{VENDOR_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{VENDOR_URL}/{favicon}",
        )

    def redoc(root: str) -> HTMLResponse:
        # Without Google's fonts: the page fetches nothing from outside the service.
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            with_google_fonts=False,
            redoc_js_url=f"{root}{VENDOR_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{VENDOR_URL}/{favicon}",
        )

    for path, render in (("/docs", swagger_ui), ("/redoc", redoc)):
        _add_page(app, path, render)


def _add_page(app: FastAPI, path: str, render: Callable[[str], HTMLResponse]) -> None:
    """``GET path``, rendered for the root path a proxy mounts the app under."""

    async def page(request: Request) -> HTMLResponse:
        return render(request.scope.get("root_path", "").rstrip("/"))

    app.add_api_route(path, page, methods=["GET"], include_in_schema=False)


def __getattr__(name: str) -> FastAPI:
    """``app``, the default app for ``uvicorn service.main:app`` (settings from the SEPCONV_*
    environment), built on first use: importing this module (as every worker does for
    ``create_app``) must not build a second app, which would list the models twice."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    default = globals().get("_default_app")
    if default is None:
        default = globals()["_default_app"] = create_app()
    return default
