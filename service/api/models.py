"""``GET /models``, ``GET /models/{name}`` and ``GET /models/{name}/history``."""

from __future__ import annotations

from fastapi import APIRouter

from sepconv_contract.schemas import ModelInfo, ModelList, TrainingHistory
from service.api.deps import StateDep
from service.api.openapi import error_responses
from service.core.registry import ModelEntry
from service.errors import model_not_found, not_found

router = APIRouter(prefix="/models", tags=["models"])
MODEL_NOT_FOUND = error_responses({404: "MODEL_NOT_FOUND"})
HISTORY_NOT_FOUND = error_responses(
    {404: "MODEL_NOT_FOUND, or NOT_FOUND when the model was shipped without a history"}
)


def _entry(state: StateDep, name: str) -> ModelEntry:
    entry = state.registry.get(name)
    if entry is None:
        raise model_not_found(name, state.registry.names)
    return entry


@router.get("", response_model=ModelList)
async def list_models(state: StateDep) -> ModelList:
    """Every model with its parameters, MACs, accuracy, device and status."""
    models = [entry.info() for entry in state.registry.entries()]
    return ModelList(models=models, count=len(models))


@router.get("/{name}", response_model=ModelInfo, responses=MODEL_NOT_FOUND)
async def get_model(name: str, state: StateDep) -> ModelInfo:
    """One model's facts."""
    return _entry(state, name).info()


@router.get("/{name}/history", response_model=TrainingHistory, responses=HISTORY_NOT_FOUND)
async def get_history(name: str, state: StateDep) -> TrainingHistory:
    """The model's training history (loss and accuracy per epoch), when it was shipped."""
    entry = _entry(state, name)
    if entry.history is None:
        raise not_found(f"model {name!r} has no training history")
    epochs = [
        {k: float(v) for k, v in e.items() if isinstance(v, int | float)}
        for e in entry.history.get("epochs", [])
        if isinstance(e, dict)
    ]
    return TrainingHistory(model=name, epochs=epochs)
