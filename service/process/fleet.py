"""What the workers of one server tell their supervisor and each other.

With several workers, each one writes a report (the model versions it serves and whether it is
ready) to a file in a folder they all share, once its models are loaded. The supervisor reads
it to decide whether a replacement worker may take over, and which versions a respawned worker
must load to match the others; each worker's readiness reads the others' reports to say when
they serve different versions. One JSON file per worker, written by rename, so a reader never
sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from service.core.registry import ModelRegistry

# Set by the supervisor in the environment a worker starts with (not user settings).
ROLE_ENV = "_SEPCONV_WORKER_ROLE"
PINNED_VERSIONS_ENV = "_SEPCONV_PINNED_VERSIONS"
# A worker started in place of another (a respawn, or SIGHUP's rollout): it may only take
# connections once every model it was asked for is ready, or the fleet would serve less.
REPLACEMENT = "replacement"
# The exit status of a replacement worker whose models did not load: it never took a
# connection, and its report says why.
MODELS_NOT_READY = 4
FOLDER_NAME = "workers"


class WorkerReport(BaseModel):
    pid: int
    ready: bool
    versions: dict[str, int]
    problems: dict[str, str]

    def summary(self) -> str:
        """The problems in one line, for a log: "regular: failed (missing saved_model.pb)"."""
        return "; ".join(f"{name}: {problem}" for name, problem in self.problems.items())


def report_of(registry: ModelRegistry, strict: bool, pid: int) -> WorkerReport:
    """This worker's report. Ready as readiness judges it, and, for a respawn, with every model
    the other workers serve ready too (so a respawn never makes the fleet serve less)."""
    problems = {
        entry.name: entry.status + (f" ({entry.error})" if entry.error else "")
        for entry in registry.entries()
        if entry.status != "ready"
    }
    ready = registry.is_ready(strict) and not set(registry.pinned_versions) & set(problems)
    versions = {
        entry.name: entry.version for entry in registry.ready_entries() if entry.version is not None
    }
    return WorkerReport(pid=pid, ready=ready, versions=versions, problems=problems)


def fleet_folder(metrics_folder: str | os.PathLike[str] | None) -> Path | None:
    """The reports' folder inside the workers' shared metrics folder (None for one worker)."""
    return Path(metrics_folder) / FOLDER_NAME if metrics_folder else None


def is_replacement() -> bool:
    return os.environ.get(ROLE_ENV) == REPLACEMENT


def pinned_versions() -> dict[str, int]:
    """The versions this worker must load to match the workers already serving ({} = newest)."""
    try:
        pins = json.loads(os.environ.get(PINNED_VERSIONS_ENV) or "{}")
    except json.JSONDecodeError:
        return {}
    if not isinstance(pins, dict):
        return {}
    return {str(k): v for k, v in pins.items() if isinstance(v, int) and not isinstance(v, bool)}


@contextlib.contextmanager
def worker_environment(role: str | None, pins: Mapping[str, int] | None) -> Iterator[None]:
    """The environment a worker started inside this block inherits (spawn copies it)."""
    saved = {name: os.environ.get(name) for name in (ROLE_ENV, PINNED_VERSIONS_ENV)}
    _set_environment(
        {ROLE_ENV: role, PINNED_VERSIONS_ENV: json.dumps(dict(pins)) if pins else None}
    )
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: Mapping[str, str | None]) -> None:
    """Each variable set to its value, or unset where the value is None."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def write_report(folder: Path, report: WorkerReport) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{report.pid}.json.tmp"
    partial.write_text(report.model_dump_json())
    partial.replace(folder / f"{report.pid}.json")


def read_report(folder: Path, pid: int) -> WorkerReport | None:
    try:
        return WorkerReport.model_validate_json((folder / f"{pid}.json").read_text())
    except (OSError, ValidationError):
        return None


def remove_report(folder: Path, pid: int | None) -> None:
    if pid is not None:
        (folder / f"{pid}.json").unlink(missing_ok=True)


def live_reports(folder: Path) -> list[WorkerReport]:
    """The reports of the workers still running (a killed worker's file may outlive it)."""
    reports = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        report = read_report(folder, int(path.stem)) if path.stem.isdigit() else None
        if report is not None and worker_running(report.pid):
            reports.append(report)
    return reports


def differing_versions(reports: list[WorkerReport]) -> dict[str, list[int]]:
    """Each model that the workers serve at more than one version, with those versions."""
    served: dict[str, set[int]] = {}
    for report in reports:
        for name, version in report.versions.items():
            served.setdefault(name, set()).add(version)
    return {name: sorted(found) for name, found in sorted(served.items()) if len(found) > 1}


def worker_running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
