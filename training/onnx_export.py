"""Convert an exported SavedModel to ``model.onnx`` beside it (tf2onnx; the ``onnx`` extra).

The conversion starts from the SavedModel's serving signature, not from Keras, so any exported
version (the committed ones included) can be converted, and the ONNX graph computes exactly
what the service's TensorFlow runtime serves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sepconv_contract import INPUT_NAME, INPUT_SHAPE, ONNX_FILE, OUTPUT_NAME, SIGNATURE_NAME
from training.triton_config import write_triton_config

OPSET = 17


def export_onnx(version_dir: Path) -> Path:
    """Write ``version_dir/model.onnx`` (input ``image``, output ``probabilities``), and
    Triton's ``config.pbtxt`` for it beside the version folders."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as error:
        raise SystemExit(
            f"ONNX export needs the onnx extra: pip install -e '.[onnx]' ({error})"
        ) from None

    # Keep the loaded object alive: the signature only borrows its variables.
    loaded = tf.saved_model.load(str(version_dir))
    serving = loaded.signatures[SIGNATURE_NAME]
    spec = (tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: serving(**{INPUT_NAME: image})[OUTPUT_NAME]}

    target = version_dir / ONNX_FILE
    staging = version_dir / f".{ONNX_FILE}.partial"
    tf2onnx.convert.from_function(
        serve, input_signature=spec, opset=OPSET, output_path=str(staging)
    )
    staging.replace(target)
    write_triton_config(version_dir.parent)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sepconv-export-onnx`` options."""
    parser.add_argument("--models", type=Path, default=Path("models"))


def run(args: argparse.Namespace) -> int:
    """Convert the latest version of every model under ``--models``."""
    from sepconv_contract import latest_versions

    for version_dir in latest_versions(args.models):
        path = export_onnx(version_dir)
        print(f"{version_dir.parent.name}: wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
