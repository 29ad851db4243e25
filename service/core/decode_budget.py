"""The memory one worker lets its image decodes hold at once, and giving it back to the OS.

Every decode off the event loop reserves its estimated cost (``decode_cost``) before it starts
and releases it when its thread ends, which may be after the request that started it is gone:
a thread cannot be stopped, and until it ends its memory is still taken. Requests that do not
fit wait in arrival order (a large decode is not starved by a stream of small ones), for a
bounded time, then hear 503.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import platform
import sys
from collections import deque
from collections.abc import Callable

from service.core.imaging import MAX_JPEG_SCANS
from service.errors import decoders_busy

MiB = 1024 * 1024
# Fits a 2 GiB Kubernetes limit: about 1.1 GiB for the process and its models, this much for
# decodes in flight, and headroom for request bodies and the allocator's slack.
DEFAULT_DECODE_MEMORY_BYTES = 512 * MiB
DEFAULT_DECODE_WAIT_S = 2.0
# Decodes at least this large hand their freed memory back to the OS when they end.
TRIM_ABOVE_BYTES = 32 * MiB

logger = logging.getLogger("sepconv.decode")


class Reservation:
    """Bytes held in a ``DecodeBudget``; ``release`` gives them back once, however often called.

    Released from the event loop's thread only (a done callback of the decode's future).
    """

    def __init__(self, budget: DecodeBudget, cost_bytes: int) -> None:
        self.budget = budget
        self.cost_bytes = cost_bytes
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.budget._give_back(self.cost_bytes)


class DecodeBudget:
    """What decoding may cost one worker: memory held by decodes at once, and how long a
    request waits for it; and the scans one JPEG may have (its CPU).

    Built by ``create_app`` from the settings; the default is what tests and scripts get.
    """

    def __init__(
        self,
        memory_bytes: int = DEFAULT_DECODE_MEMORY_BYTES,
        *,
        wait_s: float = DEFAULT_DECODE_WAIT_S,
        max_jpeg_scans: int = MAX_JPEG_SCANS,
    ) -> None:
        self.memory_bytes = memory_bytes
        self.wait_s = wait_s
        self.max_jpeg_scans = max_jpeg_scans
        self.in_use_bytes = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def fits(self, cost_bytes: int) -> bool:
        """Whether a decode of ``cost_bytes`` can ever run here (else: 413 before decoding)."""
        return cost_bytes <= self.memory_bytes

    async def reserve(self, cost_bytes: int) -> Reservation:
        """Hold ``cost_bytes`` (at most ``memory_bytes``), waiting up to ``wait_s`` in turn.

        Raises 503 OVERLOADED with Retry-After when the wait runs out; a request cancelled
        while it waits leaves nothing reserved.
        """
        cost_bytes = min(cost_bytes, self.memory_bytes)
        if not self._waiting and self.in_use_bytes + cost_bytes <= self.memory_bytes:
            self.in_use_bytes += cost_bytes
            return Reservation(self, cost_bytes)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost_bytes, turn)
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.wait_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as error:
            if turn.done():  # granted just as the wait ended: hand it on
                self._give_back(cost_bytes)
            else:
                turn.cancel()
                self._waiting.remove(entry)
                self._grant()  # it may have been first in line, holding up smaller ones
            if isinstance(error, asyncio.CancelledError):
                raise
            raise decoders_busy(self.in_use_bytes, self.memory_bytes) from None
        return Reservation(self, cost_bytes)

    def _give_back(self, cost_bytes: int) -> None:
        self.in_use_bytes -= cost_bytes
        if self.in_use_bytes < 0:  # a second release would hide a leak elsewhere: say so
            logger.error("decode budget released more than reserved", extra={"bytes": cost_bytes})
            self.in_use_bytes = 0
        self._grant()

    def _grant(self) -> None:
        """Admit waiters in order while the first in line fits."""
        while self._waiting:
            cost_bytes, turn = self._waiting[0]
            if self.in_use_bytes + cost_bytes > self.memory_bytes:
                return
            self._waiting.popleft()
            self.in_use_bytes += cost_bytes
            turn.set_result(None)


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> None:
        trim(0)

    return call


_TRIM = _malloc_trim()


def return_freed_memory(cost_bytes: int) -> None:
    """After a decode of ``cost_bytes`` has freed its buffers, hand the pages back to the OS.

    glibc keeps freed blocks in its per-thread arenas (and raises its mmap threshold after
    each large free, so the next canvas lands in an arena too): after a burst of large decodes
    the process would keep a gigabyte it no longer uses. Called in the decode's thread.
    """
    if _TRIM is not None and cost_bytes >= TRIM_ABOVE_BYTES:
        _TRIM()  # a few milliseconds; glibc locks each arena in turn, so it is thread-safe
