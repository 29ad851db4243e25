"""The state one app instance shares among its routes, built by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.core.decode_budget import DecodeBudget
from service.core.inference import InferenceService
from service.core.registry import ModelRegistry
from service.process.admission import ComparisonGate
from service.process.metrics import ServiceMetrics
from service.process.settings import Settings


@dataclass
class ServiceState:
    """Everything the routes share, built by ``create_app`` and filled in by the lifespan."""

    settings: Settings
    registry: ModelRegistry
    metrics: ServiceMetrics
    inference: InferenceService
    # One comparison at a time per server, every worker included (see service.process.admission).
    comparisons: ComparisonGate = field(init=False)
    # The memory this worker's image decodes may hold at once (service.core.decode_budget).
    decode_budget: DecodeBudget = field(default_factory=DecodeBudget)
    # Where the workers of one server report what they serve (service.process.fleet); None for
    # a lone process.
    fleet_reports: Path | None = None
    shutting_down: bool = False

    def __post_init__(self) -> None:
        self.comparisons = ComparisonGate(
            self.settings.compare_lock_dir,
            wait_s=self.settings.compare_wait_s,
            max_waiting=self.settings.compare_max_waiting,
            budget_s=self.settings.compare_budget_s,
        )
