"""External tools and data a suite needs (Chromium, wrk, promtool, the CIFAR-10 archive).

Locally a missing tool skips the suite, with the reason and the fix. In CI (``CI=true``, which
``.ci/run`` sets) it fails instead, so a suite can never pass by not running; a name listed in
``SEPCONV_CI_ALLOW_MISSING`` (comma-separated) is skipped there too, with the reason printed,
for what CI cannot have (``.ci/run`` lists the CIFAR-10 archive when no copy is on the machine).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def missing(name: str, reason: str) -> NoReturn:
    """Skip (locally) or fail (in CI) because ``name`` is not available."""
    allowed = {n.strip() for n in os.environ.get("SEPCONV_CI_ALLOW_MISSING", "").split(",")}
    if os.environ.get("CI", "").lower() == "true" and name not in allowed:
        pytest.fail(f"{name} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"{name} is missing: {reason}")


def require_executable(name: str, fix: str, path: Path | None = None) -> Path:
    """The path of executable ``name`` (or of ``path`` when given), else skip or fail."""
    found = path if path is not None and path.exists() else None
    if path is None:
        which = shutil.which(name)
        found = Path(which) if which else None
    if found is None:
        missing(name, f"not found ({fix})")
    return found


def require_file(name: str, path: Path, fix: str) -> Path:
    """``path`` if it is a file, else skip or fail naming ``name``."""
    if not path.is_file():
        missing(name, f"no file at {path} ({fix})")
    return path
