"""What a server process has used so far, read from Linux ``/proc``: the benchmark's runners
measure the service from outside, so they read its figures the way an operator would."""

from __future__ import annotations

import os
from pathlib import Path


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line; is this Linux?")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` and its threads have used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are the stat file's 14th and 15th fields; fields[0] here is the 3rd.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
