"""The honest protocol: validation is carved from the training images, the test split is read
once, after training, and every accuracy carries its uncertainty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sepconv_contract import CLASS_NAMES, read_metadata
from tests.helpers.datasets import class_colour_images
from training.data import Cifar10, DatasetError, split_validation, validation_per_class
from training.statistics import mcnemar_exact_p, paired_comparison, wilson_interval


def generated_cifar10(per_class_train: int, per_class_test: int, on_test_read: object) -> Cifar10:
    """A tiny CIFAR-10 whose test split is handed out by ``on_test_read`` (which records it)."""
    images = [class_colour_images(per_class_train, label, seed=label) for label in range(10)]
    labels = np.repeat(np.arange(10, dtype=np.int64), per_class_train)
    test_images = np.concatenate(
        [class_colour_images(per_class_test, label, seed=100 + label) for label in range(10)]
    )
    test_labels = np.repeat(np.arange(10, dtype=np.int64), per_class_test)

    def load_test() -> tuple[np.ndarray, np.ndarray]:
        on_test_read()  # type: ignore[operator]
        return test_images, test_labels

    return Cifar10(np.concatenate(images), labels, load_test, "generated (tests)")


def test_split_validation_is_stratified_seeded_and_disjoint() -> None:
    labels = np.repeat(np.arange(10, dtype=np.int64), 20)
    images = np.arange(200 * 32 * 32 * 3, dtype=np.int64).reshape(200, 32, 32, 3).astype(np.uint8)
    images[:, 0, 0, 0] = np.arange(200)  # every image distinct
    split = split_validation(images, labels, per_class=4, seed=3)
    assert np.bincount(split.validation_labels).tolist() == [4] * 10
    assert len(split.train_labels) == 160
    held = {int(v) for v in split.validation_images[:, 0, 0, 0]}
    kept = {int(v) for v in split.train_images[:, 0, 0, 0]}
    assert not held & kept
    again = split_validation(images, labels, per_class=4, seed=3)
    assert again.digest == split.digest
    assert split_validation(images, labels, per_class=4, seed=4).digest != split.digest
    assert split.describe() == {
        "split": "train",
        "images": 40,
        "per_class": 4,
        "seed": 3,
        "sha256": split.digest,
    }


def test_validation_per_class_defaults_to_500_and_refuses_emptying_a_class() -> None:
    assert validation_per_class(np.repeat(np.arange(10), 5000), None) == 500
    assert validation_per_class(np.repeat(np.arange(10), 30), None) == 3
    with pytest.raises(DatasetError, match="between 1 and 29"):
        validation_per_class(np.repeat(np.arange(10), 30), 30)


def test_wilson_interval_matches_the_formula_and_stays_in_range() -> None:
    interval = wilson_interval(7584, 10_000)
    assert interval is not None
    # Wilson's score interval for 75.84% of 10,000: 75.0% to 76.7% (about +/- 0.84 points).
    assert interval.low == pytest.approx(0.74993, abs=1e-4)
    assert interval.high == pytest.approx(0.76667, abs=1e-4)
    assert wilson_interval(0, 10).low == 0.0  # type: ignore[union-attr]
    assert wilson_interval(10, 10).high == 1.0  # type: ignore[union-attr]
    assert wilson_interval(0, 0) is None


def test_mcnemar_exact_p_is_the_two_sided_binomial_tail() -> None:
    # 10 against 2 discordant pairs: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12.
    assert mcnemar_exact_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact_p(2, 10) == mcnemar_exact_p(10, 2)
    assert mcnemar_exact_p(5, 5) == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(900, 700) < 1e-5


def test_paired_comparison_counts_discordant_images() -> None:
    this = np.array([True, True, False, False, True])
    other = np.array([True, False, True, False, False])
    pair = paired_comparison("other", this, other)
    assert (pair.both_correct, pair.only_this_correct, pair.only_other_correct) == (1, 2, 1)
    assert pair.both_wrong == 1 and pair.images == 5
    assert pair.accuracy_difference == pytest.approx(0.2)
    assert pair.difference_interval.low < 0.2 < pair.difference_interval.high
    with pytest.raises(ValueError, match="same images"):
        paired_comparison("other", this, other[:3])


@pytest.mark.slow
def test_training_never_reads_the_test_split_before_the_final_evaluation(tmp_path: Path) -> None:
    from training.train import TrainingConfig, checkpoint_run_dir, train_one

    config = TrainingConfig(epochs=2, batch_size=16, early_stopping=1, checkpoint_dir=tmp_path)
    reads: list[dict[str, object]] = []
    data: Cifar10

    def on_test_read() -> None:
        run_dir = checkpoint_run_dir("separable", data, config)
        history = json.loads((run_dir / "history.json").read_text())["epochs"]
        # Recorded at the moment of the read: training (every epoch, the final weights) is over.
        reads.append({"finished": (run_dir / "last.weights.h5").is_file(), "epochs": len(history)})

    data = generated_cifar10(per_class_train=12, per_class_test=3, on_test_read=on_test_read)
    target = train_one("separable", data, tmp_path / "models", config)
    assert target is not None
    assert data.test_reads == 1
    assert reads == [{"finished": True, "epochs": reads[0]["epochs"]}]
    assert reads[0]["epochs"] in (1, 2)  # type: ignore[operator]

    metadata = read_metadata(target)
    assert metadata is not None and metadata.validation is not None
    assert metadata.validation.split == "train" and metadata.validation.protocol == "held-out"
    # 10% of the 12 images of each class: 1 per class.
    assert metadata.validation.images == 10 and metadata.validation.per_class == 1
    assert len(metadata.validation.sha256) == 64
    assert metadata.test_images == 30
    assert metadata.test_accuracy_interval is not None
    assert metadata.per_class_interval is not None
    assert set(metadata.per_class_interval) == set(CLASS_NAMES)


@pytest.mark.slow
def test_tutorial_protocol_is_labelled_as_such(tmp_path: Path) -> None:
    from training.train import TrainingConfig, train_one

    config = TrainingConfig(epochs=1, batch_size=16, checkpoint_dir=tmp_path, validation="test")
    reads: list[int] = []
    data = generated_cifar10(
        per_class_train=6, per_class_test=2, on_test_read=lambda: reads.append(1)
    )
    target = train_one("separable", data, tmp_path / "models", config)
    assert target is not None and reads == [1]
    metadata = read_metadata(target)
    assert metadata is not None and metadata.validation is not None
    assert metadata.validation.split == "test" and metadata.validation.protocol == "tutorial"
    assert "TEST split" in (metadata.validation.warning or "")
