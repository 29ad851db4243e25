"""What decoding an upload will cost, read from its header before any pixel is decoded.

Two costs bound a decode. Memory: the decoded canvas, the decoder's own buffers and every copy
the conversion to RGB makes, estimated from the header (``decode_cost``) so that a worker can
hold decodes to its memory budget. CPU: a progressive JPEG re-walks its whole coefficient buffer
once per scan, so a few kilobytes of empty scans cost seconds; ``read_jpeg_structure`` counts
them by walking the marker segments, so such a file is refused before libjpeg sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import ceil

from PIL import Image

MiB = 1024 * 1024

# Bytes per pixel of each mode in Pillow's storage: it keeps 2 and 3 bands in 4 bytes.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Each row of a Pillow image is a separately addressed line: a pointer per row.
_LINE_POINTER_BYTES = 8
# Below this many pixels the conversion to RGB works on the whole canvas, up to four copies of
# it; above, ``imaging`` crops and reduces it in strips of at most ``STRIP_PIXELS`` pixels.
REDUCE_ABOVE_PIXELS = 1024 * 1024
STRIP_PIXELS = 256 * 1024
_WHOLE_CANVAS_COPIES = 4
_STRIP_BYTES = 8 * 4 * STRIP_PIXELS  # a strip cropped, converted, composited and reduced
# libwebp's animation decoder keeps the canvas and the previous frame and hands Pillow a bytes
# copy that Pillow copies into the image: 16 bytes a pixel (measured: 15.3 lossless, 10.5 lossy).
_WEBP_BYTES_PER_PIXEL = 16
# PNG (and the other row decoders) keep the raw current and previous rows, up to 8 bytes a
# pixel each (16-bit RGBA): 40 MB for a 5,000,000 x 1 canvas.
_ROW_BYTES_PER_COLUMN = 16
# libjpeg holds a progressive (or multi-scan) file's DCT coefficients for the whole image:
# 64 two-byte coefficients per 8x8 block of each component, at full resolution whatever the
# scale it decodes to.
_COEFFICIENT_BYTES_PER_BLOCK = 128
# A sequential JPEG only needs a few rows of blocks, of the full width, at a time.
_JPEG_ROW_BYTES_PER_COLUMN = 64
# Zlib windows, decoder state, Python objects and allocator slack: what any decode costs
# whatever its size (a 6324^2 16-bit PNG peaked 0.01% over the estimate with 4 MiB here).
_FIXED_BYTES = 6 * MiB


@dataclass(frozen=True)
class JpegStructure:
    """What the marker segments of a JPEG say about the cost of decoding it."""

    scans: int
    segments: int
    progressive: bool
    # (horizontal, vertical) sampling factor of each component, from the frame header.
    sampling: tuple[tuple[int, int], ...]
    # Bytes between segments that are no marker: Pillow skips them one Python call each.
    junk_bytes: int = 0


class JpegTooComplex(Exception):
    """A JPEG with more scans, or more marker segments, than the limits allow."""

    def __init__(self, what: str, count: int, limit: int) -> None:
        super().__init__(f"{count} {what}, over the limit of {limit}")
        self.what = what
        self.count = count
        self.limit = limit


# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
# Start-of-frame markers (not DHT C4, JPG C8, DAC CC); the second set is progressive.
_FRAME = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE_FRAME = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOS = 0xDA
# In entropy-coded data a 0xFF byte is followed by 0x00 (a stuffed 0xFF) or a restart marker;
# anything else (after fill bytes) is the next marker segment.
_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")


def read_jpeg_structure(data: bytes, max_scans: int, max_segments: int) -> JpegStructure:
    """Walk the marker segments of ``data`` (a JPEG) by their lengths, counting scans.

    Entropy-coded data is skipped with a regular expression, never parsed byte by byte in
    Python. Raises ``JpegTooComplex`` past ``max_scans`` scans or ``max_segments`` segments;
    a damaged structure just ends the walk, and Pillow reports the damage when it decodes.
    """
    scans = segments = junk_bytes = 0
    progressive = False
    sampling: tuple[tuple[int, int], ...] = ()
    position, end = 2, len(data)  # after SOI
    while position + 1 < end:
        if data[position] != 0xFF:
            # Junk between segments, which libjpeg skips with a warning: so do we.
            marker_at = data.find(b"\xff", position)
            junk_bytes += (marker_at if marker_at >= 0 else end) - position
            if marker_at < 0:
                break
            position = marker_at
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        position += 2
        if marker == 0xD9:  # EOI: what follows is not part of the image
            break
        if marker in _STANDALONE or marker == 0x00:
            continue
        segments += 1
        if segments > max_segments:
            raise JpegTooComplex("marker segments", segments, max_segments)
        if position + 2 > end:
            break
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            break
        segment = data[position + 2 : position + length]
        position += length
        if marker in _FRAME:
            progressive = progressive or marker in _PROGRESSIVE_FRAME
            sampling = _frame_sampling(segment)
        elif marker == _SOS:
            scans += 1
            if scans > max_scans:
                raise JpegTooComplex("scans", scans, max_scans)
            following = _NEXT_MARKER.search(data, position)
            if following is None:
                break
            position = following.end() - 2
    return JpegStructure(scans, segments, progressive, sampling, junk_bytes)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def open_steps(data: bytes, limit: int) -> int:
    """How many chunks (PNG), marker segments or junk bytes (JPEG) Pillow walks one Python
    call each to open ``data``, counted up to ``limit + 1``; 0 for the other formats.

    Pillow spends 10 to 20 microseconds on each: a 16 KB PNG of empty chunks takes 14 ms to
    open, which is why only files that are small *and* simple are opened on the event loop.
    """
    if data.startswith(PNG_SIGNATURE):
        position = len(PNG_SIGNATURE)
        chunks = 0
        while position + 8 <= len(data) and chunks <= limit:
            position += 12 + int.from_bytes(data[position : position + 4], "big")
            chunks += 1
        return chunks
    if data.startswith(b"\xff\xd8"):
        try:
            structure = read_jpeg_structure(data, limit, limit)
        except JpegTooComplex:
            return limit + 1
        return min(limit + 1, structure.segments + structure.junk_bytes)
    return 0


def _frame_sampling(segment: bytes) -> tuple[tuple[int, int], ...]:
    # Precision (1), height (2), width (2), components (1), then 3 bytes per component.
    if len(segment) < 6:
        return ()
    components = segment[5]
    return tuple(
        (segment[i + 1] >> 4, segment[i + 1] & 0x0F)
        for i in range(6, min(len(segment) - 2, 6 + 3 * components), 3)
    )


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel of ``mode`` in Pillow's storage."""
    return _PIXEL_BYTES.get(mode, 4)


