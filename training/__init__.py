"""Training module: the tutorial's regular and separable VGG classifiers for CIFAR-10."""

from training.architectures import (
    ARCHITECTURES,
    CLASS_NAMES,
    INPUT_SHAPE,
    NUM_CLASSES,
    DepthwiseSeparableConv2D,
    build_model,
)
from training.macs import count_macs

__all__ = [
    "ARCHITECTURES",
    "CLASS_NAMES",
    "INPUT_SHAPE",
    "NUM_CLASSES",
    "DepthwiseSeparableConv2D",
    "build_model",
    "count_macs",
]
