"""``sepconv-export``: every runtime's artifact beside the SavedModel, calibrated on training
images only, scored on the test split and recorded in ``metadata.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sepconv_contract import read_metadata
from service.core.engines import open_engine
from tests.helpers import REPOSITORY
from tests.helpers.runtimes import (
    ARTIFACT_RUNTIMES,
    CountedReads,
    generated_cifar10,
    real_test_sample,
    write_runtime_models,
)
from training.calibration import calibration_set
from training.data import split_validation

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

COMMITTED = REPOSITORY / "models"
FILES = ("model.onnx", "model_int8.onnx", "model.tflite", "model_int8.tflite")


@pytest.fixture(scope="module")
def runtime_models(
    exported_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, CountedReads]:
    return write_runtime_models(exported_models, tmp_path_factory.mktemp("runtime-models"))


def test_calibration_draws_training_images_only_and_leaves_validation_out() -> None:
    counter = CountedReads()
    data = generated_cifar10(per_class_train=30, per_class_test=4, counter=counter)
    split = split_validation(data.train_images, data.train_labels, per_class=3, seed=0)
    validation = {
        "split": "train",
        "images": 30,
        "sha256": split.digest,
        "protocol": "held-out",
        "per_class": 3,
        "seed": 0,
    }
    from sepconv_contract import ValidationSplitInfo

    chosen = calibration_set(data, ValidationSplitInfo(**validation), images=100)
    assert data.test_reads == 0 and counter.reads == []
    assert chosen.info.split == "train" and chosen.info.excludes_validation
    assert chosen.info.images == 100
    held_out = {image.tobytes() for image in split.validation_images}
    assert not held_out & {image.tobytes() for image in chosen.images}
    # Another split than the recorded one is not left out blindly: the record says so.
    stale = ValidationSplitInfo(**{**validation, "sha256": "0" * 64})
    assert not calibration_set(data, stale, images=100).info.excludes_validation


@pytest.mark.slow
def test_export_calibrates_before_the_test_split_is_read_once(
    runtime_models: tuple[Path, CountedReads],
) -> None:
    root, counter = runtime_models
    # Two models exported from one data set: its (cached) test split was read once, for the
    # final scores, after both int8 calibrations had been drawn from the training images.
    assert counter.reads == ["test"]
    for name in ("regular", "separable"):
        folder = root / name / "1"
        for file in FILES:
            assert (folder / file).stat().st_size > 10_000, file
        assert not list(folder.glob(".*partial"))
        metadata = read_metadata(folder)
        assert metadata is not None and metadata.runtimes is not None
        assert list(metadata.runtimes) == ["tensorflow", *ARTIFACT_RUNTIMES]
        for runtime, artifact in metadata.runtimes.items():
            assert artifact.test_images == 50 and artifact.size_bytes > 0
            assert artifact.test_accuracy_interval is not None
            int8 = runtime.endswith("-int8")
            assert artifact.precision == ("int8" if int8 else "float32")
            assert (artifact.calibration is not None) == int8
            if artifact.calibration is not None:
                assert artifact.calibration.split == "train"
                assert artifact.calibration.images == 50
        assert metadata.runtimes["tensorflow"].agreement == 1.0
        # fp32 conversions compute the same function: the same class for every image.
        assert metadata.runtimes["litert"].agreement == 1.0
        assert metadata.runtimes["onnxruntime"].agreement == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ARTIFACT_RUNTIMES)
def test_each_artifact_answers_a_batch_as_it_answers_each_image(
    runtime_models: tuple[Path, CountedReads], runtime: str
) -> None:
    root, _ = runtime_models
    images = np.random.default_rng(3).integers(0, 256, (7, 32, 32, 3)).astype(np.float32)
    engine = open_engine(root / "separable" / "1", runtime, threads=1)
    batched = engine.predict(images)
    alone = np.concatenate([engine.predict(images[i : i + 1]) for i in range(len(images))])
    assert batched.shape == (7, 10) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, alone, atol=1e-6)
    # int8 probabilities come in steps of the output scale (about 1/256): ten of them may sum
    # a few steps away from 1.
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=0.05)


def test_committed_models_record_every_runtime_within_half_a_point() -> None:
    for name in ("regular", "separable"):
        metadata = read_metadata(COMMITTED / name / "1")
        assert metadata is not None and metadata.runtimes is not None
        assert set(metadata.runtimes) == {"tensorflow", *ARTIFACT_RUNTIMES}
        reference = metadata.runtimes["tensorflow"].test_accuracy
        assert reference == metadata.test_accuracy
        for runtime, artifact in metadata.runtimes.items():
            assert artifact.test_images == 10_000
            if runtime != "tensorflow":  # the SavedModel's size includes its variables
                path = COMMITTED / name / "1" / artifact.file
                assert path.stat().st_size == artifact.size_bytes
            assert artifact.size_bytes < 6 * 1024 * 1024
            assert abs((artifact.test_accuracy or 0) - (reference or 0)) <= 0.005, runtime
            assert (artifact.agreement or 0) >= 0.96, runtime
            if artifact.calibration is not None:
                assert artifact.calibration.split == "train"
                assert artifact.calibration.excludes_validation


@pytest.mark.slow
@pytest.mark.parametrize("name", ("regular", "separable"))
def test_committed_artifacts_agree_with_the_saved_model_on_real_test_images(name: str) -> None:
    images, labels = real_test_sample(per_class=100)
    pixels = images.astype(np.float32)
    folder = COMMITTED / name / "1"
    reference = open_engine(folder, "tensorflow", threads=0).predict(pixels).argmax(axis=1)
    for runtime in ARTIFACT_RUNTIMES:
        predicted = open_engine(folder, runtime, threads=0).predict(pixels).argmax(axis=1)
        agreement = float(np.mean(predicted == reference))
        assert agreement >= 0.97, f"{runtime}: {agreement:.2%} of {len(labels)} images"
