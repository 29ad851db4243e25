"""The trained models the repository ships: they load, match the tutorial, and are good enough."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from PIL import Image

from sepconv_contract import CLASS_NAMES, read_metadata
from tests.helpers import REPOSITORY
from tests.helpers.tools import require_file

MODELS = REPOSITORY / "models"
# The real CIFAR-10 JPEG copy, where this workplace keeps it beside the repository. Users and
# CI machines without it skip the one test that needs it; none of it is ever committed.
CIFAR10_ARCHIVE = Path(
    os.environ.get(
        "SEPCONV_CIFAR10_ARCHIVE", REPOSITORY.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
    )
)
EXPECTED_PARAMETERS = {"regular": 1_186_378, "separable": 174_821}
# A floor that only a trained network clears (an untrained one scores about 10%). The target of
# the held-out protocol was 72% for each network; the CPU-trained separable network reached
# 68.7% (README, Results): reported as missed, not hidden by picking among runs on test figures.
MINIMUM_TEST_ACCURACY = 0.65


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_loads_with_signature_and_parameters(name: str) -> None:
    version = MODELS / name / "1"
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ["image"] and inputs["image"].shape.as_list() == [None, 32, 32, 3]
    assert list(signature.structured_outputs) == ["probabilities"]
    assert sum(int(np.prod(v.shape)) for v in loaded.variables) == EXPECTED_PARAMETERS[name]
    probabilities = signature(image=tf.zeros([1, 32, 32, 3]))["probabilities"].numpy()
    assert probabilities.shape == (1, 10) and abs(float(probabilities.sum()) - 1.0) < 1e-4


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_metadata_records_evaluation(name: str) -> None:
    version = MODELS / name / "1"
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["parameters"]["total"] == EXPECTED_PARAMETERS[name]
    assert metadata["test_images"] == 10_000
    confusion = np.asarray(metadata["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10_000
    assert abs(np.trace(confusion) / 10_000 - metadata["test_accuracy"]) < 1e-9
    history = json.loads((version / "history.json").read_text())["epochs"]
    assert len(history) == metadata["epochs"] >= 1
    # Seconds per epoch mean nothing without the machine they were measured on.
    assert metadata["trained_on"] and metadata["seconds_per_epoch"] > 0


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_was_selected_on_a_held_out_validation_split(name: str) -> None:
    metadata = read_metadata(MODELS / name / "1")
    assert metadata is not None and metadata.validation is not None
    # Early stopping and the restored epoch saw 5,000 training images held out, never the test
    # split; so the validation figure at that epoch is not the test figure.
    assert metadata.validation.split == "train" and metadata.validation.protocol == "held-out"
    assert metadata.validation.images == 5_000 and metadata.validation.per_class == 500
    assert metadata.restored_best_weights and metadata.best_epoch is not None
    history = json.loads((MODELS / name / "1" / "history.json").read_text())["epochs"]
    restored = history[metadata.best_epoch - 1]
    assert restored["val_accuracy"] == metadata.validation_accuracy
    assert metadata.validation_accuracy != metadata.test_accuracy
    interval = metadata.test_accuracy_interval
    assert interval is not None and interval.method == "wilson"
    assert interval.low < (metadata.test_accuracy or 0) < interval.high


def test_committed_models_carry_their_paired_comparison() -> None:
    regular, separable = (read_metadata(MODELS / name / "1") for name in ("regular", "separable"))
    assert regular is not None and separable is not None
    (pair,) = regular.paired or []
    (mirror,) = separable.paired or []
    assert pair.other == "separable" and mirror.other == "regular" and pair.images == 10_000
    assert pair.only_this_correct == mirror.only_other_correct
    assert pair.mcnemar_p == mirror.mcnemar_p
    difference = (regular.test_accuracy or 0) - (separable.test_accuracy or 0)
    assert abs(pair.accuracy_difference - difference) < 1e-6


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_reaches_target_accuracy(name: str) -> None:
    metadata = json.loads((MODELS / name / "1" / "metadata.json").read_text())
    assert metadata["test_accuracy"] >= MINIMUM_TEST_ACCURACY


def test_committed_models_folder_is_small_and_has_no_checkpoints() -> None:
    files = [p for p in MODELS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 1024 * 1024
    assert not [p for p in files if ".checkpoints" in p.parts or p.suffix == ".npz"]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_stores_each_weight_once(name: str) -> None:
    # float32 weights: 4 bytes each, plus a little framing; a doubled export is twice this.
    data = (MODELS / name / "1" / "variables").glob("variables.data-*")
    assert sum(p.stat().st_size for p in data) < 1.1 * 4 * EXPECTED_PARAMETERS[name]


@pytest.fixture(scope="module")
def cifar10_test_split() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The 10,000 test images and labels, decoded as ``sepconv-train`` decodes them."""
    require_file("cifar10-archive", CIFAR10_ARCHIVE, "set SEPCONV_CIFAR10_ARCHIVE")
    images, labels = [], []
    with tarfile.open(CIFAR10_ARCHIVE) as archive:
        for member in archive:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != "test":
                continue
            data = archive.extractfile(member)
            assert data is not None
            with Image.open(io.BytesIO(data.read())) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(CLASS_NAMES.index(parts[-2]))
    return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_scores_what_its_metadata_says(
    name: str, cifar10_test_split: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    # The weights, not just the metadata, reach the accuracy: scored again on the real test set.
    images, labels = cifar10_test_split
    assert len(labels) == 10_000
    serve = tf.saved_model.load(str(MODELS / name / "1")).signatures["serving_default"]
    predicted = np.concatenate(
        [
            serve(image=tf.constant(images[start : start + 500]))["probabilities"]
            .numpy()
            .argmax(axis=1)
            for start in range(0, len(images), 500)
        ]
    )
    accuracy = float((predicted == labels).mean())
    metadata = json.loads((MODELS / name / "1" / "metadata.json").read_text())
    # Another CPU may round a borderline image the other way: two images of slack, no more.
    assert abs(accuracy - metadata["test_accuracy"]) <= 2 / 10_000
    assert accuracy >= MINIMUM_TEST_ACCURACY


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_committed_model_calls_the_readme_example_a_cat(name: str) -> None:
    # The README's first request and service/static/examples/README.md say both shipped
    # networks label examples/cat.jpg a cat; decoded by the service's own path.
    from service.core.imaging import decode_image

    data = (REPOSITORY / "service" / "static" / "examples" / "cat.jpg").read_bytes()
    pixels = decode_image(data, max_pixels=40_000_000).pixels
    loaded = tf.saved_model.load(str(MODELS / name / "1"))
    batch = tf.constant(np.asarray(pixels, dtype=np.float32)[None])
    probabilities = loaded.signatures["serving_default"](image=batch)["probabilities"].numpy()[0]
    assert CLASS_NAMES[int(np.argmax(probabilities))] == "cat"
