"""``decode_image``: every accepted format to 32x32 RGB, everything else refused."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from service.core.imaging import decode_image
from service.errors import ApiError
from tests.helpers.images import encode, sample_pixels

LIMIT = 40_000_000
WHITE = (255, 255, 255)
RED = (230, 20, 20)


def decode(data: bytes, max_pixels: int = LIMIT) -> np.ndarray:
    pixels: np.ndarray = decode_image(data, max_pixels).pixels
    assert pixels.shape == (32, 32, 3)
    assert pixels.dtype == np.uint8
    return pixels


def refusal(data: bytes, max_pixels: int = LIMIT) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode_image(data, max_pixels)
    return caught.value


def png_with_canvas(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to claim ``width`` x ``height`` (with a valid CRC)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def smooth_pixels(width: int, height: int) -> np.ndarray:
    """A noise-free image whose four corners all differ, so any rotation shows."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    return np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# Accepted formats


@pytest.mark.parametrize(
    ("format", "options"),
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
        ("BMP", {}),
    ],
)
def test_decode_image_accepted_formats_give_32x32_rgb(
    format: str, options: dict[str, object]
) -> None:
    colour = (40, 120, 200)
    data = encode(Image.new("RGB", (50, 40), colour), format, **options)

    decoded = decode_image(data, LIMIT)

    assert decoded.pixels.shape == (32, 32, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.info.format == format
    assert (decoded.info.width, decoded.info.height) == (50, 40)
    np.testing.assert_allclose(decoded.pixels.mean(axis=(0, 1)), colour, atol=3)


def test_decode_image_png_keeps_the_pixels_of_a_32x32_image() -> None:
    pixels = sample_pixels(seed=3, width=32, height=32)

    np.testing.assert_array_equal(decode(encode(Image.fromarray(pixels), "PNG")), pixels)


def test_decode_image_center_crops_to_square() -> None:
    bands = np.zeros((32, 96, 3), np.uint8)
    bands[:, :32] = (255, 0, 0)
    bands[:, 32:64] = (0, 255, 0)
    bands[:, 64:] = (0, 0, 255)

    pixels = decode(encode(Image.fromarray(bands), "PNG"))

    np.testing.assert_allclose(pixels[:, 2:30].mean(axis=(0, 1)), (0, 255, 0), atol=3)


def test_decode_image_large_jpeg_decodes() -> None:
    data = encode(Image.fromarray(smooth_pixels(1200, 900)), "JPEG", quality=90)

    decoded = decode_image(data, LIMIT)

    assert (decoded.info.width, decoded.info.height) == (1200, 900)
    assert decoded.pixels.shape == (32, 32, 3)


# Modes


def test_decode_image_rgba_transparency_composites_on_white() -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)  # left half: transparent black
    rgba[:, 32:] = (*RED, 255)

    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMIT)

    assert decoded.info.mode == "RGBA"
    np.testing.assert_allclose(decoded.pixels[:, :12].mean(axis=(0, 1)), WHITE, atol=2)
    np.testing.assert_allclose(decoded.pixels[:, 20:].mean(axis=(0, 1)), RED, atol=2)


def test_decode_image_grayscale_alpha_composites_on_white() -> None:
    la = Image.new("LA", (40, 40), (0, 0))
    la.paste((60, 255), (20, 0, 40, 40))

    pixels = decode(encode(la, "PNG"))

    np.testing.assert_allclose(pixels[:, :12].mean(axis=(0, 1)), WHITE, atol=2)
    np.testing.assert_allclose(pixels[:, 20:].mean(axis=(0, 1)), (60, 60, 60), atol=2)


@pytest.mark.parametrize("format", ["PNG", "GIF"])
def test_decode_image_palette_transparency_composites_on_white(format: str) -> None:
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([*RED, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 20, 40))  # left half: the transparent blue entry

    decoded = decode_image(encode(palette, format, transparency=1), LIMIT)

    assert decoded.info.mode == "P"
    np.testing.assert_allclose(decoded.pixels[:, :12].mean(axis=(0, 1)), WHITE, atol=2)
    np.testing.assert_allclose(decoded.pixels[:, 20:].mean(axis=(0, 1)), RED, atol=2)


