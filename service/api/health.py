"""``GET /health/live`` and ``GET /health/ready``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sepconv_contract.schemas import ErrorResponse, LiveResponse, ModelHealth, ReadyResponse
from service.api.deps import StateDep
from service.errors import error_response

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process runs."""
    return LiveResponse(status="alive")


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "NOT_READY, per model"}},
)
async def ready(request: Request, state: StateDep) -> ReadyResponse | JSONResponse:
    """200 once every model is loaded and warmed (or one, with strict readiness off)."""
    models = {
        entry.name: ModelHealth(status=entry.status, device=entry.info().device, error=entry.error)
        for entry in state.registry.entries()
    }
    strict = state.settings.strict_readiness
    if not state.shutting_down and state.registry.is_ready(strict):
        return ReadyResponse(status="ready", models=models)
    if state.shutting_down:
        reason = "the service is shutting down"
    elif not models:
        reason = "no models were found in the model directory"
    else:
        reason = "; ".join(
            f"{name}: {health.status}" + (f" ({health.error})" if health.error else "")
            for name, health in models.items()
        )
    return error_response(
        request,
        503,
        "NOT_READY",
        f"not ready: {reason}",
        headers={"Retry-After": "1"},
        details={"models": {k: v.model_dump() for k, v in models.items()}},
    )
