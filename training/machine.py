"""Which machine and software a training run used, in words, for its metadata and the README.

Seconds per epoch mean little without the machine they were measured on, and a run may train
on a GPU host with Keras on JAX and be exported elsewhere with TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path

import keras


def describe_machine() -> str:
    """E.g. ``NVIDIA H200; Keras 3.15.1 on jax 0.11.2`` or ``2 x AMD EPYC ... CPUs; ...``."""
    backend = keras.backend.backend()
    where = _accelerator(backend) or f"{_cpu_count()} x {_cpu_name()} CPUs"
    return f"{where}; Keras {keras.__version__} on {backend} {_backend_version(backend)}"


def _backend_version(backend: str) -> str:
    try:
        return str(importlib.import_module(backend).__version__)
    except (ImportError, AttributeError):
        return "(version unknown)"


def _accelerator(backend: str) -> str | None:
    """The GPUs as the backend sees them (``2 x NVIDIA H200``); None when it trains on CPUs."""
    try:
        names = _gpu_names(backend)
    except Exception:  # noqa: BLE001 - a description must never stop a training run
        return None
    if not names:
        return None
    return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"


def _gpu_names(backend: str) -> list[str]:
    if backend == "jax":
        import jax

        return [str(d.device_kind) for d in jax.devices() if d.platform != "cpu"]
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            str(tf.config.experimental.get_device_details(gpu).get("device_name", "GPU"))
            for gpu in tf.config.list_physical_devices("GPU")
        ]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_count() -> int:
    # The CPUs this process may run on, not the host's count.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
