"""Inference engines: a loaded model's compiled call, behind one small interface.

Never ``model.predict()``: its per-call set-up costs about 100 ms here, against a few
milliseconds for a direct call of the SavedModel's concrete serving function.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sepconv_contract import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, SIGNATURE_NAME
from service.core.cpus import available_cpus

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


RUNTIMES = ("tensorflow", "onnxruntime")


def import_runtime(runtime: str) -> None:
    """Import ``runtime``'s library now, so a broken install fails the start, not every model.

    A library that cannot be imported is no model's fault and a restart will not mend it: the
    process should stop (status 3 with several workers) rather than stay up with every model
    failed. Only the named runtime is imported: serving ONNX Runtime never imports TensorFlow.
    """
    importlib.import_module(runtime)


def open_engine(path: Path, runtime: str, threads: int) -> Engine:
    """The engine of the version folder ``path`` on ``runtime`` (one of ``RUNTIMES``)."""
    if runtime == "onnxruntime":
        return OnnxRuntimeEngine(path, threads)
    return TensorFlowEngine(path)


class TensorFlowEngine:
    """The ``serving_default`` signature of a SavedModel, loaded with ``tf.saved_model.load``."""

    runtime = "tensorflow"

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))
        signatures = self._loaded.signatures
        if SIGNATURE_NAME not in signatures:
            raise ValueError(f"SavedModel has no {SIGNATURE_NAME} signature")
        self._serve = signatures[SIGNATURE_NAME]
        _, inputs = self._serve.structured_input_signature
        if INPUT_NAME not in inputs or OUTPUT_NAME not in self._serve.structured_outputs:
            raise ValueError(f"{SIGNATURE_NAME} must map {INPUT_NAME!r} to {OUTPUT_NAME!r}")
        variables = list(self._loaded.variables)
        self.parameters = sum(int(np.prod(v.shape)) for v in variables)
        self.trainable_parameters = (
            sum(int(np.prod(v.shape)) for v in self._loaded.trainable_variables) or self.parameters
        )
        self.device = _short_device(variables[0].device) if variables else "CPU:0"

    def predict(self, images: Batch) -> Probabilities:
        outputs = self._serve(**{INPUT_NAME: self._tf.constant(images)})
        return np.asarray(outputs[OUTPUT_NAME])


class OnnxRuntimeEngine:
    """``model.onnx`` beside the SavedModel, run by ONNX Runtime (the optional ``onnx`` extra)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int) -> None:
        onnx_path = path / ONNX_FILE
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
