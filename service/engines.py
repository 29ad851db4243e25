"""Inference engines: a loaded model's compiled call, behind one small interface.

Never ``model.predict()``: its per-call set-up costs about 100 ms here, against a few
milliseconds for a direct call of the SavedModel's concrete serving function.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

logger = logging.getLogger("sepconv.engines")

Batch = npt.NDArray[np.float32]
Probabilities = npt.NDArray[np.float32]


class Engine(Protocol):
    """A loaded classifier: raw 0-255 float32 images ``(n, 32, 32, 3)`` in, ``(n, 10)`` out."""

    runtime: str
    device: str
    parameters: int
    trainable_parameters: int

    def predict(self, images: Batch) -> Probabilities: ...


def _short_device(device: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:0`` -> ``GPU:0``."""
    marker = "device:"
    return device.rsplit(marker, 1)[-1] if marker in device else (device or "CPU:0")


class TensorFlowEngine:
    """The ``serving_default`` signature of a SavedModel, loaded with ``tf.saved_model.load``."""

    runtime = "tensorflow"

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))
        signatures = self._loaded.signatures
        if "serving_default" not in signatures:
            raise ValueError("SavedModel has no serving_default signature")
        self._serve = signatures["serving_default"]
        _, inputs = self._serve.structured_input_signature
        if "image" not in inputs or "probabilities" not in self._serve.structured_outputs:
            raise ValueError("serving_default must map 'image' to 'probabilities'")
        variables = list(self._loaded.variables)
        self.parameters = sum(int(np.prod(v.shape)) for v in variables)
        self.trainable_parameters = (
            sum(int(np.prod(v.shape)) for v in self._loaded.trainable_variables) or self.parameters
        )
        self.device = _short_device(variables[0].device) if variables else "CPU:0"

    def predict(self, images: Batch) -> Probabilities:
        outputs = self._serve(image=self._tf.constant(images))
        return np.asarray(outputs["probabilities"])


class OnnxRuntimeEngine:
    """``model.onnx`` beside the SavedModel, run by ONNX Runtime (the optional ``onnx`` extra)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int) -> None:
        onnx_path = path / "model.onnx"
        if not onnx_path.is_file():
            raise FileNotFoundError(
                "no model.onnx beside the SavedModel; export it with "
                "sepconv-train --onnx or sepconv-export-onnx"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self._session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.device = "GPU:0" if self._session.get_providers()[0].startswith("CUDA") else "CPU:0"
        import onnx

        graph = onnx.load(str(onnx_path)).graph
        self.parameters = sum(int(np.prod(t.dims)) for t in graph.initializer)
        self.trainable_parameters = self.parameters

    def predict(self, images: Batch) -> Probabilities:
        (outputs,) = self._session.run([self._output], {self._input: images})
        return np.asarray(outputs)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def configure_tensorflow(
    intra_op_threads: int, inter_op_threads: int, gpu_memory_growth: bool
) -> list[str]:
    """Thread pools and GPU memory growth, before the first op; returns the visible devices."""
    import tensorflow as tf

    intra = intra_op_threads or available_cpus()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        # TensorFlow was already initialised in this process (tests, notebooks): keep its pools.
        logger.info("tensorflow thread pools already initialised; leaving them as they are")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, gpu_memory_growth)
        except RuntimeError:
            logger.info("GPU memory growth must be set before the GPU is initialised")
    devices = [d.name.replace("/physical_device:", "") for d in tf.config.list_physical_devices()]
    logger.info("visible devices: %s; intra-op threads %d", ", ".join(devices), intra)
    return devices
