"""The model repository layout, ``<model_dir>/<name>/<version>/``: the one version scanner."""

from __future__ import annotations

from pathlib import Path


def version_dir(model_dir: Path, name: str, version: int) -> Path:
    """``model_dir/<name>/<version>``: TensorFlow Serving's (and KServe's) layout."""
    return model_dir / name / str(version)


def model_folders(model_dir: Path) -> dict[str, Path]:
    """Every model folder under ``model_dir`` by name, sorted; hidden folders are skipped."""
    return {
        path.name: path
        for path in sorted(model_dir.iterdir())
        if path.is_dir() and not path.name.startswith(".")
    }


def latest_version(model_folder: Path) -> tuple[int, Path] | None:
    """The highest numeric version folder of one model, or None when it has none."""
    versions = [
        (int(path.name), path)
        for path in model_folder.iterdir()
        if path.is_dir() and path.name.isdigit()
    ]
    return max(versions) if versions else None


def latest_versions(model_dir: Path) -> list[Path]:
    """The highest version folder of each model under ``model_dir``, in name order."""
    found = (latest_version(folder) for folder in model_folders(model_dir).values())
    return [path for latest in found if latest is not None for path in [latest[1]]]
