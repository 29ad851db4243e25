"""The model registry: discovers ``<model_dir>/<name>/<version>/``, loads and warms each model.

Only names found by listing the model directory are ever loaded; a request can look a model up
by name but never makes the service touch the file system.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
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
from sepconv_contract.schemas import ModelInfo, RuntimeInfo
from sepconv_contract.versions import incomplete_reason, latest_complete_version
from service.core.batching import describe_output_mismatch
from service.core.cpus import available_cpus
from service.core.engines import RUNTIMES, Engine, open_engine
from service.errors import model_not_found, not_ready, runtime_not_loaded, runtime_unavailable

logger = logging.getLogger("sepconv.registry")

Status = Literal["loading", "ready", "failed"]

# Warm-up batch sizes: 1, the hot path; 2, proof that the batch dimension is not fixed.
WARMUP_BATCH_SIZES = (1, 2)


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
    runtime_errors: dict[str, str] = field(default_factory=dict)

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
                    else engine.trainable_parameters
                    if engine
                    else None
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
            runtimes=self.runtime_infos(),
        )

    def runtime_infos(self) -> list[RuntimeInfo]:
        """Every runtime the model was exported for or the service tried to load, in
        ``RUNTIMES`` order: what ``metadata.json`` recorded for it and whether it is loaded."""
        recorded = (self.metadata.runtimes if self.metadata else None) or {}
        loaded = set(self.extra_engines)
        if self.engine is not None:
            loaded.add(self.engine.runtime)
        named = {*recorded, *loaded, *self.runtime_errors}
        if self.status == "failed":
            named.add(self.runtime)
        infos = []
        for runtime in sorted(named, key=lambda r: (RUNTIMES + (r,)).index(r)):
            artifact = recorded.get(runtime)
            error = self.runtime_errors.get(runtime)
            if runtime == self.runtime and self.status == "failed":
                error = self.error
            infos.append(
                RuntimeInfo(
                    runtime=runtime,
                    file=artifact.file if artifact else None,
                    precision=artifact.precision if artifact else None,
                    size_bytes=artifact.size_bytes if artifact else None,
                    test_accuracy=artifact.test_accuracy if artifact else None,
                    test_accuracy_interval=artifact.test_accuracy_interval if artifact else None,
                    test_images=artifact.test_images if artifact else None,
                    agreement=artifact.agreement if artifact else None,
                    loaded=runtime in loaded,
                    error=error,
                )
            )
        return infos


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
        compare_runtimes: Sequence[str] = (),
        pinned_versions: Mapping[str, int] | None = None,
    ) -> None:
        self.model_dir = model_dir
        # The versions to load instead of the newest: a respawned worker's, matching the workers
        # already serving (service.process.fleet).
        self.pinned_versions = dict(pinned_versions or {})
        self.runtime = runtime
        # Loaded beside the serving engine at start-up, so /compare never loads one mid-request.
        self.compare_runtimes = [r for r in dict.fromkeys(compare_runtimes) if r != runtime]
        self.warmup_runs = warmup_runs
        self.threads = threads or available_cpus()
        self._entries: dict[str, ModelEntry] = {}
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
            latest = self._pinned(name, folder) or self._pick_version(name, folder)
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

    def _pinned(self, name: str, folder: Path) -> tuple[int, Path] | None:
        """The pinned version of ``name`` while it is still complete; else None, logged."""
        version = self.pinned_versions.get(name)
        if version is None:
            return None
        path = folder / str(version)
        reason = incomplete_reason(path) if path.is_dir() else "no longer there"
        if reason is None:
            return version, path
        logger.warning(
            "the version the other workers serve cannot be loaded; loading the newest",
            extra={"model": name, "version": version, "reason": reason},
        )
        return None

    @staticmethod
    def _pick_version(name: str, folder: Path) -> tuple[int, Path] | None:
        """The newest complete version; a newer, incomplete one (a copy still under way) is
        skipped with a log line. With none complete, the newest is taken anyway, so that the
        model fails with the loader's own reason rather than a vaguer one."""
        complete, skipped = latest_complete_version(folder)
        if complete is None:
            if skipped:
                version, reason = skipped[0]
                logger.error(
                    "no complete version folder; loading the newest",
                    extra={"model": name, "version": version, "reason": reason},
                )
            return latest_version(folder)
        for version, reason in skipped:
            logger.warning(
                "incomplete version folder ignored",
                extra={"model": name, "version": version, "reason": reason, "serving": complete[0]},
            )
        return complete

    @property
    def runtimes(self) -> list[str]:
        """Every runtime this registry loads: the serving one first, then the comparison's."""
        return [self.runtime, *self.compare_runtimes]

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

    def select(self, names: Sequence[str] | None = None) -> list[ModelEntry]:
        """The ready models ``names`` lists, in order (None, empty or ``all``: every ready
        model); 404 MODEL_NOT_FOUND for a name not in the repository, 503 NOT_READY for one
        still loading or failed.

        Unlike ``InferenceService.select`` it needs no batcher: for callers that run the
        engines themselves (``/compare``).
        """
        wanted = list(dict.fromkeys(names or ["all"]))
        selected: dict[str, ModelEntry] = {}
        for name in wanted:
            if name == "all":
                ready = self.ready_entries()
                if not ready:
                    raise not_ready("no model is ready yet; retry shortly")
                selected.update((e.name, e) for e in ready)
                continue
            entry = self.get(name)
            if entry is None:
                raise model_not_found(name, self.names)
            if entry.status != "ready":
                raise not_ready(
                    f"model {name!r} is {entry.status}: {entry.error or 'still loading'}"
                )
            selected[name] = entry
        return list(selected.values())

    def engine(self, entry: ModelEntry, runtime: str) -> Engine | None:
        """The model's engine for ``runtime``, loaded at start-up; None when that runtime was
        not configured or failed to load (then ``entry.runtime_errors`` says why)."""
        if entry.engine is not None and entry.engine.runtime == runtime:
            return entry.engine
        return entry.extra_engines.get(runtime)

    def require_engine(self, entry: ModelEntry, runtime: str) -> Engine:
        """The model's engine for a runtime a request asked for: 409 RUNTIME_UNAVAILABLE when
        the service did not load that runtime, or loaded it and this model's artifact failed
        (missing, broken); the model's other runtimes serve on either way."""
        engine = self.engine(entry, runtime)
        if engine is not None:
            return engine
        if runtime in entry.runtime_errors:
            raise runtime_unavailable(entry.name, runtime, entry.runtime_errors[runtime])
        raise runtime_not_loaded(runtime, self.runtimes, RUNTIMES)

    def on_runtime(self, entry: ModelEntry, runtime: str) -> ModelEntry:
        """``entry`` answering on ``runtime``: the same model, names and metadata, with that
        runtime's engine (a 409 from ``require_engine`` when it has none). The serving
        runtime (or none named) is the entry itself."""
        if not runtime or runtime == entry.runtime:
            return entry
        return dataclasses.replace(
            entry, runtime=runtime, engine=self.require_engine(entry, runtime)
        )

    def load_extra_runtimes(self, entry: ModelEntry) -> None:
        """Load and warm ``entry``'s engines for ``compare_runtimes``; a runtime that fails is
        recorded in ``entry.runtime_errors`` and leaves the model serving on its own runtime."""
        assert entry.path is not None
        for runtime in self.compare_runtimes:
            try:
                engine = open_engine(entry.path, runtime, self.threads)
                self._warm_up(engine, len(entry.classes))
            except Exception as error:  # noqa: BLE001 - any failure, ONNX Runtime's own included
                entry.runtime_errors[runtime] = _describe_load_error(error, entry.path)
                logger.warning(
                    "comparison runtime unavailable",
                    extra={
                        "model": entry.name,
                        "runtime": runtime,
                        "reason": entry.runtime_errors[runtime],
                    },
                )
                continue
            entry.extra_engines[runtime] = engine

    def _load(self, entry: ModelEntry) -> None:
        assert entry.path is not None
        started = time.perf_counter()
        try:
            entry.metadata = read_metadata(entry.path)
            entry.history = self._read_history(entry.path)
            engine = open_engine(entry.path, self.runtime, self.threads)
            self._warm_up(engine, len(entry.classes))
            entry.size_bytes = _folder_size(entry.path)
            entry.engine = engine
            # Before "ready": a ready model has every comparison runtime settled.
            self.load_extra_runtimes(entry)
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

    def _warm_up(self, engine: Engine, num_classes: int) -> None:
        """Run ``warmup_runs`` calls at each of ``WARMUP_BATCH_SIZES``, checking every answer.

        Batch 1 alone would pass a model exported with a fixed batch dimension of 1, which then
        fails every batch the micro-batcher gathers; batch 2 refuses it here, at load.
        """
        for batch_size in WARMUP_BATCH_SIZES:
            warm = np.zeros((batch_size, *INPUT_SHAPE), np.float32)
            for _ in range(max(1, self.warmup_runs)):
                try:
                    probabilities = engine.predict(warm)
                except Exception as error:
                    if batch_size == 1:
                        raise
                    raise ValueError(
                        f"the engine failed on a batch of {batch_size} "
                        f"({type(error).__name__}) after answering a batch of 1: the model "
                        "must accept any batch size (export with a None batch dimension)"
                    ) from error
                mismatch = describe_output_mismatch(
                    np.shape(probabilities), batch_size, num_classes
                )
                if mismatch is not None:
                    raise ValueError(mismatch)

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
