"""Export a trained Keras model as a TensorFlow Serving style SavedModel plus ``metadata.json``.

The SavedModel has one explicit signature, ``serving_default``: input ``image`` (float32
``[None, 32, 32, 3]``, raw 0-255 pixels), output ``probabilities`` (float32 ``[None, 10]``).
It loads with plain ``tf.saved_model.load``: no project code and no custom objects.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from sepconv_contract import (
    CLASS_NAMES,
    INPUT_NAME,
    INPUT_SHAPE,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    ModelMetadata,
    Parameters,
    TensorSpec,
    read_metadata,
    version_dir,
    write_metadata,
)
from training.macs import count_macs

__all__ = ["build_metadata", "export_saved_model", "read_metadata", "version_dir", "write_metadata"]


def export_saved_model(model: keras.Model, path: Path) -> None:
    """Write ``model`` as a SavedModel with the ``image`` -> ``probabilities`` signature.

    The root holds the model's variables once (Keras' ``ExportArchive`` stored every variable
    twice, doubling the files) as ``variables`` and ``trainable_variables``, plus the serving
    function. The folder is written beside the target and renamed into place, so a crash
    mid-export never leaves a half-written version for the service to load.
    """

    @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name=INPUT_NAME)])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    root = tf.train.Checkpoint()
    root.variables = [weight.value for weight in model.weights]
    root.trainable_variables = [weight.value for weight in model.trainable_weights]
    root.serve = serve
    staging = path.with_name(f".{path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(root, str(staging), signatures={SIGNATURE_NAME: serve})
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)


def build_metadata(
    model: keras.Model,
    *,
    name: str,
    version: int,
    architecture: str,
    epochs: int,
    seconds_per_epoch: float | None,
    data_source: str,
    evaluation: dict[str, Any] | None = None,
) -> ModelMetadata:
    """The facts about an exported model that the service and the README report."""
    trainable = sum(int(tf.size(v)) for v in model.trainable_weights)
    metadata = ModelMetadata(
        name=name,
        version=version,
        architecture=architecture,
        parameters=Parameters(total=int(model.count_params()), trainable=trainable),
        macs_per_image=count_macs(model),
        classes=list(CLASS_NAMES),
        input=TensorSpec(
            name=INPUT_NAME,
            dtype="float32",
            shape=[None, *INPUT_SHAPE],
            range="raw RGB pixels 0-255",
        ),
        output=TensorSpec(name=OUTPUT_NAME, dtype="float32", shape=[None, len(CLASS_NAMES)]),
        epochs=epochs,
        seconds_per_epoch=seconds_per_epoch,
        tensorflow_version=tf.__version__,
        data_source=data_source,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    # Validated again, so a wrong evaluation field fails the export, not the service later.
    return ModelMetadata.model_validate({**metadata.model_dump(), **(evaluation or {})})
