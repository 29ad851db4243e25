"""Test images: seeded RGB pictures in any format Pillow writes, and crafted files."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def sample_pixels(seed: int, width: int = 40, height: int = 36) -> np.ndarray:
    """A gradient with seeded noise, so different seeds give visibly different images."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    base = np.stack(np.broadcast_arrays(x, y, 255 - x), axis=-1)
    noise = rng.integers(-40, 40, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def encode(image: Image.Image, format: str, **options: Any) -> bytes:
    """``image`` saved by Pillow in ``format``, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def image_bytes(format: str = "PNG", seed: int = 0, width: int = 40, height: int = 36) -> bytes:
    """A colourful RGB test image in ``format``."""
    return encode(Image.fromarray(sample_pixels(seed, width, height), "RGB"), format)


def multipart(data: bytes, name: str = "image.png", content_type: str = "image/png") -> Any:
    """A ``files=`` argument uploading ``data`` as the multipart field ``file``."""
    return {"file": (name, data, content_type)}
