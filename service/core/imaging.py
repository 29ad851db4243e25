"""Decode an uploaded image into the 32x32 RGB pixels the models take.

Only an allowlist of formats is ever parsed, the pixel count is checked from the header before
any pixel is decoded, and no external program is ever started (Pillow's EPS plugin would run
Ghostscript): other formats are recognised by their magic bytes and refused. A JPEG's scans are
counted before libjpeg sees it, and the estimated memory of the decode (``decode_cost``) is
known before any pixel is decoded, so the caller can hold decodes to a budget.

Past the decode itself nothing is full size: a large canvas is cropped to its centre square and
reduced in strips of rows (16-bit scaling and alpha compositing in integer arithmetic, strip
by strip) before it is oriented and fitted to the model's size.
"""

from __future__ import annotations

import base64
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from sepconv_contract import INPUT_SHAPE
from sepconv_contract.schemas import ImageInfo
from service.core.decode_cost import (
    REDUCE_ABOVE_PIXELS,
    STRIP_PIXELS,
    JpegStructure,
    JpegTooComplex,
    decode_cost,
    read_jpeg_structure,
)
from service.errors import (
    ApiError,
    image_header_too_large,
    image_metadata_too_large,
    image_too_complex,
    image_too_large,
    invalid_image,
    unsupported_media_type,
)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MODEL_SIZE = (INPUT_SHAPE[1], INPUT_SHAPE[0])  # Pillow sizes are (width, height)
# JPEG can decode at 1/2, 1/4 or 1/8 scale for free, and a large canvas is reduced by whole
# factors: both keep at least twice the model size, so the antialiasing fit still has detail.
DRAFT_SIZE = (MODEL_SIZE[0] * 2, MODEL_SIZE[1] * 2)
Pixels = npt.NDArray[np.uint8]

# A sane progressive JPEG has about ten scans (libjpeg's script), mozjpeg's a few more; each
# scan costs a walk over every coefficient of the image.
MAX_JPEG_SCANS = 64
# Marker segments: 64 scans with their Huffman tables are 128, the metadata a few dozen more.
# Pillow walks each in Python, a few microseconds apiece.
MAX_JPEG_SEGMENTS = 512

# Pillow inflates up to 64 MB of PNG text (tEXt, zTXt, iTXt, and the iCCP ICC profile, which
# shares the per-chunk limit) before the first pixel: 60 chunks of a megabyte each are a 63 KB
# file that costs 160 ms. These are process-wide Pillow settings, set where Pillow is used:
# 256 KiB holds any real ICC profile or XMP packet, 1 MiB of text in all any real file.
PNG_TEXT_CHUNK_BYTES = 256 * 1024
PNG_TEXT_MEMORY_BYTES = 1024 * 1024
PngImagePlugin.MAX_TEXT_CHUNK = PNG_TEXT_CHUNK_BYTES
PngImagePlugin.MAX_TEXT_MEMORY = PNG_TEXT_MEMORY_BYTES

# Magic bytes of image formats we recognise but refuse, so the client hears 415, not 400.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    # A cursor's header, and also the first bytes of the commonest TGA (no image id, no colour
    # map, uncompressed true colour): TGA has no magic, so without its footer we cannot tell.
    (b"\x00\x00\x02\x00", "CUR or TGA"),
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
# The signatures of the accepted formats: such a file is left to its decoder, whatever its
# chunks or comments hold (a PNG's text chunk may well quote "<svg").
_ALLOWED_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
# A TGA 2.0 file ends with this footer, the one reliable mark of the format.
_TGA_FOOTER = b"TRUEVISION-XFILE.\x00"
# How far into a text document we look for its root element: past a BOM, an XML declaration,
# comments and a doctype; a document whose root is further in is not told apart (400).
_TEXT_HEAD_BYTES = 64 * 1024
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_XML_WHITESPACE = re.compile(rb"[ \t\r\n]*")


def _markup_head(data: bytes) -> bytes | None:
    """The head of a text document as ASCII-compatible bytes, or None if it is not text."""
    head = data[:_TEXT_HEAD_BYTES]
    if head.startswith(_UTF16_BOMS):
        # An odd cut at the limit leaves half a character; ignoring it only loses that one.
        return head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
    head = head.removeprefix(b"\xef\xbb\xbf")
    # A NUL never occurs in UTF-8 or ASCII text, and occurs early in nearly every binary file.
    return None if b"\x00" in head[:1024] else head


