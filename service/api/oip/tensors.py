"""An inference request's tensors: the ``image`` input it carries, the outputs it asks for.

``image`` comes in one of two forms, in JSON or as binary data:

- ``FP32 [N, 32, 32, 3]``: raw 0-255 RGB pixels, handed to the engine as they are, as the
  micro-batcher hands it ``/predict``'s decoded pixels (the SavedModel rescales them itself);
- ``BYTES [N]`` (or ``[N, 1]``): encoded images (PNG, JPEG...), decoded by the route through
  ``/predict``'s own decode path and limits. In JSON each element is the file in base64.

Every check here is a client's mistake, answered 400 with what was expected: nothing a request
declares is allocated before its shape is known to be within the limits.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from sepconv_contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME
from sepconv_contract.limits import MIN_TOP_K
from service.api.oip.codec import serialize_bytes_elements, split_bytes_elements
from service.api.oip.errors import invalid_request, too_many_images
from service.api.oip.schemas import InferRequest, Parameters, RequestInput, ResponseOutput

FP32 = "FP32"
BYTES = "BYTES"
FloatImages = npt.NDArray[np.float32]
Probabilities = npt.NDArray[np.float32]
_ACCEPTED = f"FP32 [N, {', '.join(map(str, INPUT_SHAPE))}] pixels or BYTES [N] encoded images"


@dataclass(frozen=True)
class ImageInput:
    """The ``image`` tensor: pixels (FP32) or encoded files (BYTES), one per image."""

    pixels: FloatImages | None = None
    encoded: list[bytes] | None = None

    @property
    def count(self) -> int:
        if self.pixels is not None:
            return int(self.pixels.shape[0])
        return len(self.encoded or ())


@dataclass(frozen=True)
class OutputRequest:
    """How to answer ``probabilities``: as binary data or JSON, and as top-N labels or not."""

    binary: bool
    classification: int | None = None


def parse_request(header: bytes) -> InferRequest:
    """The JSON header as an ``InferRequest``, or a 400 that names the field, not the input."""
    try:
        return InferRequest.model_validate_json(header)
    except ValidationError as error:
        parts = []
        for item in error.errors()[:5]:
            location = ".".join(str(p) for p in item.get("loc", ()))
            parts.append(f"{location or 'body'}: {item.get('msg', 'invalid value')}")
        raise invalid_request(
            "the inference request is not valid JSON of the protocol: " + "; ".join(parts)
        ) from None


def _flag(parameters: Parameters, name: str, default: bool, where: str) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise invalid_request(f"parameter {name!r} of {where} must be true or false")
    return value


def _binary_size(tensor: RequestInput) -> int | None:
    parameters = tensor.parameters or {}
    if "shared_memory_region" in parameters:
        raise invalid_request(
            "shared memory is not supported; send the tensor in JSON or as binary data"
        )
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise invalid_request(
            f"binary_data_size of input {tensor.name!r} must be a byte count (a whole number)"
        )
    return size


def read_image_input(request: InferRequest, binary: bytes, max_images: int) -> ImageInput:
    """The request's one input, ``image``, checked against its shape, datatype and limits."""
    names = [tensor.name for tensor in request.inputs]
    for name in names:
        if name != INPUT_NAME:
            raise invalid_request(
                f"unknown input tensor {name[:64]!r}; the model takes one input, {INPUT_NAME!r}"
            )
    if len(names) != 1:
        raise invalid_request(
            f"the request has {len(names)} inputs; send exactly one, named {INPUT_NAME!r}"
        )
    tensor = request.inputs[0]
    count = _image_count(tensor, max_images)  # the shape first: it bounds everything after
    size = _binary_size(tensor)
    if size is not None and tensor.data is not None:
        raise invalid_request(
            f"input {INPUT_NAME!r} has both JSON data and binary_data_size; send one of them"
        )
    if size is None and tensor.data is None:
        raise invalid_request(
            f"input {INPUT_NAME!r} has no data; send 'data' or binary data with binary_data_size"
        )
    chunk = b""
    if size is not None:
        if size > len(binary):
            raise invalid_request(
                f"input {INPUT_NAME!r} declares binary_data_size {size}, but only {len(binary)} "
                "bytes follow the JSON header (Inference-Header-Content-Length)"
            )
        chunk = binary[:size]
    leftover = len(binary) - len(chunk)
    if leftover:
        raise invalid_request(
            f"{leftover} bytes follow the JSON header that no input's binary_data_size claims"
        )
    if tensor.datatype == FP32:
        pixels = (
            _json_pixels(tensor.data, tensor.shape)
            if size is None
            else _binary_pixels(chunk, tensor.shape)
        )
        return ImageInput(pixels=pixels)
    encoded = (
        _json_encoded(tensor.data, count)
        if size is None
        else split_bytes_elements(chunk, count, INPUT_NAME)
    )
    return ImageInput(encoded=encoded)


