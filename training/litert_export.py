"""LiteRT artifacts beside a SavedModel: ``model.tflite`` (fp32) and ``model_int8.tflite``.

Both are converted from the SavedModel's serving signature with ``tf.lite.TFLiteConverter``,
so they compute what the TensorFlow runtime serves, with the batch dimension left free.

The int8 model is full-integer (every operator int8, ``TFLITE_BUILTINS_INT8``) with float32
input and output: a QUANTIZE op first and a DEQUANTIZE op last. The service's API takes raw
0-255 pixels and returns probabilities; with float I/O every engine keeps that one interface,
and the two edge ops cost a few microseconds per image (measured in docs/runtimes.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sepconv_contract import SIGNATURE_NAME
from sepconv_contract.signature import LITERT_FILE, LITERT_INT8_FILE
from training.calibration import CalibrationSet


def _converter(version_dir: Path) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(
        str(version_dir), signature_keys=[SIGNATURE_NAME]
    )


def _write(version_dir: Path, file: str, content: bytes) -> Path:
    """Write beside the SavedModel under a staging name, then rename: never half a file."""
    target = version_dir / file
    staging = version_dir / f".{file}.partial"
    staging.write_bytes(content)
    staging.replace(target)
    return target


def export_litert(version_dir: Path) -> Path:
    """Write ``version_dir/model.tflite``: the fp32 network as LiteRT runs it."""
    converter = _converter(version_dir)
    return _write(version_dir, LITERT_FILE, bytes(converter.convert()))


def export_litert_int8(
    version_dir: Path, calibration: CalibrationSet, int8_io: bool = False
) -> Path:
    """Write ``version_dir/model_int8.tflite``, its ranges measured on ``calibration``.

    ``int8_io`` makes the input and output int8 too (the service does not use it: kept for
    the measurement that chose float I/O, and written under another name then).
    """
    import tensorflow as tf

    def representative() -> Iterator[list[object]]:
        for batch in calibration.batches():
            yield [batch]

    converter = _converter(version_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    # Full integer: a conversion that would leave an operator in float fails instead.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    file = LITERT_INT8_FILE
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        file = "model_int8_io.tflite"
    return _write(version_dir, file, bytes(converter.convert()))