def _skip_prolog(head: bytes) -> tuple[int, bool]:
    """Where the root element may start, after whitespace, processing instructions (the XML
    declaration), comments and a doctype; and whether the document declared itself XML."""
    position, xml = 0, False
    while True:
        blank = _XML_WHITESPACE.match(head, position)  # "*" matches even nothing
        position = blank.end() if blank else position
        if head.startswith(b"<?", position):
            xml = xml or head[position + 2 : position + 5].lower() == b"xml"
            end, width = head.find(b"?>", position + 2), 2
        elif head.startswith(b"<!--", position):
            end, width = head.find(b"-->", position + 4), 3
        elif head[position : position + 9].upper() == b"<!DOCTYPE":
            close, bracket = head.find(b">", position), head.find(b"[", position)
            if 0 <= bracket < close:  # an internal subset: its declarations hold ">" too
                close = head.find(b"]", bracket)
                close = head.find(b">", close) if close >= 0 else -1
            end, width = close, 1
        else:
            return position, xml
        if end < 0:  # the prolog runs past the head: no root element in sight
            return len(head), xml
        position = end + width


def _text_format(data: bytes) -> str | None:
    """"SVG" for a text document whose root element is ``<svg``, "XML" for another document
    that declares itself XML; judged from the document's start only, never from inside it."""
    head = _markup_head(data)
    if head is None:
        return None
    position, xml = _skip_prolog(head)
    root = head[position : position + 5].lower()
    if root.startswith(b"<svg") and (len(root) == 4 or root[4:] in b" \t\r\n/>"):
        return "SVG"
    if xml:
        # An XML document whose root lies past the head is most likely an SVG with a long
        # prolog; one with another root is no image at all, and is named for what it is.
        return "SVG" if position >= len(head) else "XML"
    return None


