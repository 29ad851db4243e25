"""The model registry: discovers ``<model_dir>/<name>/<version>/``, loads and warms each model.

Only names found by listing the model directory are ever loaded; a request can look a model up
by name but never makes the service touch the file system.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sepconv_contract import (
    CLASS_NAMES,
    HISTORY_FILE,
    INPUT_SHAPE,
    ModelMetadata,
    latest_version,
    model_folders,
    read_metadata,
)
from sepconv_contract.schemas import ModelInfo
from service.core.cpus import available_cpus
from service.core.engines import Engine, open_engine

logger = logging.getLogger("sepconv.registry")

Status = Literal["loading", "ready", "failed"]


@dataclass
class ModelEntry:
    """One model of the repository: its files, metadata, engine and health."""

    name: str
    path: Path | None
    version: int | None
    runtime: str
    status: Status = "loading"
    error: str | None = None
    engine: Engine | None = None
    metadata: ModelMetadata | None = None
    history: dict[str, Any] | None = None
    size_bytes: int | None = None
    extra_engines: dict[str, Engine] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.metadata.classes) if self.metadata else list(CLASS_NAMES)

    def info(self) -> ModelInfo:
        metadata = self.metadata or ModelMetadata(name=self.name, version=self.version or 0)
        parameters = metadata.parameters
        engine = self.engine
        return ModelInfo(
            name=self.name,
            version=self.version,
            architecture=metadata.architecture,
            # The SavedModel's variables are the ground truth; an ONNX graph folds constants,
            # so its initializer count is not the network's parameter count.
            parameters=(
                engine.parameters
                if engine and engine.runtime == "tensorflow"
                else (parameters.total if parameters else engine.parameters if engine else None)
            ),
            trainable_parameters=(
                engine.trainable_parameters
                if engine and engine.runtime == "tensorflow"
                else (
                    parameters.trainable
                    if parameters
                    else engine.trainable_parameters if engine else None
                )
            ),
            macs_per_image=metadata.macs_per_image,
            size_bytes=self.size_bytes,
            input_shape=[None, *INPUT_SHAPE],
            classes=self.classes,
            test_accuracy=metadata.test_accuracy,
            test_accuracy_interval=metadata.test_accuracy_interval,
            test_images=metadata.test_images,
            validation=metadata.validation,
            validation_accuracy=metadata.validation_accuracy,
            paired=metadata.paired,
            epochs=metadata.epochs,
            device=engine.device if engine else None,
            runtime=self.runtime,
            status=self.status,
            error=self.error,
        )


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class ModelRegistry:
    """Every model the service knows, in a stable order (by name: regular, then separable)."""

    def __init__(
        self,
        model_dir: Path,
        names: list[str] | None,
        runtime: str,
        warmup_runs: int = 3,
        threads: int = 0,
    ) -> None:
        self.model_dir = model_dir
        self.runtime = runtime
        self.warmup_runs = warmup_runs
        self.threads = threads or available_cpus()
        self._entries: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        self.loaded = threading.Event()
        self._discover(names)

    def _discover(self, names: list[str] | None) -> None:
        found: dict[str, Path] = {}
        if self.model_dir.is_dir():
            found = model_folders(self.model_dir)
        else:
            logger.error("model directory does not exist", extra={"model_dir": str(self.model_dir)})
        for name in names if names is not None else sorted(found):
            folder = found.get(name)
            if folder is None:
                self._entries[name] = ModelEntry(
                    name, None, None, self.runtime, "failed", "not found in the model directory"
                )
                continue
            latest = latest_version(folder)
            if latest is None:
                self._entries[name] = ModelEntry(
                    name,
                    None,
                    None,
                    self.runtime,
                    "failed",
                    "no numeric version folder (expected <name>/<version>/)",
                )
                continue
            version, path = latest
            self._entries[name] = ModelEntry(name, path, version, self.runtime)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def ready_entries(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if e.status == "ready"]

    def load_all(self) -> None:
        """Load and warm every discovered model; a broken model fails alone.

        ``loaded`` is set by whoever puts the models to work (the app, once each ready model has
        its batcher), so readiness never runs ahead of serving.
        """
        for entry in self._entries.values():
            if entry.status == "loading":
                self._load(entry)

    def engine(self, entry: ModelEntry, runtime: str) -> Engine:
        """The model's engine for ``runtime``; a second runtime is loaded on first use."""
        if entry.engine is not None and entry.engine.runtime == runtime:
            return entry.engine
        with self._lock:
            cached = entry.extra_engines.get(runtime)
            if cached is None:
                assert entry.path is not None
                cached = open_engine(entry.path, runtime, self.threads)
                cached.predict(np.zeros((1, *INPUT_SHAPE), np.float32))
                entry.extra_engines[runtime] = cached
            return cached

    def _load(self, entry: ModelEntry) -> None:
        assert entry.path is not None
        started = time.perf_counter()
        try:
            entry.metadata = read_metadata(entry.path)
            entry.history = self._read_history(entry.path)
            engine = open_engine(entry.path, self.runtime, self.threads)
            warm = np.zeros((1, *INPUT_SHAPE), np.float32)
            for _ in range(max(1, self.warmup_runs)):
                probabilities = engine.predict(warm)
            if probabilities.shape != (1, len(entry.classes)):
                raise ValueError(
                    f"output shape {probabilities.shape} does not match "
                    f"{len(entry.classes)} classes"
                )
            entry.size_bytes = _folder_size(entry.path)
            entry.engine = engine
            entry.status = "ready"
            logger.info(
                "model ready",
                extra={
                    "model": entry.name,
                    "version": entry.version,
                    "device": engine.device,
                    "runtime": engine.runtime,
                    "load_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
        except Exception as error:  # noqa: BLE001 - any load failure marks this model failed
            entry.status = "failed"
            entry.error = _describe_load_error(error, entry.path)
            logger.error("model failed to load", extra={"model": entry.name, "reason": entry.error})

    @staticmethod
    def _read_history(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((path / HISTORY_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("epochs"), list) else None

    def is_ready(self, strict: bool) -> bool:
        if not self.loaded.is_set():
            return False
        statuses = [e.status for e in self._entries.values()]
        if strict:
            return bool(statuses) and all(s == "ready" for s in statuses)
        return any(s == "ready" for s in statuses)


def _describe_load_error(error: Exception, path: Path) -> str:
    """A short reason without file system paths (they must never reach a client)."""
    message = str(error).replace(str(path), "<model>").strip().splitlines()
    first = message[0] if message else ""
    if "/" in first:
        first = " ".join(w for w in first.split() if "/" not in w)
    reason = f"{type(error).__name__}: {first}"[:300]
    return reason
