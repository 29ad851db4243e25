"""Train the tutorial's classifiers on CIFAR-10 and export them for serving.

Reads top to bottom as data, model, train, evaluate, export. Long CPU runs survive an
interruption: every epoch is checkpointed and a rerun of the same command resumes, and a run
that has finished is exported again without training. Training runs on any Keras backend
(``KERAS_BACKEND=jax`` on a GPU host without TensorFlow, with ``--train-only``); exporting the
SavedModel needs TensorFlow, so such a run is exported by the same command where it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np

from sepconv_contract import HISTORY_FILE, INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME
from training.architectures import (
    ARCHITECTURES,
    UNIT_SCALE,
    Architecture,
    build_model,
    with_input_scale,
)
from training.data import Cifar10, array_digest, load_cifar10, split_validation
from training.evaluation import evaluate_predictions, predict_in_batches
from training.history import (
    BestWeights,
    FinalWeights,
    HistoryRecorder,
    ResumableEarlyStopping,
    RunNotFound,
    load_weights,
    read_history,
    read_trained_on,
)
from training.machine import describe_machine
from training.plots import plot_accuracy

DEFAULT_INPUT_SCALE: dict[str, str] = {"regular": "unit", "separable": "raw"}
InputScale = Literal["raw", "unit"]
TRAINING_SCALES: dict[str, float] = {"raw": 1.0, "unit": UNIT_SCALE}
FIGURE_FILE = "accuracy.png"
LAST_WEIGHTS_FILE = "last.weights.h5"
# Where the validation data that selects the epoch comes from: "train" holds out part of the
# training images (the honest protocol); "test" is the tutorial's own choice, kept so its table
# can be reproduced, and labelled wherever it is used because its test accuracy is then biased.
ValidationSource = Literal["train", "test"]
TUTORIAL_PROTOCOL_WARNING = (
    "the tutorial's protocol: the TEST split is the validation data, so early stopping and the "
    "restored epoch are chosen on it and its accuracy is an optimistic, selected figure"
)


@dataclass(frozen=True)
class TrainingConfig:
    """One training run's recipe; the defaults are the reference tutorial's."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.001
    early_stopping: int | None = None
    seed: int = 0
    version: int = 1
    # The pixels training sees; None picks each architecture's measured best. "raw": 0-255, as
    # the tutorial trained; the exported model still scales its input to [0, 1] inside (the
    # 1/255 is folded into the first layer). "unit": [0, 1]. With Keras' default initialisers
    # the separable network only trains on raw pixels (on [0, 1] its signal vanishes through
    # the six separable layers); the regular one does better on [0, 1] (73.66% vs 70.58%).
    input_scale: InputScale | None = None
    checkpoint_dir: Path = Path.home() / ".cache" / "sepconv-serve" / "checkpoints"
    # False: train (or resume) and keep the checkpoint only, e.g. on a GPU host where Keras
    # runs on JAX; the same command without it exports where TensorFlow is installed.
    export: bool = True
    # False: export a finished run only, and fail rather than start training one.
    train: bool = True
    validation: ValidationSource = "train"
    # Held-out training images per class; None: 500 (10% of CIFAR-10), less on small data.
    validation_per_class: int | None = None
    validation_seed: int = 0


@dataclass(frozen=True)
class FitData:
    """What the network fits, what selects its epoch, and how the latter was chosen."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    validation: dict[str, object]


def fit_data(data: Cifar10, config: TrainingConfig) -> FitData:
    """Split off the validation data; only the tutorial's protocol reads the test split here."""
    if config.validation == "test":
        return FitData(
            data.train_images,
            data.train_labels,
            data.test_images,
            data.test_labels,
            {
                "split": "test",
                "images": int(len(data.test_labels)),
                "sha256": array_digest(data.test_images, data.test_labels),
                "protocol": "tutorial",
                "warning": TUTORIAL_PROTOCOL_WARNING,
            },
        )
    split = split_validation(
        data.train_images, data.train_labels, config.validation_per_class, config.validation_seed
    )
    return FitData(
        split.train_images,
        split.train_labels,
        split.validation_images,
        split.validation_labels,
        {**split.describe(), "protocol": "held-out"},
    )


@contextlib.contextmanager
def distribution_scope() -> Iterator[None]:
    """Mirror across GPUs when TensorFlow sees more than one; otherwise no strategy."""
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    with strategy.scope():
        yield


