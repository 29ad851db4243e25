"""Triton Inference Server's ``config.pbtxt`` for an exported ONNX model.

This project's model folder is already a Triton model repository: ``<models>/<name>/<N>/``
holds ``model.onnx``, and Triton reads ``<models>/<name>/config.pbtxt`` beside the version
folders. The version scanner and the service look at version folders only, so the file is
invisible to them. Names and shapes come from the contract, so Triton serves the same
``image`` -> ``probabilities`` interface as the service's own runtimes.
"""

from __future__ import annotations

from pathlib import Path

from sepconv_contract import INPUT_NAME, INPUT_SHAPE, NUM_CLASSES, OUTPUT_NAME

TRITON_CONFIG_FILE = "config.pbtxt"
ONNX_PLATFORM = "onnxruntime_onnx"
# The service's own micro-batch cap (SEPCONV_MAX_BATCH_SIZE's default), so both servers batch
# alike; the ONNX graphs take any batch size.
DEFAULT_MAX_BATCH_SIZE = 32


def render_triton_config(
    name: str, *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_queue_delay_us: int = 0
) -> str:
    """``config.pbtxt`` (protobuf text) for model ``name``'s ``model.onnx``.

    ``dims`` leave out the batch dimension, which Triton adds when ``max_batch_size`` > 0.
    A queue delay of 0 batches what is queued and goes, as the service does by default.
    """
    if max_batch_size < 1:
        raise ValueError(
            f"max_batch_size must be at least 1 (got {max_batch_size}): with 0 Triton would "
            "treat the batch dimension as part of each image's shape"
        )
    if max_queue_delay_us < 0:
        raise ValueError(f"max_queue_delay_us must be 0 or more (got {max_queue_delay_us})")
    input_dims = ", ".join(str(size) for size in INPUT_SHAPE)
    return f"""\
# Written by sepconv-export-onnx (training/triton_config.py): Triton's configuration of
# {name}/<version>/model.onnx. Triton serves the highest version folder, as sepconv-serve does.
name: "{name}"
platform: "{ONNX_PLATFORM}"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {input_dims} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {NUM_CLASSES} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
"""


def write_triton_config(
    model_folder: Path, *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
) -> Path:
    """Write ``model_folder/config.pbtxt``; Triton names the model after its folder."""
    target = model_folder / TRITON_CONFIG_FILE
    # Written beside and renamed, so a Triton polling the repository never reads half a file.
    staging = model_folder / f".{TRITON_CONFIG_FILE}.partial"
    staging.write_text(render_triton_config(model_folder.name, max_batch_size=max_batch_size))
    staging.replace(target)
    return target
