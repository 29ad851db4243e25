"""How many server processes ``SEPCONV_WORKERS=auto`` starts: one per CPU, as memory allows.

``plan_workers`` decides from four facts it is given; the functions below it read those facts
from this host (the CPUs and memory of the process's cgroup, a GPU device) without importing
any serving runtime, so the supervisor stays as small as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.core.cpus import available_cpus

MiB = 1024 * 1024
# Estimates of one worker's resident memory with both models loaded and served at
# concurrency 32 (peak VmRSS measured here, docs/performance.md): TensorFlow 683-728 MiB, ONNX
# Runtime 143-146, LiteRT 118-120; rounded up for headroom. Shared libraries count in every
# worker's VmRSS, so several workers need somewhat less than the sum.
WORKER_MEMORY_BYTES = {
    "tensorflow": 768 * MiB,
    "onnxruntime": 160 * MiB,
    "onnxruntime-int8": 160 * MiB,
    "litert": 128 * MiB,
    "litert-int8": 128 * MiB,
}
# uvicorn's supervisor (54 MiB: it never imports a runtime) and multiprocessing's resource
# tracker (12 MiB).
SUPERVISOR_MEMORY_BYTES = 80 * MiB
# Runtimes that would put a visible GPU to use; LiteRT's interpreter runs on the CPU only.
GPU_RUNTIMES = frozenset({"tensorflow", "onnxruntime", "onnxruntime-int8"})
CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit number.
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class WorkerPlan:
    """The worker count a start uses, and the facts it was chosen from."""

    workers: int
    reason: str
    cpus: int
    available_memory_bytes: int | None
    worker_memory_bytes: int
    gpu_visible: bool

    def log_fields(self) -> dict[str, object]:
        """The plan as one log line's fields, memory in MiB."""
        memory = self.available_memory_bytes
        return {
            "workers": self.workers,
            "reason": self.reason,
            "cpus": self.cpus,
            "available_memory_mib": None if memory is None else memory // MiB,
            "worker_memory_mib": self.worker_memory_bytes // MiB,
            "gpu_visible": self.gpu_visible,
        }


def plan_workers(
    cpus: int, available_memory_bytes: int | None, worker_memory_bytes: int, gpu_visible: bool
) -> WorkerPlan:
    """``auto``: one worker per CPU, no more than the memory holds beside the supervisor, at
    least one; exactly one when a GPU is visible (a second process would only share it, with a
    second copy of every model in its memory). ``None`` memory means no limit is known."""
    facts = (cpus, available_memory_bytes, worker_memory_bytes, gpu_visible)
    if gpu_visible:
        return WorkerPlan(1, "a GPU is visible: one process serves it", *facts)
    if available_memory_bytes is None:
        return WorkerPlan(max(1, cpus), "one per available CPU (no memory figure)", *facts)
    fits = (available_memory_bytes - SUPERVISOR_MEMORY_BYTES) // worker_memory_bytes
    if fits >= cpus:
        return WorkerPlan(max(1, cpus), "one per available CPU", *facts)
    reason = (
        f"{cpus} CPUs, but {available_memory_bytes // MiB} MiB of memory holds "
        f"{max(0, fits)} worker(s) of about {worker_memory_bytes // MiB} MiB"
    )
    return WorkerPlan(max(1, fits), reason + (", so at least one" if fits < 1 else ""), *facts)


def worker_memory_estimate(runtimes: Iterable[str]) -> int:
    """Resident memory of one worker that loads both models on each of ``runtimes``."""
    return sum(WORKER_MEMORY_BYTES[runtime] for runtime in dict.fromkeys(runtimes))


def host_plan(configured: int | Literal["auto"], runtimes: list[str]) -> WorkerPlan:
    """The workers of a start on this host: ``configured`` when it is a number (an explicit
    setting wins), else ``auto`` for a worker that loads the models on ``runtimes``."""
    gpu = gpu_visible() and any(runtime in GPU_RUNTIMES for runtime in runtimes)
    facts = (available_cpus(), available_memory_bytes(), worker_memory_estimate(runtimes), gpu)
    if configured != "auto":
        return WorkerPlan(configured, "set by SEPCONV_WORKERS or --workers", *facts)
    return plan_workers(*facts)


def available_memory_bytes() -> int | None:
    """Memory this process may still use: the tightest cgroup limit of its own group and
    every group above it (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), capped by the
    host's ``MemAvailable``; None when neither can be read."""
    known = [v for v in (cgroup_memory_limit(), _meminfo_available()) if v is not None]
    return min(known) if known else None


def gpu_visible() -> bool:
    """An NVIDIA device this process could open, unless ``CUDA_VISIBLE_DEVICES`` hides all.

    Cheap on purpose: TensorFlow would take seconds and hundreds of MiB to say so itself.
    """
    # Read here rather than as a setting: it is CUDA's variable, not the service's.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    # CUDA reads the list up to its first invalid entry: empty or negative first hides all.
    first = visible.split(",")[0].strip() if visible is not None else "0"
    if not first or first.startswith("-"):
        return False
    return any(path.name[len("nvidia") :].isdigit() for path in Path("/dev").glob("nvidia*"))


def cgroup_memory_limit(
    root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The tightest memory limit over the process's cgroups (``membership`` names them) and
    their ancestors under ``root``, v2 and v1 alike; None when none is set."""
    limits: list[int] = []
    for version, group in _own_cgroups(membership):
        if version == 2:
            folder, file = root, "memory.max"
        else:
            folder, file = root / "memory", "memory.limit_in_bytes"
        limits += _limits_up_from(folder, group, file)
    usable = [limit for limit in limits if limit < _V1_UNLIMITED]
    return min(usable) if usable else None


def _own_cgroups(membership: Path) -> list[tuple[int, str]]:
    """``(2, path)`` for the unified hierarchy and ``(1, path)`` for v1's memory controller."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return [(2, "/"), (1, "/")]
    groups = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            groups.append((2, path))
        elif "memory" in controllers.split(","):
            groups.append((1, path))
    return groups


def _limits_up_from(folder: Path, group: str, file: str) -> list[int]:
    # Without a cgroup namespace the path is the host's and only part of it (or none but the
    # root) is mounted here: every level that exists is read.
    parts = [p for p in group.split("/") if p]
    limits = []
    for depth in range(len(parts), -1, -1):
        try:
            text = (folder.joinpath(*parts[:depth]) / file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return limits


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