def train_one(
    architecture: Architecture, data: Cifar10, out_dir: Path, config: TrainingConfig
) -> Path | None:
    """Train, evaluate and export one architecture; returns the exported version folder.

    None when ``config.export`` is False: the trained run then lives in its checkpoint folder.
    """
    keras.utils.set_random_seed(config.seed)
    fit = fit_data(data, config)
    if config.validation == "test":
        print(f"WARNING: {TUTORIAL_PROTOCOL_WARNING}")
    run_dir = checkpoint_run_dir(architecture, data, config, fit)
    with distribution_scope():
        model = build_model(
            architecture, input_scale=TRAINING_SCALES[training_input(architecture, config)]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    history = HistoryRecorder(run_dir / HISTORY_FILE, architecture, describe_machine())
    best = BestWeights(run_dir / "best.weights.h5", history)
    last = run_dir / LAST_WEIGHTS_FILE
    if last.is_file():
        # Keras deletes its backup when training ends, so without this a crash during the
        # export (or a run trained elsewhere) would be trained again from the first epoch.
        print(f"{architecture}: training already finished in {run_dir}; not training again")
        load_weights(model, last)
    elif not config.train:
        raise RunNotFound(
            f"no finished {architecture} run for this recipe and data: expected {run_dir}. "
            f"Copy the checkpoint folder there; the data must be the same images, pixel for "
            f"pixel, as where it trained"
        )
    else:
        _fit(model, architecture, fit, config, run_dir, history, best)
    if not config.export:
        print(f"{architecture}: trained; checkpoint in {run_dir}")
        return None

    # The exported weights are the best epoch's only when early stopping restored them;
    # otherwise they are the last epoch's, and that is what the metadata must say.
    best_epoch = None
    if config.early_stopping is not None and best.restore(model):
        best_epoch = best.best_epoch()
        print(f"Restored the weights of epoch {best_epoch} (lowest validation loss)")
    selected_epoch = best_epoch if best_epoch is not None else len(history.epochs)
    validation_accuracy = (
        history.epochs[selected_epoch - 1].get("val_accuracy") if history.epochs else None
    )

    # The first and only read of the test split: every choice above is made.
    evaluation = evaluate_predictions(
        predict_in_batches(lambda x: _probabilities(model, x), data.test_images),
        data.test_labels,
    )
    print(f"{architecture}: test accuracy {evaluation['test_accuracy']:.4f}")

    from training.export import (
        build_metadata,
        export_saved_model,
        version_dir,
        write_metadata,
    )

    target = version_dir(out_dir, architecture, config.version)
    exported = with_input_scale(model, architecture)
    _check_same_function(model, exported, fit.validation_images[:256])
    export_saved_model(exported, target)
    _check_export(exported, target, fit.validation_images[:64])
    seconds = [e["seconds"] for e in history.epochs]
    metadata = build_metadata(
        exported,
        name=architecture,
        version=config.version,
        architecture=architecture,
        epochs=len(history.epochs),
        # The median: the first epoch includes compiling the step (on a GPU with JAX about
        # 30 s, against 1.4 s for each epoch after it).
        seconds_per_epoch=round(statistics.median(seconds), 2) if seconds else None,
        data_source=data.source,
        evaluation={
            **evaluation,
            "best_epoch": selected_epoch,
            "restored_best_weights": best_epoch is not None,
            "validation_accuracy": validation_accuracy,
            "validation": fit.validation,
            "training": _recipe(architecture, config, fit),
            "trained_on": read_trained_on(run_dir / HISTORY_FILE),
        },
    )
    write_metadata(target, metadata)
    shutil.copyfile(run_dir / HISTORY_FILE, target / HISTORY_FILE)
    plot_accuracy(
        {architecture: history.epochs},
        target / FIGURE_FILE,
        title=f"{architecture} VGG on CIFAR-10",
        restored={architecture: selected_epoch} if best_epoch is not None else None,
    )
    print(f"Exported {architecture} to {target}")
    return target


def _fit(
    model: keras.Model,
    architecture: str,
    data: FitData,
    config: TrainingConfig,
    run_dir: Path,
    history: HistoryRecorder,
    best: BestWeights,
) -> None:
    callbacks: list[keras.callbacks.Callback] = [history, best]
    if config.early_stopping is not None:
        callbacks.append(ResumableEarlyStopping(config.early_stopping, history))
    callbacks.append(FinalWeights(run_dir / LAST_WEIGHTS_FILE))
    # Last, so an epoch is backed up only once its history and best weights are on disk, and
    # the backup is deleted only once the final weights are.
    callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir / "backup")))

    print(f"Training {architecture}: {model.count_params():,} parameters, {config}")
    print(f"On {history.trained_on}")
    model.fit(
        data.train_images,
        data.train_labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(data.validation_images, data.validation_labels),
        callbacks=callbacks,
        verbose=2 if not _interactive() else 1,
    )


