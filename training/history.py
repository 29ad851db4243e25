"""Per-epoch training history that survives an interrupted and resumed run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def read_history(path: Path) -> list[dict[str, float]]:
    """The epochs recorded so far in ``path`` (an empty list when there is none)."""
    if not path.is_file():
        return []
    epochs: list[dict[str, float]] = json.loads(path.read_text())["epochs"]
    return epochs


def read_trained_on(path: Path) -> str | None:
    """The machine the epochs in ``path`` were trained on, when the history records it."""
    if not path.is_file():
        return None
    trained_on = json.loads(path.read_text()).get("trained_on")
    return str(trained_on) if trained_on else None


def write_history(
    path: Path, name: str, epochs: list[dict[str, float]], trained_on: str | None = None
) -> None:
    """Write the history JSON: per epoch loss, accuracy, val_loss, val_accuracy, seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".json.partial")
    record: dict[str, Any] = {"model": name}
    if trained_on:
        record["trained_on"] = trained_on
    record["epochs"] = epochs
    staging.write_text(json.dumps(record, indent=2) + "\n")
    staging.replace(path)


class HistoryRecorder(keras.callbacks.Callback):
    """Appends each finished epoch (with its wall time) to a JSON file as it ends.

    Keras' own ``History`` starts empty after ``BackupAndRestore`` resumes a run, so the file,
    not the in-memory object, is the record: on resume, epochs past the restored one are
    dropped and the rest kept.
    """

    def __init__(self, path: Path, name: str, trained_on: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.name = name
        # The machine of the session that records epochs; a resumed run keeps the last one's.
        self.trained_on = trained_on
        self.epochs: list[dict[str, float]] = read_history(path)
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs = self.epochs[:epoch]
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        record = {key: float(logs[key]) for key in HISTORY_KEYS if key in logs}
        record["epoch"] = epoch + 1
        record["seconds"] = round(time.perf_counter() - self._started, 2)
        self.epochs.append(record)
        write_history(self.path, self.name, self.epochs, self.trained_on)


class RunNotFound(LookupError):
    """No finished run in the checkpoint folder where ``--export-only`` looked for one."""


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss in a file.

    Unlike ``EarlyStopping(restore_best_weights=True)`` this survives a resume: the best loss so
    far is read back from the history file and the weights from disk.
    """

    def __init__(self, path: Path, history: HistoryRecorder) -> None:
        super().__init__()
        self.path = path
        self.history = history

    def _best_loss(self, before_epoch: int) -> float:
        losses = [e["val_loss"] for e in self.history.epochs[:before_epoch] if "val_loss" in e]
        return min(losses, default=float("inf"))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("val_loss")
        if loss is not None and float(loss) < self._best_loss(epoch):
            save_weights(self.model, self.path)

    def best_epoch(self) -> int | None:
        """The 1-based epoch with the lowest validation loss, if any was recorded."""
        scored = [e for e in self.history.epochs if "val_loss" in e]
        return int(min(scored, key=lambda e: e["val_loss"])["epoch"]) if scored else None

    def restore(self, model: keras.Model) -> bool:
        """Load the best weights into ``model``; False when none were saved."""
        if not self.path.is_file():
            return False
        load_weights(model, self.path)
        return True


class FinalWeights(keras.callbacks.Callback):
    """Writes the weights when training ends: the mark of a finished run.

    Keras calls ``on_train_end`` only when training ran to its end (every epoch, or early
    stopping), not after an error or a kill; and ``BackupAndRestore`` deletes its backup there,
    so this callback must come before it, or a kill in between would lose the finished run.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        save_weights(self.model, self.path)


def save_weights(model: keras.Model, path: Path) -> None:
    """Save beside and rename: a kill mid-write never leaves a torn weights file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"partial-{path.name}")
    model.save_weights(str(staging))
    staging.replace(path)


def load_weights(model: keras.Model, path: Path) -> None:
    """Load weights saved by ``save_weights`` into a compiled ``model``."""
    # The files hold Adam's state too; an optimizer not yet built would skip it with a warning.
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(str(path))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on ``val_loss`` that survives a resume.

    Keras' own resets its best loss and patience count when training starts again, so a resumed
    run would train longer than an uninterrupted one; this one picks both up from the history.
    """

    def __init__(self, patience: int, history: HistoryRecorder) -> None:
        super().__init__(monitor="val_loss", patience=patience)
        self.history = history
        self._seeded = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self._seeded = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._seeded:
            return
        self._seeded = True
        # The history recorder has already dropped epochs past the restored one.
        losses = [e["val_loss"] for e in self.history.epochs[:epoch] if "val_loss" in e]
        if losses:
            best_index = min(range(len(losses)), key=losses.__getitem__)
            self.best = losses[best_index]
            self.wait = len(losses) - 1 - best_index
