"""Evaluate every exported model on the CIFAR-10 test split and update its metadata.

Each accuracy comes with its 95% Wilson interval; every pair of models scored on the same
images is compared with McNemar's exact test and an interval for the accuracy difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from sepconv_contract import (
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    ModelMetadata,
    latest_versions,
    read_metadata,
    write_metadata,
)
from training.data import Cifar10, load_cifar10
from training.evaluation import evaluate_predictions, predict_in_batches
from training.statistics import paired_comparison


def saved_model_probabilities(path: Path, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The SavedModel's class probabilities for ``images``, read from its serving signature."""
    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE_NAME]

    def predict(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME])

    return predict_in_batches(predict, images)


def evaluate_models(versions: list[Path], data: Cifar10) -> dict[str, ModelMetadata]:
    """Score each version folder on the test split and compare every pair; writes metadata.

    The test split is read here, and only here: after training, for the final estimate.
    """
    correct: dict[str, npt.NDArray[np.bool_]] = {}
    results: dict[str, tuple[Path, ModelMetadata]] = {}
    for path in versions:
        probabilities = saved_model_probabilities(path, data.test_images)
        evaluation = evaluate_predictions(probabilities, data.test_labels)
        name = path.parent.name
        metadata = read_metadata(path) or ModelMetadata(name=name, version=int(path.name))
        updated = ModelMetadata.model_validate(
            {**metadata.model_dump(), **evaluation, "evaluated_on": data.source, "paired": None}
        )
        correct[name] = probabilities.argmax(axis=1) == data.test_labels
        results[name] = (path, updated)
    for name, (path, metadata) in results.items():
        pairs = [
            paired_comparison(other, correct[name], correct[other])
            for other in results
            if other != name
        ]
        metadata.paired = pairs or None
        write_metadata(path, metadata)
    return {name: metadata for name, (_, metadata) in results.items()}


def describe(metadata: ModelMetadata) -> str:
    """One table row: accuracy with its interval and the weakest class."""
    interval = metadata.test_accuracy_interval
    accuracy = metadata.test_accuracy or 0.0
    span = f"[{interval.low:.2%}, {interval.high:.2%}]" if interval else ""
    per_class = {k: v for k, v in (metadata.per_class_accuracy or {}).items() if v is not None}
    weakest = min(per_class, key=lambda k: per_class[k]) if per_class else "-"
    return (
        f"{metadata.name:<12} {metadata.version:>7} {accuracy:>9.2%} {span:>18}  "
        f"{weakest} ({per_class.get(weakest, 0):.1%})"
    )


def describe_pair(metadata: ModelMetadata) -> list[str]:
    """A line per comparison of ``metadata`` with another model on the same images."""
    lines = []
    for pair in metadata.paired or []:
        interval = pair.difference_interval
        lines.append(
            f"{metadata.name} - {pair.other}: {pair.accuracy_difference:+.2%} "
            f"(95% CI {interval.low:+.2%} to {interval.high:+.2%}); only {metadata.name} right "
            f"on {pair.only_this_correct}, only {pair.other} on {pair.only_other_correct} of "
            f"{pair.images}; McNemar exact p = {pair.mcnemar_p:.2g}"
        )
    return lines


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
    evaluated = evaluate_models(versions, data)
    print(f"{'model':<12} {'version':>7} {'accuracy':>9} {'95% CI (Wilson)':>18}  weakest class")
    for metadata in evaluated.values():
        print(describe(metadata))
    # Each pair once: the first model against the others.
    first = next(iter(evaluated.values()))
    for line in describe_pair(first):
        print(line)
    return 0
