"""What a decode costs, known before it runs: the JPEG scan count, the memory estimate, the
per-worker budget that holds decodes to it, and the real peak of the worst uploads.

The crafted uploads come from ``sepconv_bench.decode_attacks``, the same files the attack
figures are measured with.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image

from sepconv_bench.decode_attacks import (
    _png,
    _png_chunk,
    deep_png,
    lossless_webp,
    rgba_png,
    scan_bomb_jpeg,
    thin_png,
    ztxt_bomb_png,
)
from service.core.decode_budget import DecodeBudget
from service.core.decode_cost import JpegTooComplex, open_steps, read_jpeg_structure
from service.core.imaging import MAX_JPEG_SCANS, decode_image, open_image
from service.core.prediction import decode_upload
from service.errors import ApiError
from tests.helpers.images import encode, sample_pixels

LIMIT = 40_000_000
MiB = 1024 * 1024
REPOSITORY = Path(__file__).parents[3]
T = TypeVar("T")


def refusal(data: bytes, **options: int) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode_image(data, LIMIT, **options)
    return caught.value


def photo(width: int = 200, height: int = 150) -> Image.Image:
    return Image.fromarray(sample_pixels(seed=3, width=width, height=height))


# JPEG structure


def test_read_jpeg_structure_counts_the_scans_of_real_jpegs() -> None:
    progressive = encode(photo(), "JPEG", progressive=True)
    baseline = encode(photo(), "JPEG")

    walked = read_jpeg_structure(progressive, MAX_JPEG_SCANS, 512)
    plain = read_jpeg_structure(baseline, MAX_JPEG_SCANS, 512)

    # libjpeg's progressive script for three components has ten scans.
    assert (walked.scans, walked.progressive) == (progressive.count(b"\xff\xda"), True)
    assert walked.scans == 10
    assert (plain.scans, plain.progressive) == (1, False)
    assert walked.sampling == ((2, 2), (1, 1), (1, 1))


def test_read_jpeg_structure_walks_segments_not_bytes() -> None:
    # SOS bytes inside a comment and inside entropy-coded data are not scans.
    comment = b"\xff\xfe" + (2 + 400).to_bytes(2, "big") + b"\xff\xda" * 200
    data = encode(photo(), "JPEG")
    data = data[:2] + comment + data[2:]

    structure = read_jpeg_structure(data, MAX_JPEG_SCANS, 512)

    assert data.count(b"\xff\xda") > 200
    assert structure.scans == 1
    assert decode_image(data, LIMIT).pixels.shape == (32, 32, 3)


def test_read_jpeg_structure_stops_past_the_limits() -> None:
    with pytest.raises(JpegTooComplex) as scans:
        read_jpeg_structure(scan_bomb_jpeg(scans=4000), 64, 10_000)
    with pytest.raises(JpegTooComplex) as segments:
        read_jpeg_structure(scan_bomb_jpeg(scans=100), 1000, 50)
    assert (scans.value.what, scans.value.count) == ("scans", 65)
    assert segments.value.what == "marker segments"


@pytest.mark.timeout(30)
def test_decode_image_refuses_a_scan_bomb_before_decoding() -> None:
    bomb = scan_bomb_jpeg()  # 65000x600 within the pixel limit, 4,000 empty scans, 56 KB

    started = time.perf_counter()
    error = refusal(bomb)

    assert time.perf_counter() - started < 0.1
    assert (error.status_code, error.code) == (422, "IMAGE_TOO_COMPLEX")
    assert "64" in error.message and "SEPCONV_MAX_JPEG_SCANS" in error.message


@pytest.mark.timeout(30)
def test_decode_image_takes_a_progressive_jpeg_at_the_scan_limit() -> None:
    real = encode(photo(), "JPEG", progressive=True)
    at_limit = scan_bomb_jpeg(2000, 600, MAX_JPEG_SCANS - 1)

    assert decode_image(real, LIMIT).info.format == "JPEG"
    assert decode_image(at_limit, LIMIT).info.width == 2000
    assert refusal(scan_bomb_jpeg(2000, 600, MAX_JPEG_SCANS)).code == "IMAGE_TOO_COMPLEX"


# PNG text chunks


def test_decode_image_refuses_a_ztxt_bomb_at_once() -> None:
    bomb = ztxt_bomb_png()  # 60 zTXt chunks of 1 MiB each, in 63 KB

    started = time.perf_counter()
    error = refusal(bomb)

    assert time.perf_counter() - started < 0.05
    assert len(bomb) < 64 * 1024
    assert (error.status_code, error.code) == (422, "IMAGE_TOO_COMPLEX")
    assert "strip the metadata" in error.message


def test_decode_image_keeps_ordinary_png_text() -> None:
    text = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"x" * 100_000))
    data = _png(40, 30, 8, 2, 3, extra=text * 3)

    assert decode_image(data, LIMIT).pixels.shape == (32, 32, 3)


# The memory estimate


def opened_cost(data: bytes) -> int:
    return open_image(data, LIMIT).cost_bytes


def test_decode_cost_counts_bands_bytes_and_conversions() -> None:
    side = 6324
    pixels = side * side
    deep, rgba = opened_cost(deep_png(side)), opened_cost(rgba_png(side))
    gray = opened_cost(_png(side, side, 8, 0, 1))

    assert 2 * pixels < deep < 2 * pixels + 16 * MiB  # I;16: two bytes a sample, in strips
    assert 4 * pixels < rgba < 4 * pixels + 16 * MiB  # RGBA: four bytes a pixel
    assert pixels < gray < deep < rgba
    # One pixel a row: Pillow's eight-byte line pointer per row dominates.
    assert opened_cost(thin_png(5_000_000)) > 9 * 5_000_000
    # libwebp holds several canvases; a lossless WebP of a few dozen bytes costs 16 B a pixel.
    assert opened_cost(lossless_webp(4000, 3000)) > 16 * 4000 * 3000


def test_decode_cost_of_jpeg_follows_its_scans_not_its_draft() -> None:
    image = Image.fromarray(sample_pixels(seed=1, width=2400, height=1600))
    baseline = opened_cost(encode(image, "JPEG"))
    progressive = opened_cost(encode(image, "JPEG", progressive=True))
    full_444 = opened_cost(encode(image, "JPEG", progressive=True, subsampling=0))

    # A baseline JPEG decodes at 1/8 scale row by row; a progressive one keeps every DCT
    # coefficient of the full image (2 bytes each, 1.5 samples a pixel at 4:2:0, 3 at 4:4:4).
    assert baseline < 8 * MiB
    assert 1.5 * 2 * 2400 * 1600 < progressive < full_444 < 3 * 2 * 2400 * 1600 + 16 * MiB


# The real peak: each case in a fresh interpreter, its high-water mark reset before decoding.

PEAK_SCRIPT = """
import json, sys
from sepconv_bench import decode_attacks
from service.core.imaging import finish_decoding, open_image

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

