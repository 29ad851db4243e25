"""Export every runtime's artifact of a model and record what each scores (``sepconv-export``).

Beside each SavedModel (``models/<name>/<version>/``) it writes, in one command:
``model.onnx`` (when missing), ``model.tflite`` (LiteRT fp32), ``model_int8.tflite`` (LiteRT
full int8) and ``model_int8.onnx`` (ONNX Runtime static int8, QDQ). Both int8 artifacts are
calibrated on a few hundred training images (``training.calibration``), never test images.

Then every artifact is run by the service's own engine on the whole test split: top-1
accuracy, its Wilson interval, and agreement with the fp32 SavedModel's top-1 class. The
figures go in ``metadata.json`` under ``runtimes`` (one entry per runtime), which ``GET
/models`` shows. The test split is read here only after training: for the final estimates.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sepconv_contract import ONNX_FILE, ModelMetadata, read_metadata, write_metadata
from sepconv_contract.metadata import CalibrationInfo, RuntimeArtifact
from sepconv_contract.signature import LITERT_FILE, LITERT_INT8_FILE, ONNX_INT8_FILE
from service.core.engines import open_engine
from training.calibration import DEFAULT_CALIBRATION_IMAGES, calibration_set
from training.data import Cifar10, load_cifar10
from training.evaluation import predict_in_batches
from training.statistics import wilson_interval

# Runtime name (service.core.engines.RUNTIMES) -> the file it serves and its precision.
ARTIFACTS: dict[str, tuple[str, str]] = {
    "tensorflow": ("saved_model.pb", "float32"),
    "onnxruntime": (ONNX_FILE, "float32"),
    "onnxruntime-int8": (ONNX_INT8_FILE, "int8"),
    "litert": (LITERT_FILE, "float32"),
    "litert-int8": (LITERT_INT8_FILE, "int8"),
}
# Evaluation runs each engine on all of this machine's CPUs; it is not a timing.
EVALUATION_THREADS = 0


def write_artifacts(
    version_dir: Path, data: Cifar10, calibration_images: int = DEFAULT_CALIBRATION_IMAGES
) -> dict[str, CalibrationInfo]:
    """Convert the SavedModel in ``version_dir`` to every runtime's artifact; returns how each
    int8 artifact was calibrated."""
    from training.int8_export import export_onnx_int8
    from training.litert_export import export_litert, export_litert_int8

    metadata = read_metadata(version_dir)
    # Training images only; the held-out validation split is left out when recorded.
    calibration = calibration_set(
        data, metadata.validation if metadata else None, images=calibration_images
    )
    if not (version_dir / ONNX_FILE).is_file():
        from training.onnx_export import export_onnx

        export_onnx(version_dir)
    export_litert(version_dir)
    export_litert_int8(version_dir, calibration)
    _, onnx_method = export_onnx_int8(version_dir, calibration)
    return {
        # LiteRT's converter sets each range from the calibration's extremes.
        "litert-int8": calibration.info.model_copy(update={"method": "minmax"}),
        "onnxruntime-int8": calibration.info.model_copy(update={"method": onnx_method}),
    }


def _artifact_size(version_dir: Path, runtime: str) -> int:
    if runtime == "tensorflow":  # the SavedModel: its graph and its variables
        files = [version_dir / "saved_model.pb", *(version_dir / "variables").glob("*")]
        return sum(path.stat().st_size for path in files if path.is_file())
    return (version_dir / ARTIFACTS[runtime][0]).stat().st_size


def score_artifacts(
    version_dir: Path,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    calibrations: dict[str, CalibrationInfo],
) -> dict[str, RuntimeArtifact]:
    """Every runtime's accuracy on ``images`` and its top-1 agreement with the SavedModel."""
    predicted: dict[str, npt.NDArray[np.int64]] = {}
    for runtime in ARTIFACTS:
        engine = open_engine(version_dir, runtime, EVALUATION_THREADS)
        predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] = engine.predict
        predicted[runtime] = predict_in_batches(predict, images).argmax(axis=1)
    reference = predicted["tensorflow"]
    artifacts: dict[str, RuntimeArtifact] = {}
    for runtime, classes in predicted.items():
        file, precision = ARTIFACTS[runtime]
        correct = int(np.sum(classes == labels))
        artifacts[runtime] = RuntimeArtifact(
            file=file,
            size_bytes=_artifact_size(version_dir, runtime),
            precision="int8" if precision == "int8" else "float32",
            test_accuracy=correct / len(labels),
            test_accuracy_interval=wilson_interval(correct, len(labels)),
            test_images=len(labels),
            agreement=float(np.mean(classes == reference)),
            calibration=calibrations.get(runtime),
        )
    return artifacts


def export_runtimes(
    version_dir: Path, data: Cifar10, calibration_images: int = DEFAULT_CALIBRATION_IMAGES
) -> dict[str, RuntimeArtifact]:
    """Write every artifact of ``version_dir``, score each on the test split, record them."""
    calibrations = write_artifacts(version_dir, data, calibration_images)
    # The first read of the test split in this command: every artifact is written.
    artifacts = score_artifacts(version_dir, data.test_images, data.test_labels, calibrations)
    metadata = read_metadata(version_dir) or ModelMetadata(
        name=version_dir.parent.name, version=int(version_dir.name)
    )
    metadata.runtimes = artifacts
    write_metadata(version_dir, metadata)
    return artifacts


def describe(name: str, artifacts: dict[str, RuntimeArtifact]) -> list[str]:
    """One table row per runtime: size, accuracy with its interval, agreement."""
    rows = []
    for runtime, artifact in artifacts.items():
        interval = artifact.test_accuracy_interval
        span = f"[{interval.low:.2%}, {interval.high:.2%}]" if interval else ""
        rows.append(
            f"{name:<10} {runtime:<17} {artifact.size_bytes:>10,} "
            f"{artifact.test_accuracy or 0:>8.2%} {span:>18} {artifact.agreement or 0:>9.2%}"
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sepconv-export`` options."""
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data", default="keras", help="the CIFAR-10 the models trained on")
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        metavar="N",
        help="training images the int8 ranges are measured on (never test images)",
    )


def run(args: argparse.Namespace) -> int:
    """Export and score the latest version of every model under ``--models``."""
    from sepconv_contract import latest_versions

    versions = latest_versions(args.models)
    if not versions:
        raise SystemExit(f"sepconv-export: no <name>/<version>/ folders in {args.models}")
    if args.calibration_images < 10:
        raise SystemExit("sepconv-export: --calibration-images must be at least 10 (one a class)")
    data = load_cifar10(args.data)
    print(f"{'model':<10} {'runtime':<17} {'bytes':>10} {'top-1':>8} {'95% CI':>18} {'agrees':>9}")
    for version_dir in versions:
        artifacts = export_runtimes(version_dir, data, args.calibration_images)
        for row in describe(version_dir.parent.name, artifacts):
            print(row)
    return 0
