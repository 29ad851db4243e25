"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import StateDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Requests, latencies, batch sizes, queue depth and model facts, for Prometheus."""
    for name, batcher in state.inference.batchers.items():
        state.metrics.queue_depth.labels(name).set(batcher.depth)
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
