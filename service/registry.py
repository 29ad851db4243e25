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

from service.engines import Engine, OnnxRuntimeEngine, TensorFlowEngine, available_cpus
from service.schemas import ModelInfo
from training.architectures import CLASS_NAMES

logger = logging.getLogger("sepconv.registry")

Status = Literal["loading", "ready", "failed"]
INPUT_SHAPE = [None, 32, 32, 3]


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
    metadata: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] | None = None
    size_bytes: int | None = None
    extra_engines: dict[str, Engine] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        classes = self.metadata.get("classes")
        return list(classes) if isinstance(classes, list) else list(CLASS_NAMES)

    def info(self) -> ModelInfo:
        parameters = self.metadata.get("parameters") or {}
        engine = self.engine
        return ModelInfo(
            name=self.name,
            version=self.version,
            architecture=self.metadata.get("architecture"),
            # The SavedModel's variables are the ground truth; an ONNX graph folds constants,
            # so its initializer count is not the network's parameter count.
            parameters=(
                engine.parameters
                if engine and engine.runtime == "tensorflow"
                else parameters.get("total", engine.parameters if engine else None)
            ),
            trainable_parameters=(
                engine.trainable_parameters
                if engine and engine.runtime == "tensorflow"
                else parameters.get("trainable", engine.trainable_parameters if engine else None)
            ),
            macs_per_image=self.metadata.get("macs_per_image"),
            size_bytes=self.size_bytes,
            input_shape=INPUT_SHAPE,
            classes=self.classes,
            test_accuracy=self.metadata.get("test_accuracy"),
            epochs=self.metadata.get("epochs"),
            device=engine.device if engine else None,
            runtime=self.runtime,
            status=self.status,
            error=self.error,
        )


def _latest_version(model_dir: Path) -> tuple[int, Path] | None:
    versions = [(int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions) if versions else None


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
            found = {
                p.name: p
                for p in sorted(self.model_dir.iterdir())
                if p.is_dir() and not p.name.startswith(".")
            }
        else:
            logger.error("model directory does not exist", extra={"model_dir": str(self.model_dir)})
        for name in names if names is not None else sorted(found):
            folder = found.get(name)
            if folder is None:
                self._entries[name] = ModelEntry(
                    name, None, None, self.runtime, "failed", "not found in the model directory"
                )
                continue
            latest = _latest_version(folder)
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
                cached = self._open_engine(entry.path, runtime)
                cached.predict(np.zeros((1, 32, 32, 3), np.float32))
                entry.extra_engines[runtime] = cached
            return cached

    def _open_engine(self, path: Path, runtime: str) -> Engine:
        if runtime == "onnxruntime":
            return OnnxRuntimeEngine(path, self.threads)
        return TensorFlowEngine(path)

    def _load(self, entry: ModelEntry) -> None:
        assert entry.path is not None
        started = time.perf_counter()
        try:
            entry.metadata = self._read_metadata(entry.path)
            entry.history = self._read_history(entry.path)
            engine = self._open_engine(entry.path, self.runtime)
            warm = np.zeros((1, 32, 32, 3), np.float32)
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
    def _read_metadata(path: Path) -> dict[str, Any]:
        metadata_path = path / "metadata.json"
        if not metadata_path.exists():
            return {}
        try:
            data = json.loads(metadata_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"metadata.json is unreadable ({type(error).__name__})") from None
        if not isinstance(data, dict):
            raise ValueError("metadata.json is not a JSON object")
        return data

    @staticmethod
    def _read_history(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((path / "history.json").read_text())
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
