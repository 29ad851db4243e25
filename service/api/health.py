"""``GET /health/live`` and ``GET /health/ready``."""

from __future__ import annotations

from fastapi import APIRouter

from sepconv_contract.schemas import LiveResponse, ModelHealth, ReadyResponse
from service.api.deps import StateDep
from service.api.openapi import error_responses
from service.errors import not_ready
from service.process import fleet

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process runs."""
    return LiveResponse(status="alive")


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses=error_responses({503: "NOT_READY, per model"}),
)
async def ready(state: StateDep) -> ReadyResponse:
    """200 once every model is loaded and warmed (or one, with strict readiness off)."""
    models = {
        entry.name: ModelHealth(status=entry.status, device=entry.info().device, error=entry.error)
        for entry in state.registry.entries()
    }
    strict = state.settings.strict_readiness
    if not state.shutting_down and state.registry.is_ready(strict):
        differ = (
            fleet.differing_versions(fleet.live_reports(state.fleet_reports))
            if state.fleet_reports is not None
            else {}
        )
        return ReadyResponse(status="ready", models=models, versions_differ=differ or None)
    if state.shutting_down:
        reason = "the service is shutting down"
    elif not models:
        reason = "no models were found in the model directory"
    else:
        reason = "; ".join(
            f"{name}: {health.status}" + (f" ({health.error})" if health.error else "")
            for name, health in models.items()
        )
    # The details list every model, so a health check can show which one holds readiness up.
    raise not_ready(
        f"not ready: {reason}", details={"models": {k: v.model_dump() for k, v in models.items()}}
    )
