"""The docs: the site builds strictly, and each table with a source in the code agrees with it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.process.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _table_rows(page: Path) -> list[list[str]]:
    """The cells of every Markdown table row on ``page`` (header and rule rows left out)."""
    rows = []
    for line in page.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _codes_in_source() -> set[tuple[int, str]]:
    """Every (status, code) pair ``service/errors.py`` can answer with."""
    tree = ast.parse((ROOT / "service" / "errors.py").read_text(encoding="utf-8"))
    pairs: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "ApiError"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[1], ast.Constant)
        ):
            pairs.add((int(node.args[0].value), str(node.args[1].value)))
        if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.keys):
            # Starlette's own errors, by status (``_HTTP_CODES``)
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                    pairs.add((int(key.value), str(value.value)))
    return pairs


def test_errors_table_lists_exactly_the_codes_the_service_sends() -> None:
    documented = set()
    for cells in _table_rows(DOCS / "errors.md"):
        status, code = cells[0], cells[1].strip("`")
        if status.isdigit():
            documented.add((int(status), code))
    source = _codes_in_source()
    assert source, "no codes found in service/errors.py: the parser no longer matches it"
    assert source - documented == set(), "codes the service sends but docs/errors.md lacks"
    assert documented - source == set(), "codes docs/errors.md lists but the service never sends"


def test_configuration_table_lists_every_setting() -> None:
    documented = set()
    for cells in _table_rows(DOCS / "configuration.md"):
        documented.update(re.findall(r"`(SEPCONV_[A-Z0-9_]+)`", cells[0]))
    fields = {f"SEPCONV_{name.upper()}" for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from docs/configuration.md"
    assert documented - fields == set(), "docs/configuration.md lists settings that do not exist"


def test_readme_is_a_front_page_and_its_examples_ship() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    for path in set(re.findall(r"@(examples/[\w./-]+)", readme)):
        assert (ROOT / path).is_file(), f"the README's example {path} does not ship"
    for target in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", readme):
        assert (ROOT / target).is_file(), f"the README links {target}, which does not exist"


@pytest.mark.slow
def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    # Strict: a broken link, a missing anchor or a page left out of the nav fails the build.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "errors" / "index.html").is_file()
