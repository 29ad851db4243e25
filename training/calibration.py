"""The images int8 quantization measures activation ranges on: a few hundred TRAINING images.

Never test images: a quantizer calibrated on the test split has seen it, and the accuracy the
export then records for the int8 artifact would no longer be an honest estimate. Only
``Cifar10.train_images`` is read here (``Cifar10.test_reads`` stays 0, which a test checks).
When the model's metadata records its held-out validation split, that split is rebuilt, checked
against its digest and left out too, so calibration draws from the images the network fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sepconv_contract import CLASS_NAMES, ValidationSplitInfo
from sepconv_contract.metadata import CalibrationInfo
from training.data import Cifar10, Images, array_digest, split_validation

# 50 a class: ranges settle well before this (the int8 figures are within a few tenths of a
# point of fp32), and each image costs one fp32 forward pass per artifact at export.
DEFAULT_CALIBRATION_IMAGES = 500


@dataclass(frozen=True)
class CalibrationSet:
    """The calibration images (uint8, raw pixels) and what the metadata records about them."""

    images: Images
    info: CalibrationInfo

    def batches(self, batch_size: int = 1) -> list[np.ndarray]:
        """The images as float32 batches of raw 0-255 pixels, as every engine takes them."""
        return [
            self.images[start : start + batch_size].astype(np.float32)
            for start in range(0, len(self.images), batch_size)
        ]


def calibration_set(
    data: Cifar10,
    validation: ValidationSplitInfo | None = None,
    images: int = DEFAULT_CALIBRATION_IMAGES,
    seed: int = 0,
) -> CalibrationSet:
    """``images`` training images, the same number from each class, drawn with ``seed``."""
    pool_images, pool_labels = data.train_images, data.train_labels
    excludes_validation = False
    if (
        validation is not None
        and validation.split == "train"
        and validation.per_class is not None
        and validation.seed is not None
    ):
        split = split_validation(
            data.train_images, data.train_labels, validation.per_class, validation.seed
        )
        # Only a split that is the recorded one, image for image, may be left out: other data
        # (a --limit subset, another copy) would hold out the wrong images.
        if split.digest == validation.sha256:
            pool_images, pool_labels = split.train_images, split.train_labels
            excludes_validation = True
    per_class = max(1, images // len(CLASS_NAMES))
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.permutation(np.flatnonzero(pool_labels == label))[:per_class]
            for label in range(len(CLASS_NAMES))
        ]
    )
    chosen.sort()
    selected = pool_images[chosen]
    if len(selected) == 0:
        raise ValueError("calibration needs training images; the data set has none")
    return CalibrationSet(
        selected,
        CalibrationInfo(
            split="train",
            images=len(selected),
            sha256=array_digest(selected),
            excludes_validation=excludes_validation,
            seed=seed,
        ),
    )
