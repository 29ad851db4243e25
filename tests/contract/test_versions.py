"""The one version scanner: ``<model_dir>/<name>/<version>/``, highest numeric version wins."""

from __future__ import annotations

from pathlib import Path

from sepconv_contract import latest_version, latest_versions, model_folders, version_dir


def make(root: Path, *paths: str) -> Path:
    for path in paths:
        (root / path).mkdir(parents=True)
    return root


def test_latest_version_is_the_highest_number_not_the_last_name(tmp_path: Path) -> None:
    root = make(tmp_path, "m/2", "m/10", "m/9", "m/latest", "m/.3.partial")
    assert latest_version(root / "m") == (10, root / "m" / "10")


def test_latest_version_of_a_model_without_versions_is_none(tmp_path: Path) -> None:
    assert latest_version(make(tmp_path, "m/notes") / "m") is None


def test_model_folders_skip_hidden_folders_and_files(tmp_path: Path) -> None:
    root = make(tmp_path, "b/1", "a/1", ".checkpoints/x")
    (root / "accuracy.png").write_bytes(b"")
    assert list(model_folders(root)) == ["a", "b"]


def test_latest_versions_in_name_order(tmp_path: Path) -> None:
    root = make(tmp_path, "separable/1", "regular/1", "regular/3", "empty/notes")
    assert latest_versions(root) == [root / "regular" / "3", root / "separable" / "1"]
    assert version_dir(root, "regular", 3) == root / "regular" / "3"