def canvas_bytes(mode: str, width: int, height: int) -> int:
    """What Pillow allocates for a ``mode`` image of ``width`` x ``height``."""
    return width * height * pixel_bytes(mode) + height * _LINE_POINTER_BYTES


def draft_scale(width: int, height: int, wanted: tuple[int, int]) -> int:
    """The 1/1 to 1/8 scale ``Image.draft`` picks for a JPEG so it stays at least ``wanted``."""
    fits = min(width // wanted[0], height // wanted[1])
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


def conversion_bytes(width: int, height: int) -> int:
    """The copies converting a loaded canvas to the fitted RGB model input makes, any mode."""
    if width * height <= REDUCE_ABOVE_PIXELS:
        return _WHOLE_CANVAS_COPIES * canvas_bytes("RGBA", width, height)
    return _STRIP_BYTES


def jpeg_decoder_bytes(width: int, height: int, structure: JpegStructure) -> int:
    """libjpeg's own buffers for a ``width`` x ``height`` JPEG (full size, not the draft's)."""
    if not structure.progressive and structure.scans <= 1:
        components = max(1, len(structure.sampling))
        return width * components * _JPEG_ROW_BYTES_PER_COLUMN
    sampling = structure.sampling or ((1, 1),)
    h_max = max(h for h, _ in sampling) or 1
    v_max = max(v for _, v in sampling) or 1
    # Each component is padded to whole MCUs: 8 * h_max by 8 * v_max pixels.
    mcu_columns = ceil(width / (8 * h_max))
    mcu_rows = ceil(height / (8 * v_max))
    blocks = sum(mcu_columns * h * mcu_rows * v for h, v in sampling)
    return blocks * _COEFFICIENT_BYTES_PER_BLOCK


def decode_cost(
    image: Image.Image, wanted: tuple[int, int], jpeg: JpegStructure | None = None
) -> int:
    """Estimated peak bytes decoding ``image`` (opened, not loaded) to the model input takes.

    ``wanted`` is the smallest size the JPEG draft may decode to; ``jpeg`` the structure of a
    JPEG upload. An upper estimate: a budget that holds it leaves room for the real peak.
    """
    width, height = image.size
    mode = image.mode
    if image.format == "JPEG":
        scale = draft_scale(width, height, wanted)
        loaded = ((width + scale - 1) // scale, (height + scale - 1) // scale)
        structure = jpeg or JpegStructure(1, 0, False, ())
        decoder = jpeg_decoder_bytes(width, height, structure)
    else:
        loaded = (width, height)
        decoder = width * _ROW_BYTES_PER_COLUMN
        if image.format == "WEBP":
            decoder = width * height * _WEBP_BYTES_PER_PIXEL - canvas_bytes(mode, width, height)
    return _FIXED_BYTES + decoder + canvas_bytes(mode, *loaded) + conversion_bytes(*loaded)
