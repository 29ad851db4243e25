"""Format sniffing: which uploads are recognised and refused (415) before Pillow sees them.

A document is judged by its start: an accepted binary format (PNG, JPEG, GIF, BMP, WebP) goes
to its decoder whatever its chunks quote, and a text document is SVG only when its root element,
after a BOM, whitespace, the XML declaration, comments and a doctype, is ``<svg``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from service.core.imaging import decode_image
from service.errors import ApiError
from tests.helpers.images import encode

LIMIT = 40_000_000
SVG_ROOT = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'


def refusal(data: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode_image(data, LIMIT)
    return caught.value


def assert_refused_as(data: bytes, name: str) -> None:
    error = refusal(data)
    assert (error.status_code, error.code) == (415, "UNSUPPORTED_MEDIA_TYPE"), error.message
    assert error.message.startswith(f"{name} images are not accepted"), error.message


def png_with_text(text: bytes) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text.decode())
    return encode(Image.new("RGB", (8, 8), (10, 200, 30)), "PNG", pnginfo=info)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize(
    "text",
    [SVG_ROOT, b'<?xml version="1.0"?><svg/>', b"   <svg onload='x'>" + b" " * 600],
)
def test_png_quoting_svg_in_a_text_chunk_is_decoded(text: bytes) -> None:
    data = png_with_text(text)
    assert b"<svg" in data[:512]

    decoded = decode_image(data, LIMIT)

    assert decoded.info.format == "PNG"
    assert decoded.pixels.shape == (32, 32, 3)


def test_png_with_svg_in_a_ztxt_chunk_is_decoded() -> None:
    data = bytearray(png_with_text(b"x"))
    # A hand-made chunk right after IHDR: the raw "<svg" in its keyword sits in the first bytes.
    ztxt = _chunk(b"zTXt", b"<svg\x00\x00" + zlib.compress(b"<svg/>"))
    data[33:33] = ztxt

    assert decode_image(bytes(data), LIMIT).info.format == "PNG"


@pytest.mark.parametrize(
    ("name", "options"), [("GIF", {}), ("JPEG", {}), ("BMP", {}), ("WEBP", {"lossless": True})]
)
def test_other_accepted_formats_ending_in_svg_text_are_decoded(
    name: str, options: dict[str, Any]
) -> None:
    data = encode(Image.new("RGB", (8, 8), (1, 2, 3)), name, **options)

    assert decode_image(data + b"<svg/>", LIMIT).info.format == name


@pytest.mark.parametrize(
    "prefix",
    [
        b" " * 600,  # past the 512 bytes the old sniffer looked at
        b"\n\t\r\n" * 300,
        b"\xef\xbb\xbf\n  ",
        b"<!-- " + b"x" * 2000 + b" -->\n",
        b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<!-- made by hand -->\n'
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n',
        b'<!DOCTYPE svg [ <!ENTITY a "<b>"> ]>\n',
    ],
)
def test_svg_after_whitespace_and_prolog_is_refused(prefix: bytes) -> None:
    assert_refused_as(prefix + SVG_ROOT, "SVG")


def test_utf16_svg_is_refused() -> None:
    data = ("\ufeff\n" + SVG_ROOT.decode()).encode("utf-16-le")

    assert_refused_as(data, "SVG")


def test_xml_declaration_is_refused_as_svg_when_the_root_is_past_the_head() -> None:
    data = b'<?xml version="1.0"?>\n<!-- ' + b"x" * 70_000 + b" -->" + SVG_ROOT

    assert_refused_as(data, "SVG")


def test_text_mentioning_svg_mid_document_is_not_called_svg() -> None:
    error = refusal(b"hello, this is not an image: " + SVG_ROOT)

    assert (error.status_code, error.code) == (400, "INVALID_IMAGE")


@pytest.mark.parametrize("header", [b"II+\x00\x08\x00\x00\x00", b"MM\x00+\x00\x08\x00\x00"])
def test_bigtiff_is_refused_as_tiff(header: bytes) -> None:
    data = header + struct.pack("<Q", 16) + bytes(64)

    assert_refused_as(data, "TIFF")


def test_classic_tiff_is_still_refused_as_tiff() -> None:
    assert_refused_as(encode(Image.new("RGB", (4, 4)), "TIFF"), "TIFF")


@pytest.mark.parametrize("compression", [None, "tga_rle"])
def test_tga_with_its_footer_is_named_tga(compression: str | None) -> None:
    options = {"compression": compression} if compression else {}
    data = encode(Image.new("RGB", (4, 4), (9, 9, 9)), "TGA", **options)
    assert data.endswith(b"TRUEVISION-XFILE.\x00")

    assert_refused_as(data, "TGA")


def test_tga_without_footer_is_not_called_a_cursor_alone() -> None:
    data = encode(Image.new("RGB", (4, 4), (9, 9, 9)), "TGA")[:-26]  # an old TGA 1.0 file
    assert data.startswith(b"\x00\x00\x02\x00")

    assert_refused_as(data, "CUR or TGA")


def test_ico_is_still_refused_as_ico() -> None:
    assert_refused_as(encode(Image.new("RGB", (16, 16)), "ICO"), "ICO")
