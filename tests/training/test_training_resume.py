"""A run trained with ``--train-only`` is exported later by the same command, untrained again."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPOSITORY
from tests.helpers.datasets import PER_CLASS_TEST, PER_CLASS_TRAIN, write_image_folders
from training.architectures import Architecture, build_model
from training.cli import export_onnx_main, train_main
from training.data import Cifar10, load_cifar10
from training.evaluation import evaluate_predictions
from training.history import (
    HistoryRecorder,
    read_history,
    read_trained_on,
    write_history,
)
from training.machine import describe_machine
from training.train import (
    DEFAULT_INPUT_SCALE,
    HISTORY_FILE,
    LAST_WEIGHTS_FILE,
    TRAINING_SCALES,
    TrainingConfig,
    checkpoint_run_dir,
)

ARCHITECTURE: Architecture = "separable"  # the smaller of the two, so the tiny runs stay quick
MAX_EPOCHS = 3
PATIENCE = 1
# So large that the second epoch's val_loss is far worse than the first's (about 3100 against
# 410): early stopping ends the run before MAX_EPOCHS, and its best weights are not its last.
LEARNING_RATE = 0.1


def epochs_with_losses(*val_losses: float) -> list[dict[str, float]]:
    return [
        {"epoch": index + 1, "val_loss": loss, "seconds": 1.0}
        for index, loss in enumerate(val_losses)
    ]


def test_history_recorder_writes_trained_on_at_epoch_end(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    recorder = HistoryRecorder(path, "separable", "2 x Test CPUs; Keras 3 on tensorflow 2")
    assert read_trained_on(path) is None  # nothing written before the first epoch ends
    recorder.on_epoch_begin(0)
    recorder.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.2})
    assert read_trained_on(path) == "2 x Test CPUs; Keras 3 on tensorflow 2"
    assert [e["epoch"] for e in read_history(path)] == [1]
    record = json.loads(path.read_text())
    assert record["model"] == "separable"


def test_history_resumed_elsewhere_records_the_last_machine(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    first = HistoryRecorder(path, "regular", "machine A")
    first.on_epoch_begin(0)
    first.on_epoch_end(0, {"val_loss": 1.0})
    resumed = HistoryRecorder(path, "regular", "machine B")
    resumed.on_epoch_begin(1)
    resumed.on_epoch_end(1, {"val_loss": 0.9})
    assert read_trained_on(path) == "machine B"
    assert [e["val_loss"] for e in read_history(path)] == [1.0, 0.9]


def test_read_trained_on_missing_file_or_field_is_none(tmp_path: Path) -> None:
    assert read_trained_on(tmp_path / "missing.json") is None
    path = tmp_path / "history.json"
    write_history(path, "regular", epochs_with_losses(1.0))
    assert read_trained_on(path) is None
    assert "trained_on" not in json.loads(path.read_text())


def test_history_written_before_trained_on_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    # The layout every history had before the field existed.
    path.write_text(json.dumps({"model": "regular", "epochs": epochs_with_losses(1.0, 0.9)}))
    assert read_trained_on(path) is None
    assert [e["val_loss"] for e in read_history(path)] == [1.0, 0.9]
    resumed = HistoryRecorder(path, "regular", "machine B")
    assert len(resumed.epochs) == 2
    resumed.on_epoch_begin(2)
    resumed.on_epoch_end(2, {"val_loss": 0.8})
    assert read_trained_on(path) == "machine B"


def test_describe_machine_names_keras_and_its_backend() -> None:
    description = describe_machine()
    assert f"Keras {keras.__version__}" in description
    assert f"on {keras.backend.backend()} {tf.__version__}" in description
    assert "CPUs" in description or len(tf.config.list_physical_devices("GPU")) > 0


def test_sepconv_export_onnx_finds_its_module(capsys: pytest.CaptureFixture[str]) -> None:
    # The command is spelled export-onnx; its module is training.onnx_export.
    with pytest.raises(SystemExit) as exit_info:
        export_onnx_main(["--help"])
    assert exit_info.value.code == 0
    assert "sepconv-export-onnx" in capsys.readouterr().out


def test_sepconv_train_export_on_another_backend_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backend is fixed when Keras is imported; what train.run reads of it is patched.
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "models")])
    message = str(exit_info.value.code)
    assert "TensorFlow backend" in message and "'jax'" in message and "--train-only" in message


@dataclass(frozen=True)
class TrainedCheckpoint:
    """A finished ``--train-only`` run: its data, checkpoint folder and what it printed."""

    data: Path
    checkpoint_dir: Path
    out: Path
    output: str

    def run_dir(self, checkpoint_dir: Path | None = None) -> Path:
        (run_dir,) = (checkpoint_dir or self.checkpoint_dir).iterdir()
        return run_dir

    def arguments(self, checkpoint_dir: Path, out: Path) -> list[str]:
        """The command line of the run, pointed at a copy of its checkpoints."""
        return train_arguments(self.data, checkpoint_dir, out)


def train_arguments(data: Path, checkpoint_dir: Path, out: Path) -> list[str]:
    """The ``sepconv-train`` command line of the tiny run, less ``--train-only``."""
    return [
        "--model",
        ARCHITECTURE,
        "--data",
        str(data),
        "--epochs",
        str(MAX_EPOCHS),
        "--early-stopping",
        str(PATIENCE),
        "--learning-rate",
        str(LEARNING_RATE),
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--checkpoint-dir",
        str(checkpoint_dir),
    ]


def run_train(arguments: list[str]) -> tuple[int, str]:
    """``sepconv-train`` in-process, with what it printed."""
    status, output, _ = run_train_capturing(arguments)
    return status, output


def run_train_capturing(arguments: list[str]) -> tuple[int, str, str]:
    """``sepconv-train`` in-process, with what it printed and what it reported as errors."""
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        status = train_main(arguments)
    return status, printed.getvalue(), errors.getvalue()


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> TrainedCheckpoint:
    """One tiny ``--train-only`` run shared by the tests, which each export a copy of it."""
    root = tmp_path_factory.mktemp("train-only")
    data = write_image_folders(root / "data", PER_CLASS_TRAIN, PER_CLASS_TEST)
    status, output = run_train(
        [*train_arguments(data, root / "ckpt", root / "models"), "--train-only"]
    )
    assert status == 0, output
    return TrainedCheckpoint(data, root / "ckpt", root / "models", output)


def copy_checkpoints(trained: TrainedCheckpoint, tmp_path: Path) -> Path:
    """A private copy of the checkpoints, as if carried over from the training host."""
    copy = tmp_path / "ckpt"
    shutil.copytree(trained.checkpoint_dir, copy)
    return copy


def checkpoint_probabilities(weights: Path, images: np.ndarray) -> np.ndarray:
    """What a checkpointed weights file predicts, loaded into a fresh model."""
    model = build_model(
        ARCHITECTURE, input_scale=TRAINING_SCALES[DEFAULT_INPUT_SCALE[ARCHITECTURE]]
    )
    model.load_weights(str(weights))
    return np.asarray(model(images.astype(np.float32), training=False))


def served_probabilities(version: Path, images: np.ndarray) -> np.ndarray:
    """What the exported SavedModel predicts, loaded without project code."""
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    return np.asarray(serve(image=tf.constant(images.astype(np.float32)))["probabilities"])


@pytest.mark.slow
def test_sepconv_train_only_keeps_the_checkpoint_without_exporting(
    trained_checkpoint: TrainedCheckpoint,
) -> None:
    assert not trained_checkpoint.out.exists()
    run_dir = trained_checkpoint.run_dir()
    for name in (HISTORY_FILE, "best.weights.h5", LAST_WEIGHTS_FILE):
        assert (run_dir / name).stat().st_size > 0, name
    assert not (run_dir / "backup").exists()  # Keras drops its backup once training ends
    # Early stopping, not the epoch count, ended it: the run is finished by its patience.
    assert len(read_history(run_dir / HISTORY_FILE)) == 1 + PATIENCE < MAX_EPOCHS
    assert read_trained_on(run_dir / HISTORY_FILE) == describe_machine()
    assert f"Training {ARCHITECTURE}" in trained_checkpoint.output
    assert f"{ARCHITECTURE}: trained; checkpoint in {run_dir}" in trained_checkpoint.output
    assert "Exported" not in trained_checkpoint.output


@pytest.mark.slow
def test_sepconv_train_exports_a_train_only_run_without_training_again(
    trained_checkpoint: TrainedCheckpoint, tmp_path: Path
) -> None:
    checkpoint_dir = copy_checkpoints(trained_checkpoint, tmp_path)
    run_dir = trained_checkpoint.run_dir(checkpoint_dir)
    history_before = (run_dir / HISTORY_FILE).read_text()
    out = tmp_path / "models"

    status, output = run_train(trained_checkpoint.arguments(checkpoint_dir, out))

    assert status == 0, output
    assert "training already finished" in output and "not training again" in output
    assert f"Training {ARCHITECTURE}" not in output
    # Not one epoch more: the history, per-epoch seconds included, is as training left it.
    assert (run_dir / HISTORY_FILE).read_text() == history_before
    epochs = json.loads(history_before)["epochs"]

    version = out / ARCHITECTURE / "1"
    assert (version / "saved_model.pb").is_file()
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["trained_on"] == describe_machine()
    assert metadata["epochs"] == len(epochs)
    # The median, so the first epoch's compiling does not count as training time.
    assert metadata["seconds_per_epoch"] == round(
        statistics.median(e["seconds"] for e in epochs), 2
    )
    lowest = min(epochs, key=lambda e: e["val_loss"])
    assert metadata["best_epoch"] == lowest["epoch"] != epochs[-1]["epoch"]
    assert metadata["restored_best_weights"] is True
    assert json.loads((version / HISTORY_FILE).read_text())["epochs"] == epochs

    # The exported model is the best epoch's weights (not the last epoch's, which predict
    # very differently here), and the metadata scores exactly those.
    data = load_cifar10(str(trained_checkpoint.data))
    best = checkpoint_probabilities(run_dir / "best.weights.h5", data.test_images)
    evaluation = evaluate_predictions(best, data.test_labels)
    assert metadata["test_accuracy"] == evaluation["test_accuracy"]
    assert metadata["confusion_matrix"] == evaluation["confusion_matrix"]
    np.testing.assert_allclose(served_probabilities(version, data.test_images), best, atol=1e-5)


@pytest.mark.slow
def test_sepconv_train_export_says_where_the_run_was_trained(
    trained_checkpoint: TrainedCheckpoint, tmp_path: Path
) -> None:
    # Trained on a GPU host with Keras on JAX, exported here: the metadata names the GPU host.
    checkpoint_dir = copy_checkpoints(trained_checkpoint, tmp_path)
    history_path = trained_checkpoint.run_dir(checkpoint_dir) / HISTORY_FILE
    record = json.loads(history_path.read_text())
    record["trained_on"] = "NVIDIA H200; Keras 3.15.1 on jax 0.11.2"
    history_path.write_text(json.dumps(record, indent=2) + "\n")
    out = tmp_path / "models"
    # Here the same images live in another folder than on the training host.
    data_here = shutil.copytree(trained_checkpoint.data, tmp_path / "elsewhere" / "cifar10")

    status, output = run_train(train_arguments(data_here, checkpoint_dir, out))

    assert status == 0, output
    assert "not training again" in output
    metadata = json.loads((out / ARCHITECTURE / "1" / "metadata.json").read_text())
    assert metadata["trained_on"] == "NVIDIA H200; Keras 3.15.1 on jax 0.11.2"
    assert read_trained_on(history_path) == "NVIDIA H200; Keras 3.15.1 on jax 0.11.2"


@pytest.mark.slow
def test_a_run_without_its_final_weights_is_not_exported_as_finished(
    trained_checkpoint: TrainedCheckpoint, tmp_path: Path
) -> None:
    # Killed after its last epoch but before training ended: no final weights, so not finished,
    # and --export-only says which folder it looked in instead of training.
    checkpoint_dir = copy_checkpoints(trained_checkpoint, tmp_path)
    run_dir = trained_checkpoint.run_dir(checkpoint_dir)
    (run_dir / LAST_WEIGHTS_FILE).unlink()
    out = tmp_path / "models"

    status, output, errors = run_train_capturing(
        [*trained_checkpoint.arguments(checkpoint_dir, out), "--export-only"]
    )

    assert status == 2, output
    assert f"no finished {ARCHITECTURE} run" in errors and str(run_dir) in errors
    assert "Traceback" not in errors
    assert f"Training {ARCHITECTURE}" not in output
    assert not out.exists()


@pytest.mark.slow
def test_export_only_exports_a_finished_run(
    trained_checkpoint: TrainedCheckpoint, tmp_path: Path
) -> None:
    checkpoint_dir = copy_checkpoints(trained_checkpoint, tmp_path)
    out = tmp_path / "models"
    status, output, _ = run_train_capturing(
        [*trained_checkpoint.arguments(checkpoint_dir, out), "--export-only"]
    )
    assert status == 0, output
    assert "not training again" in output
    assert (out / ARCHITECTURE / "1" / "saved_model.pb").is_file()


def test_export_only_of_data_never_trained_names_the_folder(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "data", PER_CLASS_TRAIN, PER_CLASS_TEST)
    status, output, errors = run_train_capturing(
        [*train_arguments(data, tmp_path / "ckpt", tmp_path / "models"), "--export-only"]
    )
    assert status == 2
    assert f"expected {tmp_path / 'ckpt'}" in errors
    assert f"Training {ARCHITECTURE}" not in output
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())


@pytest.mark.parametrize(
    "flags",
    [["--train-only", "--export-only"], ["--train-only", "--onnx"], ["--export-only", "--fresh"]],
)
def test_contradictory_flags_are_refused_before_any_work(tmp_path: Path, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main([*train_arguments(tmp_path / "missing", tmp_path / "ckpt", tmp_path), *flags])
    assert flags[1] in str(exit_info.value.code)


@pytest.mark.slow
def test_a_run_without_early_stopping_exports_its_final_weights(tmp_path: Path) -> None:
    # No early stopping: the last epoch's weights are the model, kept in last.weights.h5.
    data = write_image_folders(tmp_path / "data", PER_CLASS_TRAIN, PER_CLASS_TEST)
    arguments = [
        "--model", ARCHITECTURE, "--data", str(data), "--epochs", "2",
        "--learning-rate", str(LEARNING_RATE), "--batch-size", "32",
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--out", str(tmp_path / "models"),
    ]  # fmt: skip
    status, output = run_train([*arguments, "--train-only"])
    assert status == 0, output
    (run_dir,) = (tmp_path / "ckpt").iterdir()

    status, output = run_train(arguments)

    assert status == 0, output
    assert "not training again" in output
    version = tmp_path / "models" / ARCHITECTURE / "1"
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["restored_best_weights"] is False and metadata["best_epoch"] == 2
    images = load_cifar10(str(data)).test_images
    np.testing.assert_allclose(
        served_probabilities(version, images),
        checkpoint_probabilities(run_dir / LAST_WEIGHTS_FILE, images),
        atol=1e-5,
    )


def test_training_imports_no_tensorflow_until_it_exports() -> None:
    # sepconv-train --train-only runs where TensorFlow is not installed (Keras on JAX on a GPU
    # host): nothing on its path may import TensorFlow at module level.
    training = REPOSITORY / "training"
    on_the_path = (
        "__init__", "__main__", "cli", "train", "history", "machine", "data",
        "architectures", "macs", "evaluation", "statistics", "plots",
    )  # fmt: skip
    for name in on_the_path:
        tree = ast.parse((training / f"{name}.py").read_text())
        imported = [alias.name for node in tree.body if isinstance(node, ast.Import)
                    for alias in node.names]  # fmt: skip
        imports_from = [
            node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
        ]
        modules = imported + imports_from
        assert not [m for m in modules if m.split(".")[0] == "tensorflow"], name
        # The project modules it pulls in at import time must be on the path themselves.
        project = {m.split(".")[1] for m in modules if m.startswith("training.")}
        assert project <= set(on_the_path), name


def tiny_cifar10(seed: int) -> Cifar10:
    rng = np.random.default_rng(seed)
    return Cifar10(
        rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        np.arange(4, dtype=np.int64),
        (rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), np.arange(2, dtype=np.int64)),
        "image folders cifar10",
    )


def test_checkpoint_folder_is_keyed_by_data_and_recipe(tmp_path: Path) -> None:
    config = TrainingConfig(checkpoint_dir=tmp_path)
    same = checkpoint_run_dir(ARCHITECTURE, tiny_cifar10(0), config)
    assert checkpoint_run_dir(ARCHITECTURE, tiny_cifar10(0), config) == same
    # Same name, other images (one pixel differs): never resumes the other's run.
    other = tiny_cifar10(0)
    other.train_images[1, 31, 31, 2] ^= 1
    assert checkpoint_run_dir(ARCHITECTURE, other, config) != same
    assert checkpoint_run_dir(ARCHITECTURE, tiny_cifar10(1), config) != same
    # Another recipe on the same data is another run too.
    assert (
        checkpoint_run_dir(
            ARCHITECTURE, tiny_cifar10(0), TrainingConfig(checkpoint_dir=tmp_path, seed=1)
        )
        != same
    )
