"""Test-set accuracy, per-class accuracy and confusion matrix of a classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from sepconv_contract import CLASS_NAMES
from training.statistics import wilson_interval

Predictor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def predict_in_batches(
    predict: Predictor, images: npt.NDArray[np.uint8], batch_size: int = 500
) -> npt.NDArray[np.float32]:
    """Class probabilities for every image, computed ``batch_size`` images at a time."""
    outputs = [
        predict(images[start : start + batch_size].astype(np.float32))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, len(CLASS_NAMES)), np.float32)


def evaluate_predictions(
    probabilities: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and confusion matrix (rows: true class, columns: predicted)."""
    num_classes = len(CLASS_NAMES)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class_totals = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / per_class_totals[i]) if per_class_totals[i] else None)
        for i, name in enumerate(CLASS_NAMES)
    }
    correct = int(np.trace(confusion))
    overall = wilson_interval(correct, len(labels))
    return {
        "test_accuracy": float((predicted == labels).mean()) if len(labels) else None,
        "test_accuracy_interval": overall.model_dump() if overall else None,
        "test_images": int(len(labels)),
        "per_class_accuracy": per_class,
        "per_class_interval": {
            name: (
                interval.model_dump()
                if (interval := wilson_interval(int(confusion[i, i]), int(per_class_totals[i])))
                else None
            )
            for i, name in enumerate(CLASS_NAMES)
        },
        "confusion_matrix": confusion.tolist(),
    }
