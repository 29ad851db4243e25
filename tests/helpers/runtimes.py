"""Every runtime's artifact of the fixture models, and the real data the committed ones need.

``runtime_models`` copies the session's exported SavedModels and writes beside each the ONNX,
LiteRT and int8 artifacts ``sepconv-export`` writes, calibrated on a generated training split
whose test split counts its reads. ``real_test_sample`` decodes part of the real CIFAR-10 test
split from the archive (skipped locally, failed in CI, when it is missing).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt
from PIL import Image

from sepconv_contract import CLASS_NAMES
from tests.helpers import REPOSITORY
from tests.helpers.datasets import class_colour_images
from tests.helpers.tools import require_file
from training.data import Cifar10

# The real CIFAR-10 JPEG copy beside the repository (as tests/training/test_committed_models.py
# and .ci/run find it); none of it is ever committed.
CIFAR10_ARCHIVE = Path(
    os.environ.get(
        "SEPCONV_CIFAR10_ARCHIVE", REPOSITORY.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
    )
)
ARTIFACT_RUNTIMES = ("onnxruntime", "onnxruntime-int8", "litert", "litert-int8")


@dataclass
class CountedReads:
    """How often a generated data set's test split was handed out."""

    reads: list[str] = field(default_factory=list)


def generated_cifar10(per_class_train: int, per_class_test: int, counter: CountedReads) -> Cifar10:
    """A tiny CIFAR-10 of class-coloured images whose test loader records each read."""
    train = np.concatenate(
        [class_colour_images(per_class_train, label, seed=label) for label in range(10)]
    )
    test = np.concatenate(
        [class_colour_images(per_class_test, label, seed=100 + label) for label in range(10)]
    )

    def load_test() -> tuple[np.ndarray, np.ndarray]:
        counter.reads.append("test")
        return test, np.repeat(np.arange(10, dtype=np.int64), per_class_test)

    labels = np.repeat(np.arange(10, dtype=np.int64), per_class_train)
    return Cifar10(train, labels, load_test, "generated (tests)")


def write_runtime_models(exported_models: Path, root: Path) -> tuple[Path, CountedReads]:
    """Copies of the exported models with every runtime's artifact written and scored."""
    from training.runtime_export import export_runtimes

    counter = CountedReads()
    data = generated_cifar10(per_class_train=20, per_class_test=5, counter=counter)
    for name in ("regular", "separable"):
        shutil.copytree(exported_models / name, root / name)
        export_runtimes(root / name / "1", data, calibration_images=50)
    return root, counter


def real_test_sample(
    per_class: int,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The first ``per_class`` test images of each class from the real archive."""
    require_file("cifar10-archive", CIFAR10_ARCHIVE, "set SEPCONV_CIFAR10_ARCHIVE")
    images: list[np.ndarray] = []
    labels: list[int] = []
    taken = dict.fromkeys(CLASS_NAMES, 0)
    with tarfile.open(CIFAR10_ARCHIVE) as archive:
        for member in archive:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != "test":
                continue
            name = parts[-2]
            if taken.get(name, per_class) >= per_class:
                continue
            data = archive.extractfile(member)
            assert data is not None
            with Image.open(io.BytesIO(data.read())) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(CLASS_NAMES.index(name))
            taken[name] += 1
            if all(count >= per_class for count in taken.values()):
                break
    return np.stack(images), np.asarray(labels, dtype=np.int64)