def _image_count(tensor: RequestInput, max_images: int) -> int:
    """N of a valid shape for the tensor's datatype (checked before any data is read)."""
    shape = tensor.shape
    if tensor.datatype == FP32:
        valid = len(shape) == 1 + len(INPUT_SHAPE) and tuple(shape[1:]) == INPUT_SHAPE
    elif tensor.datatype == BYTES:
        valid = len(shape) in (1, 2) and (len(shape) == 1 or shape[1] == 1)
    else:
        raise invalid_request(
            f"input {INPUT_NAME!r} has datatype {tensor.datatype[:16]!r}; send {_ACCEPTED}"
        )
    if not valid:
        raise invalid_request(
            f"input {INPUT_NAME!r} ({tensor.datatype}) has shape {shape[:8]}; send {_ACCEPTED}"
        )
    count = shape[0]
    if count < 1:
        raise invalid_request(f"input {INPUT_NAME!r} must hold at least one image, not {count}")
    if count > max_images:
        raise too_many_images(count, max_images)
    return count


def _json_pixels(data: Any, shape: list[int]) -> FloatImages:
    expected = math.prod(shape)
    try:
        values = np.asarray(data)
    except (ValueError, TypeError):  # ragged nesting
        raise invalid_request(
            f"the data of input {INPUT_NAME!r} is not a regular array of numbers; send "
            f"{expected} numbers, flat or nested row-major"
        ) from None
    if values.dtype.kind not in "iuf":
        raise invalid_request(
            f"input {INPUT_NAME!r} is FP32: its data must be numbers only (0-255 pixel values)"
        )
    if values.size != expected:
        raise invalid_request(
            f"input {INPUT_NAME!r} has {values.size} values, but its shape {shape} holds {expected}"
        )
    with np.errstate(over="ignore"):  # past float32's range: infinite, refused just below
        pixels = values.astype(np.float32).reshape(shape)
    return _finite(pixels)


def _binary_pixels(chunk: bytes, shape: list[int]) -> FloatImages:
    expected = math.prod(shape) * 4
    if len(chunk) != expected:
        raise invalid_request(
            f"input {INPUT_NAME!r} has {len(chunk)} bytes of binary data, but FP32 {shape} "
            f"takes {expected} (4 bytes per value, little-endian)"
        )
    return _finite(np.frombuffer(chunk, dtype="<f4").reshape(shape))


def _finite(pixels: FloatImages) -> FloatImages:
    # A NaN or infinite pixel is never an image: refused here rather than answered as NaNs.
    if not np.isfinite(pixels).all():
        raise invalid_request(
            f"input {INPUT_NAME!r} holds NaN or infinite values; send 0-255 pixel values"
        )
    return pixels


