"""The ASGI app: ``create_app(settings)`` builds one; ``app`` is the default, for uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.api import compare, health, metrics, models, predict
from service.api.error_handlers import install_error_handlers
from service.core.decode_budget import DecodeBudget
from service.core.engines import configure_tensorflow
from service.core.inference import InferenceService
from service.core.registry import ModelRegistry
from service.edge.fast_path import FastPredictPath
from service.edge.middleware import RequestContextMiddleware
from service.process.metrics import ServiceMetrics
from service.process.settings import Settings, get_settings
from service.process.state import ServiceState

logger = logging.getLogger("sepconv.main")
STATIC_DIR = Path(__file__).parent / "static"


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
    logger.info(
        "models loaded",
        extra={
            "ready": [e.name for e in state.registry.ready_entries()],
            "failed": [e.name for e in state.registry.entries() if e.status == "failed"],
        },
    )


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
    if state.settings.workers > 1:
        # One of several workers starts accepting connections only once its models are
        # loaded: the others serve meanwhile, nothing meets a 503 NOT_READY from a worker that
        # is still loading, and uvicorn's supervisor can replace the workers one at a time
        # (SIGHUP) without refusing a request. A lone process answers /health at once instead.
        await asyncio.wait({loading})
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
        state.metrics.close()
        state.comparisons.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (default: the ``SEPCONV_*`` environment)."""
    settings = settings or get_settings()
    metrics_ = ServiceMetrics()
    registry = ModelRegistry(
        settings.model_dir,
        settings.model_names,
        settings.runtime,
        warmup_runs=settings.warmup_runs,
        threads=settings.threads_per_worker,
        compare_runtimes=settings.compare_runtime_list,
    )
    state = ServiceState(
        settings=settings,
        registry=registry,
        metrics=metrics_,
        inference=InferenceService(registry, settings, metrics_),
        decode_budget=DecodeBudget(
            settings.decode_memory_bytes,
            wait_s=settings.decode_wait_s,
            max_jpeg_scans=settings.max_jpeg_scans,
        ),
    )
    app = FastAPI(
        title="sepconv-serve",
        version="0.1.0",
        summary="Regular vs depthwise separable VGG classifiers for CIFAR-10, side by side.",
        lifespan=lifespan,
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
    for router in (predict.router, models.router, compare.router, health.router, metrics.router):
        app.include_router(router)

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


# The default app for ``uvicorn service.main:app``: settings from the SEPCONV_* environment.
# Building it only lists the model directory; models load in the lifespan.
app = create_app()
