"""``metadata.json`` through ``ModelMetadata``: validated on read, clear about what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sepconv_contract import (
    CLASS_NAMES,
    MetadataError,
    ModelMetadata,
    read_metadata,
    write_metadata,
)
from tests.helpers import REPOSITORY


def write(folder: Path, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(data))
    return folder


def test_read_metadata_of_the_committed_models() -> None:
    for name in ("regular", "separable"):
        metadata = read_metadata(REPOSITORY / "models" / name / "1")
        assert metadata is not None
        assert metadata.name == name and metadata.classes == list(CLASS_NAMES)
        assert metadata.parameters is not None and metadata.parameters.total > 100_000


def test_read_metadata_without_a_file_is_none(tmp_path: Path) -> None:
    assert read_metadata(tmp_path) is None


def test_read_metadata_names_the_file_and_the_field(tmp_path: Path) -> None:
    folder = write(tmp_path / "m" / "1", {"name": "m", "version": 1, "test_accuracy": "high"})
    with pytest.raises(MetadataError) as raised:
        read_metadata(folder)
    assert "metadata.json" in str(raised.value) and "'test_accuracy'" in str(raised.value)
    # The folder is kept out of the message (it may reach a client) but not out of reach.
    assert str(tmp_path) not in str(raised.value)
    assert raised.value.path == folder / "metadata.json"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"version": 1}, "name"),
        ({"name": "m", "version": -1}, "version"),
        ({"name": "m", "version": 1, "test_accuracy": 1.5}, "test_accuracy"),
        ({"name": "m", "version": 1, "parameters": {"total": 5}}, "parameters.trainable"),
        (
            {"name": "m", "version": 1, "input": {"name": "x", "dtype": "int8", "shape": []}},
            "input.dtype",
        ),
        ({"name": "m", "version": 1, "classes": []}, "classes"),
    ],
)
def test_read_metadata_refuses_each_wrong_field(
    tmp_path: Path, data: dict[str, object], field: str
) -> None:
    with pytest.raises(MetadataError, match=f"field '{field}'"):
        read_metadata(write(tmp_path / "m" / "1", data))


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff"])
def test_read_metadata_refuses_what_is_not_a_json_object(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "m" / "1"
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(MetadataError, match="metadata.json"):
        read_metadata(folder)


def test_write_then_read_keeps_unknown_keys(tmp_path: Path) -> None:
    # A newer export's extra facts survive a rewrite by an older evaluation.
    metadata = ModelMetadata.model_validate({"name": "m", "version": 2, "future_field": [1, 2]})
    write_metadata(tmp_path, metadata)
    again = read_metadata(tmp_path)
    assert again is not None and again.model_dump()["future_field"] == [1, 2]
    assert not list(tmp_path.glob("*.partial"))
