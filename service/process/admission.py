"""Admission to ``/compare``: one comparison at a time per server, every worker included.

Two comparisons at once would time each other, not the models, and with several workers an
``asyncio.Lock`` only serialises the comparisons of one process. The slot is therefore an
exclusive ``flock`` on a file in a folder every worker shares (``SEPCONV_COMPARE_LOCK_DIR``,
which ``sepconv-serve`` points at its metrics folder); the kernel drops it when its holder
closes the file or dies, so a crashed worker never leaves the slot taken.

A request that finds the slot taken waits for it, but only so long (``compare_wait_s``) and only
so many at once (``compare_max_waiting``, one ``flock``-ed ticket file each, so the count holds
across workers too); the rest are answered 503 OVERLOADED with a Retry-After at once. The lock
file holds the running comparison's deadline, from which the Retry-After is taken.

``flock`` locks belong to an open file description, so each admission opens the files afresh:
two admissions of one process exclude each other just as two processes do.

A caller that wants to tell its client it is queued passes ``on_queued``: it is called once the
request has its ticket and starts to wait, with what the wait may come to.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from service.errors import ApiError, client_closed_request, comparison_busy, not_ready

LOCK_FILE = "compare.lock"
TICKET_FILE = "compare-waiting-{}.lock"
POLL_S = 0.02


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without blocking the event loop: True if it is ours now."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(frozen=True)
class Queued:
    """A request waiting behind the running comparison, and how long that may take."""

    running_ends_in_s: int
    """Whole seconds until the running comparison's budget ends, at the latest."""
    wait_at_most_s: float
    """How long this request may wait before it is answered 503 OVERLOADED."""


class ComparisonGate:
    """The server's one comparison slot, its bounded queue, and the flags of what runs here."""

    def __init__(
        self,
        folder: Path | None,
        *,
        wait_s: float,
        max_waiting: int,
        budget_s: float,
    ) -> None:
        self._given = folder
        self._private: Path | None = None
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self.budget_s = budget_s
        # The cancellation flags of this process's running comparison (at most one, but a set
        # keeps stop_all correct whatever the caller does).
        self.running: set[threading.Event] = set()
        self.closed = False

    @property
    def folder(self) -> Path:
        """The shared folder, or a private one made on first use (a lone process)."""
        if self._given is not None:
            self._given.mkdir(parents=True, exist_ok=True)
            return self._given
        if self._private is None:
            # Made lazily: building the app (``app = create_app()`` on import) creates nothing.
            self._private = Path(tempfile.mkdtemp(prefix="sepconv-compare-"))
        return self._private

    @contextlib.asynccontextmanager
    async def admit(
        self, cancel: threading.Event, on_queued: Callable[[Queued], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold the slot for one comparison whose flag is ``cancel``, or raise a 503.

        A flag set while queued gives the place up (499: only a client that left sets it).
        """
        if self.closed:
            raise self._stopping()
        lock = _open(self.folder / LOCK_FILE)
        try:
            if not _try_lock(lock):
                await self._wait_for(lock, cancel, on_queued)
            self._write_deadline(lock)
            self.running.add(cancel)
            try:
                yield
            finally:
                self.running.discard(cancel)
                os.ftruncate(lock, 0)
        finally:
            os.close(lock)  # releases the flock

    def stop_all(self) -> None:
        """Set every running comparison's flag and refuse new ones: the process is stopping."""
        self.closed = True
        for cancel in list(self.running):
            cancel.set()

    def close(self) -> None:
        """Remove the private folder, if one was made; a shared one belongs to the server."""
        self.stop_all()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    async def _wait_for(
        self,
        lock: int,
        cancel: threading.Event,
        on_queued: Callable[[Queued], None] | None,
    ) -> None:
        ticket = self._take_ticket()
        if ticket is None:
            raise comparison_busy(self._retry_after(lock), waited_s=None, waiting=self.max_waiting)
        try:
            deadline = time.monotonic() + self.wait_s
            if on_queued is not None:
                on_queued(Queued(self._retry_after(lock), self.wait_s))
            while True:
                await asyncio.sleep(POLL_S)
                if self.closed:
                    raise self._stopping()
                if cancel.is_set():
                    raise client_closed_request()
                if _try_lock(lock):
                    return
                if time.monotonic() >= deadline:
                    raise comparison_busy(
                        self._retry_after(lock), waited_s=self.wait_s, waiting=self.max_waiting
                    )
        finally:
            os.close(ticket)

    def _take_ticket(self) -> int | None:
        """One of the ``max_waiting`` ticket files, locked, or None when all are taken."""
        for index in range(self.max_waiting):
            ticket = _open(self.folder / TICKET_FILE.format(index))
            if _try_lock(ticket):
                return ticket
            os.close(ticket)
        return None

    def _write_deadline(self, lock: int) -> None:
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"{time.time() + self.budget_s:.3f}".encode(), 0)

    def _retry_after(self, lock: int) -> int:
        """Whole seconds until the running comparison's budget ends (its holder wrote it)."""
        try:
            remaining = float(os.pread(lock, 32, 0).decode()) - time.time()
        except (OSError, ValueError, UnicodeDecodeError):
            remaining = self.budget_s
        return max(1, math.ceil(min(remaining, self.budget_s)))

    @staticmethod
    def _stopping() -> ApiError:
        return not_ready("the service is stopping; retry on another instance or once it is back")
