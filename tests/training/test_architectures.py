from __future__ import annotations

import keras
import numpy as np
import pytest

from training.architectures import DepthwiseSeparableConv2D, build_model, with_input_scale

REGULAR_LAYER_PARAMETERS = [1792, 36928, 73856, 147584, 295168, 590080, 40970]
SEPARABLE_LAYER_PARAMETERS = [283, 4736, 8896, 17664, 34176, 68096, 40970]


def weighted_layer_parameters(model: keras.Model) -> list[int]:
    return [layer.count_params() for layer in model.layers if layer.count_params()]


def test_build_model_regular_matches_tutorial_parameters() -> None:
    model = build_model("regular")
    assert weighted_layer_parameters(model) == REGULAR_LAYER_PARAMETERS
    assert model.count_params() == 1_186_378


def test_build_model_separable_matches_tutorial_parameters() -> None:
    model = build_model("separable")
    assert weighted_layer_parameters(model) == SEPARABLE_LAYER_PARAMETERS
    assert model.count_params() == 174_821


def test_build_model_takes_raw_pixels_and_outputs_probabilities() -> None:
    model = build_model("separable")
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    probabilities = model(np.full((2, 32, 32, 3), 255.0, np.float32)).numpy()
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_build_model_architecture_layers() -> None:
    regular = build_model("regular")
    separable = build_model("separable")
    assert sum(isinstance(x, keras.layers.Conv2D) for x in regular.layers) == 6
    assert sum(isinstance(x, keras.layers.SeparableConv2D) for x in separable.layers) == 6
    pools = [x for x in regular.layers if isinstance(x, keras.layers.MaxPooling2D)]
    assert [tuple(p.output.shape[1:3]) for p in pools] == [(16, 16), (8, 8), (4, 4)]


def test_build_model_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="regular, separable"):
        build_model("mobile")  # type: ignore[arg-type]


def test_depthwise_separable_layer_has_286_parameters_against_1792() -> None:
    inputs = keras.Input(shape=(32, 32, 3))
    custom = keras.Model(inputs, DepthwiseSeparableConv2D(64, 3, padding="same")(inputs))
    regular = keras.Model(inputs, keras.layers.Conv2D(64, 3, padding="same")(inputs))
    keras_separable = keras.Model(
        inputs, keras.layers.SeparableConv2D(64, 3, padding="same")(inputs)
    )
    assert custom.count_params() == 286
    assert regular.count_params() == 1792
    assert keras_separable.count_params() == 283
    assert tuple(custom.output.shape) == (None, 32, 32, 64)


def test_depthwise_separable_layer_config_round_trip(tmp_path) -> None:
    layer = DepthwiseSeparableConv2D(16, 3, padding="same", activation="relu", name="dsc")
    config = layer.get_config()
    assert config["filters"] == 16 and config["activation"] == "relu"
    clone = DepthwiseSeparableConv2D.from_config(config)
    assert clone.filters == 16 and clone.padding == "same"

    inputs = keras.Input(shape=(8, 8, 3))
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "dsc.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(restored(images).numpy(), model(images).numpy(), atol=1e-6)


def test_depthwise_separable_layer_applies_activation() -> None:
    layer = DepthwiseSeparableConv2D(4, 3, activation="relu")
    outputs = layer(np.random.default_rng(0).normal(size=(1, 6, 6, 3)).astype(np.float32))
    assert float(np.min(outputs)) >= 0.0


@pytest.mark.parametrize("architecture", ["regular", "separable"])
def test_with_input_scale_keeps_the_function(architecture: str) -> None:
    keras.utils.set_random_seed(3)
    raw = build_model(architecture, input_scale=1.0)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    raw.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in raw.get_weights()])
    folded = with_input_scale(raw, architecture)  # type: ignore[arg-type]
    assert float(folded.get_layer("rescale").scale) == pytest.approx(1 / 255)
    assert folded.count_params() == raw.count_params()
    images = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(folded(images).numpy(), raw(images).numpy(), atol=5e-5)
    # Only the kernel that meets the pixels changes, by exactly the ratio of the scales.
    np.testing.assert_allclose(
        folded.get_layer("block1_conv1").get_weights()[0],
        raw.get_layer("block1_conv1").get_weights()[0] * 255,
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        folded.get_layer("probabilities").get_weights()[0],
        raw.get_layer("probabilities").get_weights()[0],
    )
