"""Output folders checked for writing before any data loads.

A container running as another uid than the owner of a mounted ``./models`` could otherwise
decode the data set and train for a while before its first checkpoint write fails with a raw
``PermissionError``; this check fails in the first second and says how to fix it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


class OutputDirError(Exception):
    """An output folder cannot be created or written by this process."""


def _owner(folder: Path) -> str:
    """``uid:gid`` of ``folder`` or of its nearest existing parent."""
    for candidate in (folder, *folder.parents):
        try:
            status = candidate.stat()
        except OSError:
            continue
        return f"{status.st_uid}:{status.st_gid} (owner of {candidate})"
    return "unknown"


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest parent that exists: where creating ``folder`` would write."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path(folder.anchor or ".")


def ensure_writable(*folders: Path) -> None:
    """Write a scratch file in each folder, or in the parent it would be created in, or raise
    OutputDirError. Nothing is created: a run that fails later leaves no empty folders."""
    for folder in folders:
        folder = folder.expanduser()
        try:
            with tempfile.TemporaryFile(
                dir=_nearest_existing(folder), prefix=".sepconv-write-check-"
            ):
                pass
        except OSError as error:
            raise OutputDirError(
                f"cannot write {folder} ({error.strerror}): this process runs as uid:gid "
                f"{os.getuid()}:{os.getgid()}, the folder belongs to {_owner(folder)}. Run "
                "as the folder's owner (with Docker Compose: SEPCONV_UID=$(id -u) "
                "SEPCONV_GID=$(id -g) docker compose --profile train run --rm train) or make "
                "the folder writable for this uid"
            ) from error


def check_training_outputs(args: argparse.Namespace) -> None:
    """The folders ``sepconv-train`` will write, given its options: checkpoints unless it only
    exports, the exported models unless it only trains."""
    folders = [] if args.export_only else [args.checkpoint_dir]
    if not args.train_only:
        folders.append(args.out)
    ensure_writable(*folders)