def _probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(images, training=False)))


def checkpoint_run_dir(
    architecture: str, data: Cifar10, config: TrainingConfig, fit: FitData | None = None
) -> Path:
    """The checkpoint folder of one run: another recipe, data or split never resumes it."""
    recipe = _recipe(architecture, config, fit or fit_data(data, config))
    key = f"{data.fingerprint}|{recipe}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return config.checkpoint_dir / f"{architecture}-v{config.version}-{digest}"


def training_input(architecture: str, config: TrainingConfig) -> str:
    """The input scale this architecture trains on: the configured one, else its default."""
    return config.input_scale or DEFAULT_INPUT_SCALE[architecture]


def _recipe(architecture: str, config: TrainingConfig, fit: FitData) -> dict[str, object]:
    # The split is identified by its content digest, so its size and seed key the run too.
    validation = {key: fit.validation[key] for key in ("split", "images", "sha256")}
    return {
        "validation": validation,
        "optimizer": "adam",
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "max_epochs": config.epochs,
        "early_stopping_patience": config.early_stopping,
        "seed": config.seed,
        "training_input": training_input(architecture, config),
    }


def _check_same_function(trained: keras.Model, exported: keras.Model, images: np.ndarray) -> None:
    """Folding the input scale into the first layer must not change the predictions."""
    batch = images.astype(np.float32)
    difference = float(
        np.abs(_probabilities(trained, batch) - _probabilities(exported, batch)).max(initial=0.0)
    )
    if difference > 1e-4:
        raise RuntimeError(f"folding the input scale changed the output by {difference:.2e}")


