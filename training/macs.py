"""Multiply-accumulate counts per image, computed from layer shapes.

Only the multiplications of convolutions and dense layers are counted (the usual convention):
biases, activations, pooling and rescaling are cheap by comparison and are left out.
"""

from __future__ import annotations

import math

import keras

from training.architectures import DepthwiseSeparableConv2D

Shape = tuple[int | None, ...]


def _positions(output_shape: Shape) -> int:
    """Number of output positions of one image: the product of the spatial dimensions."""
    return math.prod(int(d) for d in output_shape[1:-1] if d is not None)


def count_layer_macs(layer: keras.layers.Layer, input_shape: Shape) -> int:
    """Multiply-adds of ``layer`` for one image of ``input_shape`` (batch dimension first)."""
    if isinstance(layer, DepthwiseSeparableConv2D):
        depthwise_shape = layer.depthwise.compute_output_shape(input_shape)
        return count_layer_macs(layer.depthwise, input_shape) + count_layer_macs(
            layer.pointwise, depthwise_shape
        )
    if isinstance(layer, keras.Model):
        return count_macs(layer)
    input_channels = int(input_shape[-1] or 0)
    if isinstance(layer, keras.layers.SeparableConv2D):
        kernel_h, kernel_w = layer.kernel_size
        positions = _positions(layer.compute_output_shape(input_shape))
        multiplier = layer.depth_multiplier
        depthwise = positions * kernel_h * kernel_w * input_channels * multiplier
        pointwise = positions * input_channels * multiplier * layer.filters
        return depthwise + pointwise
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel_h, kernel_w = layer.kernel_size
        positions = _positions(layer.compute_output_shape(input_shape))
        return positions * kernel_h * kernel_w * input_channels * layer.depth_multiplier
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w = layer.kernel_size
        positions = _positions(layer.compute_output_shape(input_shape))
        return positions * kernel_h * kernel_w * input_channels * layer.filters
    if isinstance(layer, keras.layers.Dense):
        return input_channels * layer.units
    return 0


def count_macs_per_layer(model: keras.Model) -> dict[str, int]:
    """Multiply-adds per image of every layer of a functional model, by layer name."""
    return {
        layer.name: count_layer_macs(layer, tuple(layer.input.shape))
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    }


def count_macs_per_block(model: keras.Model) -> dict[str, int]:
    """Multiply-adds per image grouped by VGG block (``block1``...), plus the classifier head."""
    blocks: dict[str, int] = {}
    for name, macs in count_macs_per_layer(model).items():
        group = name.split("_", 1)[0] if name.startswith("block") else "head"
        blocks[group] = blocks.get(group, 0) + macs
    return blocks


def count_macs(model: keras.Model) -> int:
    """Total multiply-adds of ``model`` for one image."""
    return sum(count_macs_per_layer(model).values())
