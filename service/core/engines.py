"""Inference engines: a loaded model's compiled call, behind one small interface.

Never ``model.predict()``: its per-call set-up costs about 100 ms here, against a few
milliseconds for a direct call of the SavedModel's concrete serving function.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sepconv_contract import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, SIGNATURE_NAME, read_metadata
from sepconv_contract.signature import LITERT_FILE, LITERT_INT8_FILE, ONNX_INT8_FILE
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


# Each runtime name is a library and a precision: ``<library>`` serves the fp32 network,
# ``<library>-int8`` its int8 quantization (float32 in and out, quantized inside).
RUNTIMES = ("tensorflow", "onnxruntime", "onnxruntime-int8", "litert", "litert-int8")
# The module each runtime imports: LiteRT's interpreter is its own package (ai-edge-litert).
RUNTIME_LIBRARIES = {
    "tensorflow": "tensorflow",
    "onnxruntime": "onnxruntime",
    "onnxruntime-int8": "onnxruntime",
    "litert": "ai_edge_litert.interpreter",
    "litert-int8": "ai_edge_litert.interpreter",
}
# What a missing artifact's message tells the operator to run.
EXPORT_HINT = "export it with sepconv-export (the onnx and litert extras)"


def import_runtime(runtime: str) -> None:
    """Import ``runtime``'s library now, so a broken install fails the start, not every model.

    A library that cannot be imported is no model's fault and a restart will not mend it: the
    process should stop (status 3 with several workers) rather than stay up with every model
    failed. Only the named runtime is imported: serving ONNX Runtime or LiteRT never imports
    TensorFlow.
    """
    importlib.import_module(RUNTIME_LIBRARIES.get(runtime, runtime))


def open_engine(path: Path, runtime: str, threads: int) -> Engine:
    """The engine of the version folder ``path`` on ``runtime`` (one of ``RUNTIMES``).

    ``threads`` is the worker's share of the CPUs; every runtime's intra-op pool takes it.
    """
    if runtime == "onnxruntime":
        return OnnxRuntimeEngine(path, threads)
    if runtime == "onnxruntime-int8":
        return OnnxRuntimeEngine(path, threads, ONNX_INT8_FILE, runtime)
    if runtime == "litert":
        return LiteRtEngine(path, threads, LITERT_FILE, runtime)
    if runtime == "litert-int8":
        return LiteRtEngine(path, threads, LITERT_INT8_FILE, runtime)
    if runtime != "tensorflow":
        raise ValueError(f"unknown runtime {runtime!r}: expected {', '.join(RUNTIMES)}")
    return TensorFlowEngine(path)


def _artifact(path: Path, file: str) -> Path:
    artifact = path / file
    if not artifact.is_file():
        raise FileNotFoundError(f"no {file} beside the SavedModel; {EXPORT_HINT}")
    return artifact


def _recorded_parameters(path: Path) -> int:
    """The network's parameter count from its metadata: a converted or quantized graph folds
    and adds constants (scales, zero points), so its own tensor count is not the network's."""
    try:
        metadata = read_metadata(path)
    except ValueError:
        return 0
    return metadata.parameters.total if metadata and metadata.parameters else 0


def _graph_parameters(onnx_path: Path) -> int:
    """The ONNX graph's initializer elements, when the ``onnx`` package is installed (else 0)."""
    try:
        import onnx
    except ImportError:
        return 0
    graph = onnx.load(str(onnx_path)).graph
    return sum(int(np.prod(t.dims)) for t in graph.initializer)


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
    """``model.onnx`` (or ``model_int8.onnx``) beside the SavedModel, run by ONNX Runtime (the
    optional ``onnx`` extra)."""

    def __init__(
        self, path: Path, threads: int, file: str = ONNX_FILE, runtime: str = "onnxruntime"
    ) -> None:
        self.runtime = runtime
        onnx_path = path / file
        if not onnx_path.is_file():
            raise FileNotFoundError(
                f"no {file} beside the SavedModel; export it with "
                "sepconv-train --onnx or sepconv-export-onnx"
                if file == ONNX_FILE
                else f"no {file} beside the SavedModel; {EXPORT_HINT}"
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
        # From the metadata: the slim image serves on onnxruntime alone, without the onnx
        # package; a model exported without a parameter count has its graph counted instead.
        self.parameters = _recorded_parameters(path)
        if not self.parameters and file == ONNX_FILE:
            self.parameters = _graph_parameters(onnx_path)
        self.trainable_parameters = self.parameters

    def predict(self, images: Batch) -> Probabilities:
        (outputs,) = self._session.run([self._output], {self._input: images})
        return np.asarray(outputs)


class LiteRtEngine:
    """``model.tflite`` or ``model_int8.tflite`` run by LiteRT's interpreter (``ai-edge-litert``,
    the optional ``litert`` extra), with its default XNNPACK CPU kernels.

    An interpreter is not thread-safe and holds one input shape at a time: calls are serialised
    (the batcher and ``/compare`` may share this engine), and the input is resized only when
    the batch size changes (a few hundredths of a millisecond).
    """

    device = "CPU:0"

    def __init__(self, path: Path, threads: int, file: str, runtime: str) -> None:
        self.runtime = runtime
        model_path = _artifact(path, file)
        interpreter_module = importlib.import_module("ai_edge_litert.interpreter")
        self._interpreter = interpreter_module.Interpreter(
            model_path=str(model_path), num_threads=threads or available_cpus()
        )
        self._interpreter.allocate_tensors()
        (source,) = self._interpreter.get_input_details()
        (target,) = self._interpreter.get_output_details()
        if source["dtype"] != np.float32 or target["dtype"] != np.float32:
            raise ValueError(
                f"{file} must take and return float32 (quantize inside), not "
                f"{np.dtype(source['dtype']).name} -> {np.dtype(target['dtype']).name}"
            )
        if int(source["shape_signature"][0]) != -1:
            raise ValueError(f"{file} has a fixed batch size: convert it with a None batch")
        self._input = int(source["index"])
        self._output = int(target["index"])
        self._batch_size = int(source["shape"][0])
        self._lock = threading.Lock()
        self.parameters = _recorded_parameters(path)
        self.trainable_parameters = self.parameters

    def predict(self, images: Batch) -> Probabilities:
        with self._lock:
            if len(images) != self._batch_size:
                self._interpreter.resize_tensor_input(self._input, images.shape, strict=True)
                self._interpreter.allocate_tensors()
                self._batch_size = len(images)
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(images, np.float32))
            self._interpreter.invoke()
            # A copy: the interpreter reuses its output buffer on the next call.
            return np.array(self._interpreter.get_tensor(self._output))


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
