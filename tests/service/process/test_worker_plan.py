"""``SEPCONV_WORKERS=auto``: the count decided from the CPUs, the memory and a GPU, and the
host facts it is decided from (a cgroup tree written out in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.process.settings import Settings
from service.process.workers import (
    SUPERVISOR_MEMORY_BYTES,
    WORKER_MEMORY_BYTES,
    cgroup_memory_limit,
    gpu_visible,
    host_plan,
    plan_workers,
    worker_memory_estimate,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
TENSORFLOW = WORKER_MEMORY_BYTES["tensorflow"]


@pytest.mark.parametrize(
    ("cpus", "memory", "expected"),
    [
        (2, 24 * GiB, 2),  # this machine: the CPUs decide
        (16, 24 * GiB, 16),
        (8, None, 8),  # no memory figure: the CPUs alone
        (4, SUPERVISOR_MEMORY_BYTES + 3 * TENSORFLOW, 3),  # the memory decides
        (4, SUPERVISOR_MEMORY_BYTES + 3 * TENSORFLOW - 1, 2),
        (2, 2 * GiB, 2),  # deploy/kubernetes/deployment.yaml: 2 CPUs, 2 GiB
        (4, 512 * MiB, 1),  # too little for even one: still one
    ],
)
def test_plan_workers_is_min_of_cpus_and_memory(
    cpus: int, memory: int | None, expected: int
) -> None:
    plan = plan_workers(cpus, memory, TENSORFLOW, gpu_visible=False)
    assert plan.workers == expected
    assert (plan.cpus, plan.available_memory_bytes) == (cpus, memory)


def test_plan_workers_says_why_memory_capped_it() -> None:
    capped = plan_workers(8, 2 * GiB, TENSORFLOW, gpu_visible=False)
    assert capped.workers == 2
    assert "2048 MiB" in capped.reason and "768 MiB" in capped.reason
    starved = plan_workers(8, 256 * MiB, TENSORFLOW, gpu_visible=False)
    assert starved.workers == 1 and "at least one" in starved.reason
    assert plan_workers(8, 64 * GiB, TENSORFLOW, False).reason == "one per available CPU"


def test_plan_workers_is_one_on_a_gpu() -> None:
    plan = plan_workers(32, 256 * GiB, TENSORFLOW, gpu_visible=True)
    assert plan.workers == 1 and "GPU" in plan.reason


def test_plan_workers_fits_more_of_the_lighter_runtimes() -> None:
    memory = SUPERVISOR_MEMORY_BYTES + 1 * GiB
    onnx = worker_memory_estimate(["onnxruntime"])
    assert plan_workers(16, memory, TENSORFLOW, False).workers == 1
    assert plan_workers(16, memory, onnx, False).workers == 1 * GiB // onnx
    # /compare's runtimes are loaded in every worker too.
    assert worker_memory_estimate(["onnxruntime", "tensorflow"]) == onnx + TENSORFLOW


def test_plan_log_fields_are_the_facts_in_mib() -> None:
    fields = plan_workers(2, 4 * GiB, TENSORFLOW, False).log_fields()
    assert fields == {
        "workers": 2,
        "reason": "one per available CPU",
        "cpus": 2,
        "available_memory_mib": 4096,
        "worker_memory_mib": TENSORFLOW // MiB,
        "gpu_visible": False,
    }


def test_host_plan_an_explicit_count_wins() -> None:
    plan = host_plan(5, ["tensorflow"])
    assert plan.workers == 5 and "SEPCONV_WORKERS" in plan.reason


def test_settings_workers_default_to_auto_and_take_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEPCONV_WORKERS", raising=False)
    assert Settings().workers == "auto"
    # An app built outside sepconv-serve (which plans the count) is one process.
    assert Settings().worker_processes == 1
    monkeypatch.setenv("SEPCONV_WORKERS", "3")
    assert (Settings().workers, Settings().worker_processes) == (3, 3)
    assert Settings(intra_op_threads=0, workers=64).threads_per_worker == 1


@pytest.mark.parametrize("value", ["0", "65", "two", ""])
def test_settings_workers_refuse_anything_else_in_one_message(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SEPCONV_WORKERS", value)
    with pytest.raises(ValueError, match="expected a number of processes from 1 to 64, or auto"):
        Settings()


@pytest.mark.parametrize("visible", ["", "-1", "-1,0"])
def test_gpu_visible_is_false_when_cuda_hides_every_device(
    monkeypatch: pytest.MonkeyPatch, visible: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu_visible() is False


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_memory_limit_is_the_tightest_from_the_group_up(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("0::/kubepods/pod1/container\n")
    root = tmp_path / "fs"
    _write(root / "memory.max", "max")
    _write(root / "kubepods" / "memory.max", str(8 * GiB))
    _write(root / "kubepods" / "pod1" / "memory.max", str(2 * GiB))
    _write(root / "kubepods" / "pod1" / "container" / "memory.max", "max")
    assert cgroup_memory_limit(root, membership) == 2 * GiB


def test_cgroup_memory_limit_reads_v1_and_knows_its_unlimited(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n")
    root = tmp_path / "fs"
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712")
    assert cgroup_memory_limit(root, membership) is None
    # Inside a container without a cgroup namespace only the root of the tree is mounted.
    _write(root / "memory" / "memory.limit_in_bytes", str(3 * GiB))
    assert cgroup_memory_limit(root, membership) == 3 * GiB