def _refused_format(data: bytes) -> str | None:
    """The name of a format we recognise and refuse (415), or None to let Pillow try."""
    if data.startswith(_ALLOWED_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return None
    if data.endswith(_TGA_FOOTER):
        return "TGA"
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return _text_format(data)


@dataclass(frozen=True)
class DecodedImage:
    """The model input (32x32x3 uint8) and what the upload was."""

    pixels: Pixels
    info: ImageInfo


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Modes ``Image.reduce`` averages as they are, with no conversion needed first.
_REDUCIBLE = ("RGB", "L", "CMYK", "YCbCr", "LAB", "HSV")


def _sample_peak(image: Image.Image) -> int | float:
    """The value that maps to 255: 16-bit samples are scaled from 65535, 32-bit ones from
    65535 too when any exceeds 255 (a 16-bit image in a 32-bit mode), else from 255."""
    if image.mode in _SIXTEEN_BIT:
        return 65535
    extrema = image.getextrema()  # in C, no copy of the canvas
    high = extrema[1] if isinstance(extrema[1], int | float) else 255
    return 65535 if high > 255 else 255


def _to_rgb(image: Image.Image, peak: int | float | None = None) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white, 16-bit scaled to 8-bit.

    ``peak`` (see ``_sample_peak``) is given when ``image`` is one strip of a larger canvas.
    """
    if image.mode == "RGB":
        return image
    if image.mode in (*_SIXTEEN_BIT, "I", "F"):
        return Image.fromarray(_scaled_to_8_bit(image, peak), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _scaled_to_8_bit(image: Image.Image, peak: int | float | None) -> Pixels:
    """The samples of a 16- or 32-bit image scaled so ``peak`` is 255, rounded to nearest."""
    peak = _sample_peak(image) if peak is None else peak
    if image.mode == "F":
        floats = np.asarray(image, dtype=np.float32)
        rounded: Pixels = np.clip(floats * np.float32(255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return rounded
    # round(v * 255 / peak) in integers: (2 * 255 * v + peak) // (2 * peak), exact, and
    # 32 bits are enough once v is clipped to the peak.
    samples = np.clip(np.asarray(image), 0, int(peak)).astype(np.uint32)
    scaled: Pixels = ((samples * 510 + int(peak)) // (2 * int(peak))).astype(np.uint8)
    return scaled


def _fitted_large(image: Image.Image) -> Image.Image:
    """A large loaded canvas fitted to the model input: its centre square, reduced by a whole
    factor, converted to RGB and resized; the same pixels as ``ImageOps.fit`` within a level
    or two, without a full-size copy.

    The centre square commutes with any EXIF transposition because the model input is square.
    Modes ``Image.reduce`` takes as they are reduce in one call; the others are converted
    strip by strip, each strip a whole number of ``factor`` rows.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    factor = max(1, side // DRAFT_SIZE[0])
    if image.mode in _REDUCIBLE:
        reduced = _to_rgb(image.reduce(factor, (left, top, left + side, top + side)))
    else:
        peak = _sample_peak(image) if image.mode in (*_SIXTEEN_BIT, "I", "F") else None
        reduced = Image.new("RGB", (-(-side // factor),) * 2)
        rows = factor * max(1, STRIP_PIXELS // (side * factor))
        for offset in range(0, side, rows):
            box = (left, top + offset, left + side, top + min(offset + rows, side))
            strip = _to_rgb(image.crop(box), peak)
            reduced.paste(strip.reduce(factor), (0, offset // factor))
    # The last row and column of blocks may be partial: resize the exact reduced square, not
    # the whole rounded-up canvas, or the picture is stretched by up to one block.
    exact = side / factor
    return reduced.resize(MODEL_SIZE, Image.Resampling.LANCZOS, box=(0, 0, exact, exact))


_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transposition the EXIF (or XMP) orientation asks for, as ``exif_transpose`` reads
    it; malformed EXIF is ignored rather than failing the upload."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError):
        return None
    return _TRANSPOSITIONS.get(orientation) if isinstance(orientation, int) else None


@dataclass(frozen=True)
class OpenedImage:
    """An upload whose header is read and checked, its pixels not yet decoded."""

    image: Image.Image
    info: ImageInfo
    jpeg: JpegStructure | None = None

    @property
    def pixels(self) -> int:
        return self.info.width * self.info.height

    @property
    def cost_bytes(self) -> int:
        """Estimated peak memory of decoding it to the model input (``decode_cost``)."""
        return decode_cost(self.image, DRAFT_SIZE, self.jpeg)


def decode_image(
    data: bytes, max_pixels: int, max_jpeg_scans: int = MAX_JPEG_SCANS
) -> DecodedImage:
    """Decode, orient, convert, center-crop and resize an upload to the 32x32 model input."""
    return finish_decoding(open_image(data, max_pixels, max_jpeg_scans))


def open_image(data: bytes, max_pixels: int, max_jpeg_scans: int = MAX_JPEG_SCANS) -> OpenedImage:
    """Identify the format and read the header only; refuse it before any pixel is decoded."""
    if not data:
        raise invalid_image("the image is empty (0 bytes)")
    refused = _refused_format(data)
    if refused is not None:
        raise unsupported_media_type(
            f"{refused} images are not accepted; send one of {', '.join(ALLOWED_FORMATS)}"
        )
    jpeg = None
    if data.startswith(b"\xff\xd8"):
        try:
            jpeg = read_jpeg_structure(data, max_jpeg_scans, MAX_JPEG_SEGMENTS)
        except JpegTooComplex as error:
            raise image_too_complex(error.what, error.limit) from None
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
        raise _metadata_or_damage(error, "the image header is damaged") from None

    width, height = image.size
    if width < 1 or height < 1:
        raise invalid_image(f"the image claims an empty canvas of {width}x{height}")
    if width * height > max_pixels:
        raise image_too_large(width, height, max_pixels)
    info = ImageInfo(format=image.format or "unknown", width=width, height=height, mode=image.mode)
    return OpenedImage(image, info, jpeg)


def _metadata_or_damage(error: Exception, damage: str) -> ApiError:
    """Pillow's text-chunk limits raise a plain ValueError; anything else is damage."""
    if isinstance(error, ValueError) and "MAX_TEXT" in str(error):
        return image_metadata_too_large(PNG_TEXT_CHUNK_BYTES, PNG_TEXT_MEMORY_BYTES)
    return invalid_image(f"{damage} ({type(error).__name__})")


def finish_decoding(opened: OpenedImage) -> DecodedImage:
    """Decode the pixels of a checked image into the 32x32 RGB model input."""
    image = opened.image
    try:
        image.draft("RGB", DRAFT_SIZE)
        image.load()
        transposition = _orientation(image)
        if image.width * image.height > REDUCE_ABOVE_PIXELS:
            fitted = _fitted_large(image)
            image.close()  # the full-size canvas is no longer needed: free it now
            if transposition is not None:
                fitted = fitted.transpose(transposition)
        else:
            oriented = image.transpose(transposition) if transposition is not None else image
            rgb = _to_rgb(oriented)
            fitted = ImageOps.fit(rgb, MODEL_SIZE, method=Image.Resampling.LANCZOS)
        pixels = np.asarray(fitted, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as error:
        raise _metadata_or_damage(error, "the image data is truncated or corrupt") from None
    finally:
        image.close()
    return DecodedImage(pixels=pixels, info=opened.info)


def preview_data_url(pixels: Pixels) -> str:
    """The 32x32 model input as a PNG data URL, for showing what the models saw."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