def _json_encoded(data: Any, count: int) -> list[bytes]:
    rows = data if isinstance(data, list) else [data]
    # [N] flat, or [N, 1] nested one level.
    elements = [item for row in rows for item in (row if isinstance(row, list) else [row])]
    if len(elements) != count:
        raise invalid_request(
            f"input {INPUT_NAME!r} has {len(elements)} elements, but its shape holds {count}"
        )
    encoded = []
    for index, element in enumerate(elements):
        if not isinstance(element, str):
            raise invalid_request(
                f"element {index} of input {INPUT_NAME!r} (BYTES) must be a string: the "
                "image file in base64"
            )
        try:
            encoded.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError):
            raise invalid_request(
                f"element {index} of input {INPUT_NAME!r} is not base64; in JSON, send each "
                "image file base64-encoded (or raw, as binary data)"
            ) from None
    return encoded


def read_output_request(request: InferRequest, num_classes: int) -> OutputRequest:
    """What the request asks of ``probabilities`` (none listed: all outputs, by default)."""
    parameters = request.parameters or {}
    binary_default = _flag(parameters, "binary_data_output", False, "the request")
    outputs = request.outputs or []
    for output in outputs:
        if output.name != OUTPUT_NAME:
            raise invalid_request(
                f"unknown output tensor {output.name[:64]!r}; the model has one output, "
                f"{OUTPUT_NAME!r}"
            )
    if len(outputs) > 1:
        raise invalid_request(f"output {OUTPUT_NAME!r} is requested {len(outputs)} times")
    if not outputs:
        return OutputRequest(binary=binary_default)
    wanted = outputs[0].parameters or {}
    if "shared_memory_region" in wanted:
        raise invalid_request("shared memory is not supported; omit shared_memory_region")
    binary = _flag(wanted, "binary_data", binary_default, f"output {OUTPUT_NAME!r}")
    classification = wanted.get("classification")
    if classification is None or classification == 0:  # tritonclient's "not asked"
        return OutputRequest(binary=binary)
    if (
        isinstance(classification, bool)
        or not isinstance(classification, int)
        or not MIN_TOP_K <= classification <= num_classes
    ):
        raise invalid_request(
            f"classification of output {OUTPUT_NAME!r} must be a whole number from "
            f"{MIN_TOP_K} to {num_classes} (the model's classes)"
        )
    return OutputRequest(binary=binary, classification=classification)


def encode_probabilities(
    probabilities: Probabilities, classes: list[str], wanted: OutputRequest
) -> tuple[ResponseOutput, bytes | None]:
    """The ``probabilities`` output as asked, and its binary data (None when in JSON)."""
    if wanted.classification is not None:
        labels = [_top_labels(row, classes, wanted.classification) for row in probabilities]
        shape = [len(labels), wanted.classification]
        flat = [label for row in labels for label in row]
        if not wanted.binary:
            return ResponseOutput(name=OUTPUT_NAME, datatype=BYTES, shape=shape, data=flat), None
        data = serialize_bytes_elements([label.encode() for label in flat])
        return _binary_output(BYTES, shape, data), data
    shape = list(probabilities.shape)
    if not wanted.binary:
        # pydantic writes a NaN (a broken model's answer) as null, never as invalid JSON.
        values: list[float] = probabilities.reshape(-1).tolist()
        return ResponseOutput(name=OUTPUT_NAME, datatype=FP32, shape=shape, data=values), None
    data = probabilities.astype("<f4").tobytes()
    return _binary_output(FP32, shape, data), data


def _binary_output(datatype: str, shape: list[int], data: bytes) -> ResponseOutput:
    return ResponseOutput(
        name=OUTPUT_NAME, datatype=datatype, shape=shape, parameters={"binary_data_size": len(data)}
    )


def _top_labels(row: Probabilities, classes: list[str], count: int) -> list[str]:
    """The classification extension's ``"<probability>:<index>:<label>"``, best first.

    Ties keep class order and a NaN ranks last, as ``/predict``'s top_k does.
    """
    values: list[float] = row.tolist()
    ranked = [v if v == v else -1.0 for v in values]
    order = sorted(range(len(ranked)), key=ranked.__getitem__, reverse=True)[:count]
    return [f"{values[i]:f}:{i}:{classes[i]}" for i in order]
