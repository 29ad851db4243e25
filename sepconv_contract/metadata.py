"""``metadata.json``: the typed facts about one exported model, validated when read.

Export writes a ``ModelMetadata``; the registry, the evaluation, the benchmark and the client
read one. A file that does not match is refused with the file and the field it got wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sepconv_contract.signature import CLASS_NAMES, METADATA_FILE

Fraction = float


class MetadataError(ValueError):
    """``metadata.json`` is unreadable or does not match the contract.

    The message names the file and the field but not the folder (it may reach a client);
    ``path`` has the whole path for logs and the command line.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class _Part(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="forbid")


class TensorSpec(_Part):
    """One input or output tensor of the serving signature."""

    name: str
    dtype: Literal["float32"]
    shape: list[int | None]
    range: str | None = None


class Parameters(_Part):
    total: int = Field(ge=0)
    trainable: int = Field(ge=0)


class Interval(_Part):
    """A confidence interval of a proportion or a difference of proportions."""

    low: float
    high: float
    level: float = 0.95
    method: str


class ValidationSplitInfo(_Part):
    """Where the validation data that chose the epoch came from."""

    split: Literal["train", "test"]
    images: int = Field(ge=0)
    sha256: str
    protocol: Literal["held-out", "tutorial"]
    per_class: int | None = None
    seed: int | None = None
    warning: str | None = None


class PairedComparison(_Part):
    """This model against another on the same test images: who got which images right.

    McNemar's exact test asks whether the discordant images (one model right, the other wrong)
    split evenly, as they would if the two were equally accurate.
    """

    other: str
    images: int = Field(ge=0)
    both_correct: int = Field(ge=0)
    only_this_correct: int = Field(ge=0)
    only_other_correct: int = Field(ge=0)
    both_wrong: int = Field(ge=0)
    accuracy_difference: float = Field(description="This model's accuracy minus the other's")
    difference_interval: Interval
    mcnemar_p: float = Field(ge=0, le=1)


class CalibrationInfo(_Part):
    """The images an int8 artifact's activation ranges were measured on: training images only."""

    split: Literal["train"]
    images: int = Field(ge=1)
    sha256: str = Field(description="Content digest of the calibration images")
    excludes_validation: bool = Field(
        description="True when the held-out validation split was left out of the draw"
    )
    seed: int
    method: str | None = Field(
        None, description="How ranges were set from them: percentile, minmax (LiteRT's own)"
    )


class RuntimeArtifact(_Part):
    """One runtime's artifact of the model and what it scores on the test split.

    ``agreement`` is the share of test images on which its top-1 class is the fp32
    SavedModel's: how much of the reference behaviour a conversion or quantization kept.
    """

    file: str = Field(description="The artifact's file (or folder) in the version folder")
    size_bytes: int = Field(ge=0)
    precision: Literal["float32", "int8"]
    test_accuracy: Fraction | None = Field(None, ge=0, le=1)
    test_accuracy_interval: Interval | None = None
    test_images: int | None = Field(None, ge=0)
    agreement: Fraction | None = Field(None, ge=0, le=1)
    calibration: CalibrationInfo | None = None


class ModelMetadata(BaseModel):
    """What ``metadata.json`` holds. Unknown keys are kept, so a newer file survives a rewrite."""

    model_config = ConfigDict(protected_namespaces=(), extra="allow")

    name: str
    version: int = Field(ge=0)
    architecture: str | None = None
    parameters: Parameters | None = None
    macs_per_image: int | None = Field(None, ge=0)
    classes: list[str] = Field(default_factory=lambda: list(CLASS_NAMES), min_length=1)
    input: TensorSpec | None = None
    output: TensorSpec | None = None
    epochs: int | None = Field(None, ge=0)
    seconds_per_epoch: float | None = None
    best_epoch: int | None = None
    restored_best_weights: bool | None = None
    validation: ValidationSplitInfo | None = None
    validation_accuracy: Fraction | None = Field(None, ge=0, le=1)
    test_accuracy: Fraction | None = Field(None, ge=0, le=1)
    test_accuracy_interval: Interval | None = None
    test_images: int | None = Field(None, ge=0)
    per_class_accuracy: dict[str, Fraction | None] | None = None
    per_class_interval: dict[str, Interval | None] | None = None
    confusion_matrix: list[list[int]] | None = None
    paired: list[PairedComparison] | None = None
    # Keyed by runtime name (service.core.engines.RUNTIMES), written by sepconv-export.
    runtimes: dict[str, RuntimeArtifact] | None = None
    training: dict[str, Any] | None = None
    trained_on: str | None = None
    tensorflow_version: str | None = None
    data_source: str | None = None
    evaluated_on: str | None = None
    created_at: str | None = None


def read_metadata(version_folder: Path) -> ModelMetadata | None:
    """The folder's ``metadata.json``, validated; None when the folder has none."""
    path = version_folder / METADATA_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetadataError(
            f"{METADATA_FILE} is unreadable ({type(error).__name__})", path
        ) from None
    if not isinstance(data, dict):
        raise MetadataError(f"{METADATA_FILE} is not a JSON object", path)
    try:
        return ModelMetadata.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise MetadataError(
            f"{METADATA_FILE} field {field!r}: {first['msg']} ({error.error_count()} error(s))",
            path,
        ) from None


def write_metadata(version_folder: Path, metadata: ModelMetadata) -> None:
    """Write ``metadata.json`` atomically into ``version_folder``."""
    target = version_folder / METADATA_FILE
    staging = target.with_suffix(".json.partial")
    staging.write_text(metadata.model_dump_json(indent=2) + "\n")
    staging.replace(target)
