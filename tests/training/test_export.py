from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.architectures import build_model
from training.export import export_saved_model


def test_export_saved_model_reloads_without_project_code(tmp_path: Path) -> None:
    model = build_model("separable")
    target = tmp_path / "separable" / "1"
    export_saved_model(model, target)

    loaded = tf.saved_model.load(str(target))
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ["image"]
    assert inputs["image"].dtype == tf.float32 and inputs["image"].shape.as_list() == [
        None,
        32,
        32,
        3,
    ]
    assert list(signature.structured_outputs) == ["probabilities"]
    assert sum(int(np.prod(v.shape)) for v in loaded.variables) == 174_821

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.float32)
    served = signature(image=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(served, model(images).numpy(), atol=1e-5)
    assert not list(tmp_path.glob("separable/.*partial"))
    # Each float32 weight is stored once (an export that tracks variables twice doubles this).
    stored = sum(p.stat().st_size for p in (target / "variables").glob("variables.data-*"))
    assert stored < 1.1 * 4 * 174_821


def test_exported_models_fixture_has_metadata(exported_models: Path) -> None:
    metadata = json.loads((exported_models / "regular" / "1" / "metadata.json").read_text())
    assert metadata["parameters"] == {"total": 1_186_378, "trainable": 1_186_378}
    assert metadata["macs_per_image"] == 152_805_376
    assert metadata["classes"][0] == "airplane" and len(metadata["classes"]) == 10
    assert metadata["input"]["shape"] == [None, 32, 32, 3]
