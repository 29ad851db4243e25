from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.datasets import write_image_folders
from training.cli import evaluate_main, train_main
from training.history import HistoryRecorder


@pytest.mark.slow
def test_sepconv_train_end_to_end_both_models(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "data", per_class_train=20, per_class_test=5)
    out = tmp_path / "models"
    status = train_main(
        [
            "--model",
            "all",
            "--data",
            str(data),
            "--epochs",
            "1",
            "--limit",
            "150",
            "--out",
            str(out),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--batch-size",
            "32",
            "--onnx",
        ]
    )
    assert status == 0
    for name, parameters in (("regular", 1_186_378), ("separable", 174_821)):
        version = out / name / "1"
        loaded = tf.saved_model.load(str(version))
        outputs = loaded.signatures["serving_default"](image=tf.zeros([2, 32, 32, 3]))
        assert outputs["probabilities"].shape == (2, 10)
        assert sum(int(np.prod(v.shape)) for v in loaded.variables) == parameters
        metadata = json.loads((version / "metadata.json").read_text())
        assert metadata["epochs"] == 1 and metadata["seconds_per_epoch"] > 0
        # Each architecture trains on its own default input scale (raw pixels for separable).
        assert (
            metadata["training"]["training_input"] == {"regular": "unit", "separable": "raw"}[name]
        )
        assert 0.0 <= metadata["test_accuracy"] <= 1.0
        assert len(metadata["confusion_matrix"]) == 10
        assert sum(map(sum, metadata["confusion_matrix"])) == 50
        history = json.loads((version / "history.json").read_text())["epochs"]
        assert set(history[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
        assert (version / "accuracy.png").stat().st_size > 1000
        assert (version / "model.onnx").stat().st_size > 100_000
    assert (out / "accuracy.png").is_file()

    # Evaluation rewrites the metadata from the exported SavedModels alone.
    (out / "separable" / "1" / "metadata.json").unlink()
    assert evaluate_main(["--models", str(out), "--data", str(data)]) == 0
    metadata = json.loads((out / "separable" / "1" / "metadata.json").read_text())
    assert sum(map(sum, metadata["confusion_matrix"])) == 50


def test_sepconv_train_bad_data_is_a_clear_error(tmp_path: Path, capsys) -> None:
    status = train_main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")])
    assert status == 2
    assert "does not exist" in capsys.readouterr().err


def test_python_m_training_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "train,evaluate,export-onnx" in result.stderr


def test_history_recorder_resume_drops_epochs_past_restore(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    first = HistoryRecorder(path, "separable")
    for epoch in range(3):
        first.on_epoch_begin(epoch)
        first.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10, "val_loss": 1.0})
    resumed = HistoryRecorder(path, "separable")
    assert [e["epoch"] for e in resumed.epochs] == [1, 2, 3]
    resumed.on_epoch_begin(2)  # BackupAndRestore resumes at the third epoch
    resumed.on_epoch_end(2, {"loss": 0.5, "val_loss": 0.9})
    assert [e["loss"] for e in json.loads(path.read_text())["epochs"]] == [1.0, 0.9, 0.5]


def test_resumable_early_stopping_keeps_its_patience_across_a_resume(tmp_path: Path) -> None:
    from training.history import ResumableEarlyStopping

    path = tmp_path / "history.json"
    first = HistoryRecorder(path, "regular")
    for epoch, loss in enumerate([1.0, 0.8, 0.9]):  # best at epoch 2, then one worse epoch
        first.on_epoch_begin(epoch)
        first.on_epoch_end(epoch, {"val_loss": loss})

    class Model:  # the only attribute EarlyStopping touches when it stops
        stop_training = False

    resumed = HistoryRecorder(path, "regular")
    stopping = ResumableEarlyStopping(patience=2, history=resumed)
    stopping.set_model(Model())  # type: ignore[arg-type]
    stopping.on_train_begin()
    resumed.on_epoch_begin(3)
    stopping.on_epoch_begin(3)
    assert stopping.best == 0.8 and stopping.wait == 1
    resumed.on_epoch_end(3, {"val_loss": 0.95})
    stopping.on_epoch_end(3, {"val_loss": 0.95})
    # Two epochs without improvement in all, as in an uninterrupted run: stop now.
    assert stopping.model.stop_training is True
