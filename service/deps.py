"""Request dependencies: the app's runtime state, as ``Annotated`` aliases."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from service.inference import InferenceService
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.settings import Settings


@dataclass
class ServiceState:
    """Everything the routes share, built by ``create_app`` and filled in by the lifespan."""

    settings: Settings
    registry: ModelRegistry
    metrics: ServiceMetrics
    inference: InferenceService
    compare_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shutting_down: bool = False


async def get_state(request: Request) -> ServiceState:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread
    # hop on every request of the hot path for what is an attribute lookup.
    state: ServiceState = request.app.state.sepconv
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