data = eval(sys.argv[1], vars(decode_attacks))
opened = open_image(data, 40_000_000)
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # resets VmHWM to the current RSS
before = status("VmRSS")
finish_decoding(opened)
print(json.dumps({"peak": status("VmHWM") - before, "estimate": opened.cost_bytes}))
"""


def decode_peak(expression: str) -> tuple[int, int]:
    """The extra peak RSS of decoding ``expression`` (of ``decode_attacks``), and its estimate."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure a peak RSS")
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, expression],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPOSITORY,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout)
    return int(measured["peak"]), int(measured["estimate"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("expression", "limit_mib"),
    [
        ("deep_png(6324)", 120),  # was +1,069 MiB through float64 arrays
        ("rgba_png(4000)", 96),  # was +4 copies of the canvas
        ("thin_png(5_000_000)", 72),  # was +140 MiB: a second canvas of line pointers
    ],
)
def test_decode_worst_pngs_peak_within_their_estimate(expression: str, limit_mib: int) -> None:
    peak, estimate = decode_peak(expression)

    assert peak < limit_mib * MiB, (peak / MiB, estimate / MiB)
    assert peak <= estimate < 1.6 * peak + 8 * MiB, (peak / MiB, estimate / MiB)


# Large canvases are reduced, not decoded to full-size copies, and still look the same.


def test_decode_image_reduced_canvas_matches_a_full_size_fit() -> None:
    from PIL import ImageOps

    height, width = 1500, 2200
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 255 // 3700], -1)
    alpha = (xx * 255 // width).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([pixels.astype(np.uint8), alpha]), "RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = ImageOps.fit(
        Image.alpha_composite(white, rgba).convert("RGB"), (32, 32), Image.Resampling.LANCZOS
    )

    decoded = decode_image(encode(rgba, "PNG", compress_level=1), LIMIT)

    difference = np.abs(decoded.pixels.astype(int) - np.asarray(expected, dtype=int))
    assert difference.mean() < 1.5 and difference.max() <= 8


def test_decode_image_large_16_bit_png_scales_in_integers() -> None:
    ramp = (np.arange(1200 * 1200, dtype=np.uint32).reshape(1200, 1200) % 1200) * 54
    image = Image.fromarray(ramp.astype(np.uint16))

    pixels = decode_image(encode(image, "PNG"), LIMIT).pixels

    assert image.mode == "I;16"
    expected = np.round(np.linspace(0, 1199 * 54, 32) * 255 / 65535)
    np.testing.assert_allclose(pixels[0, :, 0], expected, atol=4)
    np.testing.assert_array_equal(pixels[:, :, 0], pixels[:, :, 2])


# Where a decode runs


def test_open_steps_count_what_pillow_walks_in_python() -> None:
    simple = encode(photo(32, 32), "PNG")
    chunky = _png(8, 8, 8, 2, 3, extra=_png_chunk(b"abCd", b"") * 500)

    assert open_steps(simple, 16) <= 4
    assert open_steps(chunky, 16) == 17  # counted no further than the limit
    assert open_steps(encode(photo(32, 32), "JPEG"), 16) <= 12  # APP0, DQT, SOF, DHT, SOS


# The budget


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_decode_budget_waits_in_turn_then_answers_503() -> None:
    async def scenario() -> tuple[list[str], ApiError, int]:
        budget = DecodeBudget(100, wait_s=0.2)
        order: list[str] = []
        held = await budget.reserve(80)

        async def take(name: str, cost: int) -> None:
            reservation = await budget.reserve(cost)
            order.append(name)
            reservation.release()

        large = asyncio.create_task(take("large", 90))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(take("small", 10))  # fits now, but queues behind "large"
        await asyncio.sleep(0.05)
        assert order == []
        held.release()
        held.release()  # a second release gives nothing back twice
        await asyncio.gather(large, small)

        blocker = await budget.reserve(100)
        with pytest.raises(ApiError) as busy:
            await budget.reserve(1)
        blocker.release()
        return order, busy.value, budget.in_use_bytes

    order, busy, in_use = run(scenario())

    assert order == ["large", "small"]
    assert (busy.status_code, busy.code, busy.headers) == (503, "OVERLOADED", {"Retry-After": "1"})
    assert in_use == 0


def test_decode_budget_cancelled_waiter_leaves_nothing_reserved() -> None:
    async def scenario() -> int:
        budget = DecodeBudget(100, wait_s=5)
        held = await budget.reserve(100)
        waiter = asyncio.create_task(budget.reserve(50))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        held.release()
        return budget.in_use_bytes

    assert run(scenario()) == 0


def test_decode_upload_refuses_an_image_over_the_whole_budget() -> None:
    budget = DecodeBudget(64 * MiB)

    with pytest.raises(ApiError) as caught:
        run(decode_upload(rgba_png(4500), LIMIT, budget))

    error = caught.value
    assert (error.status_code, error.code) == (413, "IMAGE_TOO_LARGE")
    assert "4500x4500" in error.message and "SEPCONV_DECODE_MEMORY_BYTES" in error.message
    assert budget.in_use_bytes == 0


@pytest.mark.timeout(60)
def test_decode_upload_cancelled_releases_its_budget_once_the_thread_ends() -> None:
    # About half a second of libjpeg: 40,000 x 600, 120 scans (allowed here).
    slow = scan_bomb_jpeg(40_000, 600, 119)
    budget = DecodeBudget(512 * MiB, max_jpeg_scans=1000)

    async def scenario() -> tuple[int, float, int]:
        request = asyncio.create_task(decode_upload(slow, LIMIT, budget))
        await asyncio.sleep(0.1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        held_after_cancel = budget.in_use_bytes  # the thread still decodes: still reserved
        started = time.perf_counter()
        while budget.in_use_bytes and time.perf_counter() - started < 30:
            await asyncio.sleep(0.01)
        # Released once: a full-budget reservation now succeeds at once.
        everything = await asyncio.wait_for(budget.reserve(budget.memory_bytes), 0.1)
        everything.release()
        return held_after_cancel, time.perf_counter() - started, budget.in_use_bytes

    held, waited, in_use = run(scenario())

    assert held > 60 * MiB  # its coefficient buffer, reserved until the decode ended
    assert waited > 0.05
    assert in_use == 0


def test_decode_upload_small_images_decode_inline_and_alike() -> None:
    data = encode(photo(40, 36), "PNG")
    budget = DecodeBudget(16 * MiB)

    decoded, decode_ms = run(decode_upload(data, LIMIT, budget))

    np.testing.assert_array_equal(decoded.pixels, decode_image(data, LIMIT).pixels)
    assert decode_ms >= 0 and budget.in_use_bytes == 0


def test_decode_image_webp_and_progressive_jpeg_still_decode() -> None:
    image = photo(300, 200)
    for data in (
        encode(image, "WEBP"),
        encode(image, "WEBP", lossless=True),
        encode(image, "JPEG", progressive=True, quality=90),
    ):
        decoded = decode_image(data, LIMIT)
        reference = np.asarray(
            Image.open(io.BytesIO(encode(image, "PNG"))).convert("RGB").crop((50, 0, 250, 200))
        )
        assert decoded.pixels.shape == (32, 32, 3)
        assert abs(float(decoded.pixels.mean()) - float(reference.mean())) < 6
