"""The names and shapes every exported model shares, whatever runtime serves it."""

from __future__ import annotations

# The standard CIFAR-10 label order (also alphabetical): output column i is CLASS_NAMES[i].
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
# One image: height, width, RGB channels. Models take raw 0-255 pixels as float32.
INPUT_SHAPE: tuple[int, int, int] = (32, 32, 3)

# The SavedModel's one signature: ``image`` (float32 [None, 32, 32, 3]) -> ``probabilities``
# (float32 [None, 10]). The ONNX export keeps the same input and output names.
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"

# The files of a version folder ``<model_dir>/<name>/<version>/`` besides the SavedModel.
METADATA_FILE = "metadata.json"
HISTORY_FILE = "history.json"
ONNX_FILE = "model.onnx"
# The quantized and LiteRT artifacts, all exported from the SavedModel (``sepconv-export``).
# Each keeps the float32 ``image`` -> ``probabilities`` interface: the int8 ones quantize and
# dequantize inside, so every engine takes the same raw pixels and returns probabilities.
ONNX_INT8_FILE = "model_int8.onnx"
LITERT_FILE = "model.tflite"
LITERT_INT8_FILE = "model_int8.tflite"
