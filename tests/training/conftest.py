"""Fixtures of the training suites: tiny CIFAR-10 trees in both layouts the loader reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.datasets import (
    PER_CLASS_TEST,
    PER_CLASS_TRAIN,
    write_image_folders,
    write_python_batches,
)


@pytest.fixture
def image_folder_dataset(tmp_path: Path) -> Path:
    return write_image_folders(tmp_path / "cifar10", PER_CLASS_TRAIN, PER_CLASS_TEST)


@pytest.fixture
def python_batches_dataset(tmp_path: Path) -> Path:
    return write_python_batches(tmp_path / "cifar-10-batches-py", per_batch=4)