def test_decode_image_grayscale_becomes_equal_channels() -> None:
    gray = Image.fromarray(smooth_pixels(48, 48)[:, :, 0], "L")

    decoded = decode_image(encode(gray, "PNG"), LIMIT)

    assert decoded.info.mode == "L"
    pixels = decoded.pixels
    np.testing.assert_array_equal(pixels[:, :, 0], pixels[:, :, 1])
    np.testing.assert_array_equal(pixels[:, :, 0], pixels[:, :, 2])
    assert pixels[:, :, 0].max() - pixels[:, :, 0].min() > 200


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (0x8080, 128), (65535, 255)])
def test_decode_image_16_bit_png_scales_to_8_bit(value: int, expected: int) -> None:
    image = Image.fromarray(np.full((20, 30), value, np.uint16))
    assert image.mode == "I;16"

    decoded = decode_image(encode(image, "PNG"), LIMIT)

    assert decoded.info.mode == "I;16"
    assert np.all(decoded.pixels == expected)


def test_decode_image_cmyk_jpeg_converts_to_rgb() -> None:
    cyan = Image.new("CMYK", (40, 40), (255, 0, 0, 0))

    decoded = decode_image(encode(cyan, "JPEG", quality=95), LIMIT)

    assert decoded.info.mode == "CMYK"
    np.testing.assert_allclose(decoded.pixels.mean(axis=(0, 1)), (0, 255, 255), atol=3)


def test_decode_image_exif_orientation_is_applied() -> None:
    original = Image.fromarray(smooth_pixels(96, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tagged = encode(original, "JPEG", quality=95, exif=exif.tobytes())
    upright = encode(original.transpose(Image.Transpose.ROTATE_270), "PNG")

    pixels = decode(tagged)

    assert mean_abs_diff(pixels, decode(upright)) < 3
    assert mean_abs_diff(pixels, decode(encode(original, "PNG"))) > 20


# Size limits


def test_decode_image_decompression_bomb_is_refused_fast() -> None:
    bomb = png_with_canvas(100_000, 100_000)

    started = time.perf_counter()
    error = refusal(bomb)
    elapsed = time.perf_counter() - started

    assert (error.status_code, error.code) == (413, "IMAGE_TOO_LARGE")
    assert elapsed < 0.5


def test_decode_image_over_pillows_limit_names_the_dimensions() -> None:
    error = refusal(png_with_canvas(10_000, 10_000))

    assert (error.status_code, error.code) == (413, "IMAGE_TOO_LARGE")
    assert "10000x10000" in error.message


def test_decode_image_over_max_pixels_is_image_too_large() -> None:
    data = encode(Image.new("RGB", (20, 20), RED), "PNG")

    error = refusal(data, max_pixels=399)

    assert (error.status_code, error.code) == (413, "IMAGE_TOO_LARGE")
    assert "20x20" in error.message
    assert decode(data, max_pixels=400).shape == (32, 32, 3)


# Refused and broken input


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(Image.new("RGB", (16, 16), RED), "TIFF"), "TIFF"),
        (encode(Image.new("RGB", (16, 16), RED), "ICO"), "ICO"),
        (b"8BPS\x00\x01" + bytes(64), "PSD"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS"),
    ],
)
def test_decode_image_refused_formats_are_unsupported_media_type(data: bytes, name: str) -> None:
    error = refusal(data)

    assert (error.status_code, error.code) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert name in error.message


def test_decode_image_random_bytes_are_invalid_image() -> None:
    data = np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8).tobytes()

    error = refusal(data)

    assert (error.status_code, error.code) == (400, "INVALID_IMAGE")


def test_decode_image_empty_bytes_are_invalid_image() -> None:
    error = refusal(b"")

    assert (error.status_code, error.code) == (400, "INVALID_IMAGE")


def test_decode_image_truncated_jpeg_is_invalid_image() -> None:
    data = encode(Image.fromarray(sample_pixels(seed=5, width=200, height=200)), "JPEG")

    error = refusal(data[: len(data) // 3])

    assert (error.status_code, error.code) == (400, "INVALID_IMAGE")
