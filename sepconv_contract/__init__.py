"""The contract between training and serving: what an exported model is and how it is found.

Training writes it and the service, the evaluation, the benchmark and the client read it. It
depends on pydantic only (no TensorFlow, no Keras), so a serving process that runs another
runtime never imports them.
"""

from sepconv_contract.metadata import (
    Interval,
    MetadataError,
    ModelMetadata,
    PairedComparison,
    Parameters,
    TensorSpec,
    ValidationSplitInfo,
    read_metadata,
    write_metadata,
)
from sepconv_contract.signature import (
    CLASS_NAMES,
    HISTORY_FILE,
    INPUT_NAME,
    INPUT_SHAPE,
    METADATA_FILE,
    NUM_CLASSES,
    ONNX_FILE,
    OUTPUT_NAME,
    SIGNATURE_NAME,
)
from sepconv_contract.versions import latest_version, latest_versions, model_folders, version_dir

__all__ = [
    "CLASS_NAMES",
    "HISTORY_FILE",
    "INPUT_NAME",
    "INPUT_SHAPE",
    "METADATA_FILE",
    "NUM_CLASSES",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "SIGNATURE_NAME",
    "Interval",
    "MetadataError",
    "ModelMetadata",
    "PairedComparison",
    "Parameters",
    "TensorSpec",
    "ValidationSplitInfo",
    "latest_version",
    "latest_versions",
    "model_folders",
    "read_metadata",
    "version_dir",
    "write_metadata",
]