def _check_export(model: keras.Model, path: Path, images: np.ndarray) -> None:
    """Reload the SavedModel without project code and insist it matches the Keras model."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    batch = images.astype(np.float32)
    signature = loaded.signatures[SIGNATURE_NAME]
    served = signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()
    difference = float(np.abs(served - _probabilities(model, batch)).max(initial=0.0))
    if difference > 1e-5:
        raise RuntimeError(f"exported model differs from the Keras model by {difference:.2e}")


def _interactive() -> bool:
    import sys

    return sys.stdout.isatty()


def plot_all(out_dir: Path, version: int) -> Path | None:
    """The combined figure of every model's history at ``version`` under ``out_dir``."""
    from sepconv_contract import read_metadata
    from training.export import version_dir

    histories: dict[str, list[dict[str, float]]] = {}
    restored: dict[str, int] = {}
    for name in ARCHITECTURES:
        folder = version_dir(out_dir, name, version)
        epochs = read_history(folder / HISTORY_FILE)
        if not epochs:
            continue
        histories[name] = epochs
        metadata = read_metadata(folder)
        if metadata and metadata.restored_best_weights and metadata.best_epoch:
            restored[name] = metadata.best_epoch
    if not histories:
        return None
    path = out_dir / FIGURE_FILE
    plot_accuracy(
        histories, path, title="Regular vs separable VGG on CIFAR-10", restored=restored
    )
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sepconv-train`` options."""
    defaults = TrainingConfig()
    parser.add_argument("--model", choices=[*ARCHITECTURES, "all"], default="all")
    parser.add_argument(
        "--data",
        default="keras",
        help="'keras' (downloads) or a CIFAR-10 directory (image folders or python batches)",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a lower val_loss and restore the best weights",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train and validate on a random N images of each split",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--version", type=int, default=defaults.version)
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=defaults.checkpoint_dir,
        help="where per-epoch checkpoints live; a rerun resumes from them",
    )
    parser.add_argument(
        "--input-scale",
        choices=list(TRAINING_SCALES),
        default=defaults.input_scale,
        help="pixels seen in training: raw 0-255 (as the tutorial; the default for separable) "
        "or unit [0, 1] (the default for regular); the exported model takes raw pixels either "
        "way",
    )
    parser.add_argument(
        "--validation",
        choices=["train", "test"],
        default=defaults.validation,
        help="validation data for early stopping and the restored epoch: 'train' holds out "
        "part of the training images (the default; the test split is then read once, after "
        "training); 'test' is the tutorial's protocol, whose test accuracy is biased",
    )
    parser.add_argument(
        "--validation-per-class",
        type=int,
        default=None,
        metavar="N",
        help="training images per class held out for validation (default 500, 10%% of "
        "CIFAR-10; on smaller data 10%% of the smallest class)",
    )
    parser.add_argument(
        "--validation-seed", type=int, default=defaults.validation_seed,
        help="seed choosing the held-out validation images",
    )  # fmt: skip
    parser.add_argument(
        "--fresh", action="store_true", help="discard this run's checkpoints instead of resuming"
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="train (or resume) and keep the checkpoint without exporting, e.g. with "
        "KERAS_BACKEND=jax on a GPU host without TensorFlow; the same command without it, "
        "run where TensorFlow is installed with the checkpoint folder copied over, exports "
        "the finished run without training it again",
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="export a finished run (e.g. one trained elsewhere with --train-only) and fail, "
        "naming the checkpoint folder it expected, rather than train when there is none",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx beside each SavedModel (needs the onnx extra)",
    )
    parser.add_argument(
        "--runtimes",
        action="store_true",
        help="also write the LiteRT fp32 and int8 and ONNX Runtime int8 artifacts, calibrated "
        "on training images and scored on the test split (implies --onnx; needs the onnx and "
        "litert extras); sepconv-export does the same for models already exported",
    )


def run(args: argparse.Namespace) -> int:
    """Train the chosen models and export them; returns the process exit status."""
    for name, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise SystemExit(f"sepconv-train: {name} must be at least 1, got {value}")
    config = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        early_stopping=args.early_stopping,
        seed=args.seed,
        version=args.version,
        input_scale=args.input_scale,
        checkpoint_dir=args.checkpoint_dir.expanduser(),
        export=not args.train_only,
        train=not args.export_only,
        validation=args.validation,
        validation_per_class=args.validation_per_class,
        validation_seed=args.validation_seed,
    )
    args.onnx = args.onnx or args.runtimes
    if args.train_only and (args.export_only or args.onnx):
        other = "--export-only" if args.export_only else "--onnx or --runtimes"
        raise SystemExit(f"sepconv-train: --train-only exports nothing; drop {other}")
    if args.export_only and args.fresh:
        raise SystemExit("sepconv-train: --fresh would discard the run --export-only exports")
    if config.export and keras.backend.backend() != "tensorflow":
        raise SystemExit(
            f"sepconv-train: exporting a SavedModel needs Keras' TensorFlow backend, not "
            f"{keras.backend.backend()!r}; add --train-only here and run the same command "
            f"without it where TensorFlow is installed"
        )
    data = load_cifar10(args.data)
    if args.limit is not None:
        data = data.limited(args.limit, seed=args.seed)
    # The test split is not counted here: it is read once, for the final evaluation.
    print(f"Data: {data.source}: {len(data.train_labels)} training images")
    architectures = ARCHITECTURES if args.model == "all" else (args.model,)
    for architecture in architectures:
        if args.fresh:
            shutil.rmtree(checkpoint_run_dir(architecture, data, config), ignore_errors=True)
        target = train_one(architecture, data, args.out, config)
        if target is not None and args.onnx:
            from training.onnx_export import export_onnx

            print(f"Wrote {export_onnx(target)}")
    if not config.export:
        return 0
    if len(architectures) > 1:
        # Both networks on the same test images: the paired comparison goes in each metadata.
        from training.evaluate import describe_pair, evaluate_models
        from training.export import version_dir

        evaluated = evaluate_models(
            [version_dir(args.out, name, config.version) for name in architectures], data
        )
        for line in describe_pair(next(iter(evaluated.values()))):
            print(line)
    if args.runtimes:
        # After the evaluation above: the artifacts are scored on the same test images, once
        # the networks are final, and calibrated on training images only.
        from training.export import version_dir as exported_dir
        from training.runtime_export import describe, export_runtimes

        for name in architectures:
            artifacts = export_runtimes(exported_dir(args.out, name, config.version), data)
            for line in describe(name, artifacts):
                print(line)
    figure = plot_all(args.out, config.version)
    if figure is not None:
        print(f"Combined accuracy figure: {figure}")
    return 0
