"""Triton's config.pbtxt (training/triton_config.py) and the committed models' copies.

Each file is parsed with Triton's own ModelConfig message (tritonclient ships it), so a misspelt
field fails, and checked against the real ONNX graph that Triton would load beside it.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import onnxruntime as ort
import pytest

from sepconv_contract import INPUT_NAME, INPUT_SHAPE, NUM_CLASSES, ONNX_FILE, OUTPUT_NAME
from sepconv_contract.versions import latest_versions, model_folders
from service.core.registry import ModelRegistry
from service.process.settings import Settings
from tests.helpers import REPOSITORY
from tests.helpers.tools import missing
from training.triton_config import (
    DEFAULT_MAX_BATCH_SIZE,
    ONNX_PLATFORM,
    TRITON_CONFIG_FILE,
    render_triton_config,
    write_triton_config,
)

MODELS = REPOSITORY / "models"
COMMITTED = ("regular", "separable")
# ONNX Runtime's element type for float32, which Triton calls TYPE_FP32.
ONNX_FLOAT = "tensor(float)"


@pytest.fixture(scope="module")
def model_config_pb2() -> ModuleType:
    """Triton's ModelConfig protobuf module, from tritonclient.

    Loaded from its file rather than imported: ``tritonclient.grpc``'s package imports Triton's
    gRPC service protos, whose ``inference.*`` messages clash in protobuf's one descriptor pool
    with KServe's own copy of them once the KServe SDK is imported in the same process."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        missing("tritonclient", "pip install 'tritonclient[grpc]'")
    (package,) = spec.submodule_search_locations
    path = Path(package) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        missing("tritonclient[grpc]", f"pip install 'tritonclient[grpc]' (no {path.name})")
    loaded = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def parse(text: str, model_config_pb2: ModuleType) -> Any:
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_triton_config_parses_as_triton_model_config(model_config_pb2: ModuleType) -> None:
    config = parse(render_triton_config("regular", max_batch_size=8), model_config_pb2)
    types = model_config_pb2.DataType

    assert (config.name, config.platform, config.max_batch_size) == ("regular", ONNX_PLATFORM, 8)
    (image,) = config.input
    (probabilities,) = config.output
    assert (image.name, image.data_type, list(image.dims)) == (
        INPUT_NAME,
        types.Value("TYPE_FP32"),
        list(INPUT_SHAPE),
    )
    assert (probabilities.name, probabilities.data_type, list(probabilities.dims)) == (
        OUTPUT_NAME,
        types.Value("TYPE_FP32"),
        [NUM_CLASSES],
    )
    assert config.HasField("dynamic_batching")


def test_triton_config_parser_refuses_a_misspelt_field(model_config_pb2: ModuleType) -> None:
    from google.protobuf import text_format

    misspelt = render_triton_config("regular").replace("max_batch_size", "max_batchsize")
    with pytest.raises(text_format.ParseError, match="max_batchsize"):
        parse(misspelt, model_config_pb2)


def test_triton_config_batch_size_defaults_to_the_service_batch_size() -> None:
    assert DEFAULT_MAX_BATCH_SIZE == Settings.model_fields["max_batch_size"].default


def test_triton_config_refuses_a_batch_size_below_one() -> None:
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        render_triton_config("regular", max_batch_size=0)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_triton_config_is_what_the_export_writes(name: str) -> None:
    committed = MODELS / name / TRITON_CONFIG_FILE
    assert committed.is_file(), f"run sepconv-export-onnx: {committed} is missing"
    assert committed.read_text() == render_triton_config(name), (
        f"{committed} differs from training/triton_config.py's: run sepconv-export-onnx"
    )


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_triton_config_matches_the_onnx_model(
    name: str, model_config_pb2: ModuleType
) -> None:
    config = parse((MODELS / name / TRITON_CONFIG_FILE).read_text(), model_config_pb2)
    session = ort.InferenceSession(str(MODELS / name / "1" / ONNX_FILE))
    types = model_config_pb2.DataType

    assert config.name == name, "Triton requires the config's name to be its folder's"
    assert [t.name for t in config.input] == [t.name for t in session.get_inputs()]
    assert [t.name for t in config.output] == [t.name for t in session.get_outputs()]
    declared = [*config.input, *config.output]
    actual = [*session.get_inputs(), *session.get_outputs()]
    for tensor, onnx_tensor in zip(declared, actual, strict=True):
        batch, *dims = onnx_tensor.shape
        # max_batch_size > 0: Triton prepends the batch dimension, which must be dynamic.
        assert isinstance(batch, str), f"{onnx_tensor.name}'s batch dimension is {batch}"
        assert list(tensor.dims) == dims
        assert tensor.data_type == types.Value("TYPE_FP32")
        assert onnx_tensor.type == ONNX_FLOAT


def test_write_triton_config_writes_beside_the_version_folders(tmp_path: Path) -> None:
    shutil.copytree(MODELS / "separable", tmp_path / "separable")
    (tmp_path / "separable" / TRITON_CONFIG_FILE).unlink()

    written = write_triton_config(tmp_path / "separable", max_batch_size=4)

    assert written == tmp_path / "separable" / TRITON_CONFIG_FILE
    assert written.read_text() == render_triton_config("separable", max_batch_size=4)
    assert sorted(p.name for p in written.parent.iterdir()) == ["1", TRITON_CONFIG_FILE]


def test_version_scanner_and_registry_ignore_config_pbtxt() -> None:
    assert all((MODELS / name / TRITON_CONFIG_FILE).is_file() for name in COMMITTED)
    assert list(model_folders(MODELS)) == list(COMMITTED)
    assert latest_versions(MODELS) == [MODELS / name / "1" for name in COMMITTED]

    registry = ModelRegistry(MODELS, None, "onnxruntime", warmup_runs=1)
    registry.load_all()
    found = {e.name: (e.version, e.status, e.error) for e in registry.entries()}
    assert found == dict.fromkeys(COMMITTED, (1, "ready", None))
