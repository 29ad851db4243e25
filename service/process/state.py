"""The state one app instance shares among its routes, built by ``create_app``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from service.core.inference import InferenceService
from service.core.registry import ModelRegistry
from service.process.metrics import ServiceMetrics
from service.process.settings import Settings


@dataclass
class ServiceState:
    """Everything the routes share, built by ``create_app`` and filled in by the lifespan."""

    settings: Settings
    registry: ModelRegistry
    metrics: ServiceMetrics
    inference: InferenceService
    compare_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shutting_down: bool = False
