"""Decode an uploaded image into the 32x32 RGB pixels the models take.

Only an allowlist of formats is ever parsed, the pixel count is checked from the header before
any pixel is decoded, and no external program is ever started (Pillow's EPS plugin would run
Ghostscript): other formats are recognised by their magic bytes and refused.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from sepconv_contract import INPUT_SHAPE
from sepconv_contract.schemas import ImageInfo
from service.errors import (
    image_header_too_large,
    image_too_large,
    invalid_image,
    unsupported_media_type,
)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MODEL_SIZE = (INPUT_SHAPE[1], INPUT_SHAPE[0])  # Pillow sizes are (width, height)
Pixels = npt.NDArray[np.uint8]

# Magic bytes of image formats we recognise but refuse, so the client hears 415, not 400.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"8BPS", "PSD"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
    (b"qoif", "QOI"),
)


@dataclass(frozen=True)
class DecodedImage:
    """The model input (32x32x3 uint8) and what the upload was."""

    pixels: Pixels
    info: ImageInfo


def _refused_format(data: bytes) -> str | None:
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<?xml") or head.startswith(b"<svg") or b"<svg" in head:
        return "SVG"
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white, 16-bit scaled to 8-bit."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        scaled = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class OpenedImage:
    """An upload whose header is read and checked, its pixels not yet decoded."""

    image: Image.Image
    info: ImageInfo

    @property
    def pixels(self) -> int:
        return self.info.width * self.info.height


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode, orient, convert, center-crop and resize an upload to the 32x32 model input."""
    return finish_decoding(open_image(data, max_pixels))


def open_image(data: bytes, max_pixels: int) -> OpenedImage:
    """Identify the format and read the header only; refuse it before any pixel is decoded."""
    if not data:
        raise invalid_image("the image is empty (0 bytes)")
    refused = _refused_format(data)
    if refused is not None:
        raise unsupported_media_type(
            f"{refused} images are not accepted; send one of {', '.join(ALLOWED_FORMATS)}"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own global limit; the size check below is the one that
            # applies, and it names the real dimensions.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise invalid_image(
            f"the data is not a readable image; send one of {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except Image.DecompressionBombError:
        # Over twice Pillow's limit it refuses in open(), before the size reaches us.
        raise image_header_too_large(max_pixels) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise invalid_image(f"the image header is damaged ({type(error).__name__})") from None

    width, height = image.size
    if width < 1 or height < 1:
        raise invalid_image(f"the image claims an empty canvas of {width}x{height}")
    if width * height > max_pixels:
        raise image_too_large(width, height, max_pixels)
    info = ImageInfo(format=image.format or "unknown", width=width, height=height, mode=image.mode)
    return OpenedImage(image, info)


def finish_decoding(opened: OpenedImage) -> DecodedImage:
    """Decode the pixels of a checked image into the 32x32 RGB model input."""
    image = opened.image
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; keep at least twice the model size
        # so the antialiasing resize below still has detail to average.
        image.draft("RGB", (MODEL_SIZE[0] * 2, MODEL_SIZE[1] * 2))
        image.load()
        image = _oriented(image)
        rgb = _to_rgb(image)
        fitted = ImageOps.fit(rgb, MODEL_SIZE, method=Image.Resampling.LANCZOS)
        pixels = np.asarray(fitted, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as error:
        raise invalid_image(
            f"the image data is truncated or corrupt ({type(error).__name__})"
        ) from None
    finally:
        image.close()
    return DecodedImage(pixels=pixels, info=opened.info)


def _oriented(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; malformed EXIF is ignored rather than failing the upload."""
    try:
        return ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError):
        return image


def preview_data_url(pixels: Pixels) -> str:
    """The 32x32 model input as a PNG data URL, for showing what the models saw."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
