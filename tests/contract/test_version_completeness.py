"""A version folder is taken only when complete: a half-copied newer one is skipped."""

from __future__ import annotations

from pathlib import Path

from sepconv_contract.versions import incomplete_reason, latest_complete_version


def complete(folder: Path, metadata: str | None = '{"name": "m", "version": 1}') -> Path:
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    if metadata is not None:
        (folder / "metadata.json").write_text(metadata)
    return folder


def test_a_complete_folder_has_no_reason(tmp_path: Path) -> None:
    assert incomplete_reason(complete(tmp_path / "1")) is None
    # metadata.json is optional; only one that is there must parse.
    assert incomplete_reason(complete(tmp_path / "2", metadata=None)) is None


def test_each_missing_part_is_named_without_server_paths(tmp_path: Path) -> None:
    (tmp_path / "2").mkdir()
    assert incomplete_reason(tmp_path / "2") == (
        "missing saved_model.pb, variables/variables.index"
    )
    half = complete(tmp_path / "3")
    (half / "variables" / "variables.index").unlink()
    assert incomplete_reason(half) == "missing variables/variables.index"
    torn = complete(tmp_path / "4", metadata='{"name": "m", "vers')
    reason = incomplete_reason(torn)
    assert reason == "metadata.json does not parse (JSONDecodeError)"
    assert str(tmp_path) not in reason


def test_the_newest_complete_version_wins_and_skipped_ones_are_listed(tmp_path: Path) -> None:
    model = tmp_path / "m"
    complete(model / "1")
    complete(model / "2")
    (model / "3").mkdir()  # a copy under way
    (model / "10" / "variables").mkdir(parents=True)
    (model / "10" / "saved_model.pb").write_bytes(b"graph")
    complete(model / ".tmp-11")  # the copy-then-rename staging folder is never a version
    latest, skipped = latest_complete_version(model)
    assert latest == (2, model / "2")
    assert skipped == [
        (10, "missing variables/variables.index"),
        (3, "missing saved_model.pb, variables/variables.index"),
    ]


def test_no_complete_version_is_none_with_every_reason(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    assert latest_complete_version(tmp_path / "m") == (
        None,
        [(1, "missing saved_model.pb, variables/variables.index")],
    )
