from __future__ import annotations

import keras

from training.architectures import DepthwiseSeparableConv2D, build_model
from training.macs import count_layer_macs, count_macs, count_macs_per_block


def conv_macs(size: int, kernel: int, channels_in: int, channels_out: int) -> int:
    return size * size * kernel * kernel * channels_in * channels_out


def separable_macs(size: int, channels_in: int, channels_out: int) -> int:
    return size * size * 9 * channels_in + size * size * channels_in * channels_out


def test_count_macs_regular_by_hand() -> None:
    expected = (
        conv_macs(32, 3, 3, 64)
        + conv_macs(32, 3, 64, 64)
        + conv_macs(16, 3, 64, 128)
        + conv_macs(16, 3, 128, 128)
        + conv_macs(8, 3, 128, 256)
        + conv_macs(8, 3, 256, 256)
        + 4 * 4 * 256 * 10
    )
    assert count_macs(build_model("regular")) == expected == 152_805_376


def test_count_macs_separable_by_hand() -> None:
    expected = (
        separable_macs(32, 3, 64)
        + separable_macs(32, 64, 64)
        + separable_macs(16, 64, 128)
        + separable_macs(16, 128, 128)
        + separable_macs(8, 128, 256)
        + separable_macs(8, 256, 256)
        + 4 * 4 * 256 * 10
    )
    assert count_macs(build_model("separable")) == expected == 18_295_808


def test_count_macs_per_block_sums_to_total() -> None:
    model = build_model("regular")
    blocks = count_macs_per_block(model)
    assert set(blocks) == {"block1", "block2", "block3", "head"}
    assert blocks["block1"] == conv_macs(32, 3, 3, 64) + conv_macs(32, 3, 64, 64)
    assert blocks["head"] == 40_960
    assert sum(blocks.values()) == count_macs(model)


def test_count_layer_macs_custom_depthwise_separable() -> None:
    layer = DepthwiseSeparableConv2D(64, 3, padding="same")
    layer.build((None, 32, 32, 3))
    assert count_layer_macs(layer, (None, 32, 32, 3)) == 32 * 32 * 27 + 32 * 32 * 3 * 64
    regular = keras.layers.Conv2D(64, 3, padding="same")
    assert count_layer_macs(regular, (None, 32, 32, 3)) == 32 * 32 * 27 * 64


def test_count_layer_macs_parameter_free_layers_are_zero() -> None:
    assert count_layer_macs(keras.layers.MaxPooling2D(2), (None, 32, 32, 64)) == 0
