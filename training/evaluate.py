"""Evaluate every exported model on the CIFAR-10 test split and update its metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data import load_cifar10
from training.evaluation import evaluate_predictions, predict_in_batches
from training.export import METADATA_FILE, read_metadata, write_metadata


def latest_versions(models_dir: Path) -> list[Path]:
    """The highest numeric version folder of each model under ``models_dir``."""
    found = []
    for model_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        if model_dir.name.startswith("."):
            continue
        versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if versions:
            found.append(max(versions, key=lambda p: int(p.name)))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sepconv-evaluate`` options."""
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data", default="keras")
    parser.add_argument("--limit", type=int, default=None, metavar="N")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a table, and rewrite each model's ``metadata.json``."""
    if not args.models.is_dir():
        raise SystemExit(f"sepconv-evaluate: model directory {args.models} does not exist")
    versions = latest_versions(args.models)
    if not versions:
        raise SystemExit(f"sepconv-evaluate: no <name>/<version>/ folders in {args.models}")
    data = load_cifar10(args.data)
    if args.limit is not None:
        data = data.limited(args.limit)
    print(f"{'model':<12} {'version':>7} {'test accuracy':>14}  weakest class")
    for path in versions:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]

        def predict(batch: np.ndarray, signature: object = signature) -> np.ndarray:
            outputs = signature(image=tf.constant(batch))  # type: ignore[operator]
            return np.asarray(outputs["probabilities"])

        evaluation = evaluate_predictions(
            predict_in_batches(predict, data.test_images), data.test_labels
        )
        metadata = read_metadata(path) if (path / METADATA_FILE).is_file() else {}
        metadata.update(evaluation)
        metadata["evaluated_on"] = data.source
        write_metadata(path, metadata)
        per_class = {k: v for k, v in evaluation["per_class_accuracy"].items() if v is not None}
        weakest = min(per_class, key=lambda k: per_class[k]) if per_class else "-"
        print(
            f"{path.parent.name:<12} {path.name:>7} {evaluation['test_accuracy']:>14.4f}  "
            f"{weakest} ({per_class.get(weakest, 0):.3f})"
        )
    return 0
