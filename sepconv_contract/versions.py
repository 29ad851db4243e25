"""The model repository layout, ``<model_dir>/<name>/<version>/``: the one version scanner.

Publishing a version: copy it to a hidden folder beside the others (``<name>/.tmp-2/``), then
rename that folder to ``<name>/2/``. A rename within one file system is atomic, so a scanner
sees either no ``2/`` or a complete one; hidden and non-numeric folders are never versions.
A version folder copied into place directly can be seen half-copied: such a folder is
incomplete (``incomplete_reason``) and the newest complete version is served instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from sepconv_contract.signature import METADATA_FILE

# What a complete SavedModel version folder holds (``tf.saved_model.save`` writes both).
SAVED_MODEL_FILE = "saved_model.pb"
VARIABLES_INDEX_FILE = "variables/variables.index"


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


def versions(model_folder: Path) -> list[tuple[int, Path]]:
    """Every numeric version folder of one model, highest first."""
    found = [
        (int(path.name), path)
        for path in model_folder.iterdir()
        if path.is_dir() and path.name.isdigit()
    ]
    return sorted(found, reverse=True)


def latest_version(model_folder: Path) -> tuple[int, Path] | None:
    """The highest numeric version folder of one model, complete or not; None when none."""
    found = versions(model_folder)
    return found[0] if found else None


def incomplete_reason(version_folder: Path) -> str | None:
    """Why ``version_folder`` is not a complete version yet, or None when it is.

    Complete: ``saved_model.pb`` and ``variables/variables.index`` are there and, when present,
    ``metadata.json`` parses as JSON. The reason names files relative to the folder only, so it
    may be logged or shown without revealing server paths.
    """
    missing = [
        name
        for name in (SAVED_MODEL_FILE, VARIABLES_INDEX_FILE)
        if not (version_folder / name).is_file()
    ]
    if missing:
        return f"missing {', '.join(missing)}"
    metadata = version_folder / METADATA_FILE
    if metadata.exists():
        try:
            json.loads(metadata.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"{METADATA_FILE} does not parse ({type(error).__name__})"
    return None


def latest_complete_version(
    model_folder: Path,
) -> tuple[tuple[int, Path] | None, list[tuple[int, str]]]:
    """The highest complete version of one model (None when none is complete), and each
    higher, incomplete version skipped on the way with its reason, highest first."""
    skipped: list[tuple[int, str]] = []
    for version, path in versions(model_folder):
        reason = incomplete_reason(path)
        if reason is None:
            return (version, path), skipped
        skipped.append((version, reason))
    return None, skipped


def latest_versions(model_dir: Path) -> list[Path]:
    """The highest version folder of each model under ``model_dir``, in name order."""
    found = (latest_version(folder) for folder in model_folders(model_dir).values())
    return [path for latest in found if latest is not None for path in [latest[1]]]
