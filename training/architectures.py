"""The reference tutorial's two VGG-style CIFAR-10 classifiers.

Both networks take raw 0-255 RGB pixels; scaling to [0, 1] happens in a parameter-free
``Rescaling`` layer inside the model, so an exported model needs no client-side preprocessing
and the parameter counts stay exactly the tutorial's.
"""

from __future__ import annotations

from typing import Any, Literal

import keras

from sepconv_contract import INPUT_NAME, INPUT_SHAPE, NUM_CLASSES, OUTPUT_NAME

BLOCK_FILTERS: tuple[int, ...] = (64, 128, 256)
UNIT_SCALE = 1.0 / 255.0

Architecture = Literal["regular", "separable"]
ARCHITECTURES: tuple[Architecture, ...] = ("regular", "separable")


@keras.saving.register_keras_serializable(package="sepconv")
class DepthwiseSeparableConv2D(keras.layers.Layer):
    """The tutorial's hand-written separable convolution: a depthwise then a pointwise layer.

    Unlike Keras ``SeparableConv2D`` (one bias, after the pointwise step) the depthwise part
    carries its own bias, so 64 3x3 filters on an RGB input cost 286 parameters, not 283.
    The tutorial's snippet forgot to create the depthwise layer; this one builds both.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int] = 3,
        padding: str = "same",
        activation: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.depthwise = keras.layers.DepthwiseConv2D(
            kernel_size, padding=padding, use_bias=True, name="depthwise"
        )
        self.pointwise = keras.layers.Conv2D(filters, 1, use_bias=True, name="pointwise")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.depthwise.build(input_shape)
        depthwise_shape = self.depthwise.compute_output_shape(input_shape)
        self.pointwise.build(depthwise_shape)
        self.built = True

    def call(self, inputs: Any) -> Any:
        return self.activation(self.pointwise(self.depthwise(inputs)))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.pointwise.compute_output_shape(self.depthwise.compute_output_shape(input_shape))

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "padding": self.padding,
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config


def _convolution(architecture: Architecture, filters: int, name: str) -> keras.layers.Layer:
    if architecture == "regular":
        return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)
    return keras.layers.SeparableConv2D(filters, 3, padding="same", activation="relu", name=name)


def build_model(
    architecture: Architecture,
    *,
    num_classes: int = NUM_CLASSES,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    block_filters: tuple[int, ...] = BLOCK_FILTERS,
    input_scale: float = UNIT_SCALE,
) -> keras.Model:
    """Build the tutorial's VGG network of regular or depthwise separable convolutions.

    Three blocks of two 3x3 ``same`` ReLU convolutions and a 2x2 max pool, then Flatten and
    ``Dense(num_classes, softmax)``: 1,186,378 parameters (regular), 174,821 (separable). The
    input is raw 0-255 pixels, multiplied by ``input_scale`` in a parameter-free first layer
    (1/255: pixels in [0, 1]; 1.0: raw pixels, as the tutorial trained).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}: expected one of {', '.join(ARCHITECTURES)}"
        )
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(input_scale, name="rescale")(inputs)
    for block, filters in enumerate(block_filters, start=1):
        x = _convolution(architecture, filters, f"block{block}_conv1")(x)
        x = _convolution(architecture, filters, f"block{block}_conv2")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=architecture)


def with_input_scale(
    model: keras.Model, architecture: Architecture, input_scale: float = UNIT_SCALE
) -> keras.Model:
    """The same function as ``model``, rebuilt to scale its input by ``input_scale``.

    The first convolution is linear in its input, so multiplying the kernel it applies to the
    pixels (the ``Conv2D`` kernel, or the depthwise kernel of ``SeparableConv2D``) by
    old_scale / new_scale compensates exactly; every other weight is copied unchanged.
    """
    old_scale = float(model.get_layer("rescale").scale)
    rebuilt = build_model(architecture, input_scale=input_scale)
    rebuilt.set_weights(model.get_weights())
    first = rebuilt.get_layer("block1_conv1")
    kernel, *rest = first.get_weights()
    first.set_weights([kernel * (old_scale / input_scale), *rest])
    return rebuilt
