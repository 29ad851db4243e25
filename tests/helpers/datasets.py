"""Tiny generated CIFAR-10 data sets, in every layout ``training.data`` reads."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from sepconv_contract import CLASS_NAMES

PER_CLASS_TRAIN = 3
PER_CLASS_TEST = 2


def class_colour_images(count: int, label: int, seed: int) -> np.ndarray:
    """32x32 RGB images whose dominant colour depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    base = np.array([(label * 25) % 256, (label * 70) % 256, (255 - label * 25) % 256])
    noise = rng.integers(-30, 30, size=(count, 32, 32, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_image_folders(root: Path, per_class_train: int, per_class_test: int) -> Path:
    """An image-folder CIFAR-10 tree: ``root/{train,test}/<class>/*.png``."""
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, pixels in enumerate(class_colour_images(count, label, seed=label)):
                suffix = ".png" if index % 2 else ".jpg"
                Image.fromarray(pixels).save(folder / f"{index:04d}{suffix}")
    return root


def write_python_batches(root: Path, per_batch: int) -> Path:
    """The official python batches layout with ``per_batch`` images in each file."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.integers(0, 10, size=per_batch).tolist()
        images = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        data = images.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        with (root / name).open("wb") as handle:
            pickle.dump({b"data": data, b"labels": labels}, handle)
    return root
