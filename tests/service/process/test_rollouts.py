"""New model versions: a half-copied version folder is never taken."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.process.settings import Settings
from tests.helpers.reliability import wait_until_loaded


def publish(source: Path, target: Path) -> None:
    """The documented way to add a version: copy beside it, hidden, then rename (atomic)."""
    staging = target.with_name(f".tmp-{target.name}")
    shutil.copytree(source, staging)
    staging.rename(target)


def test_a_half_copied_newer_version_is_skipped_with_a_log_line(
    exported_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    shutil.copytree(exported_models, models)
    # A copy straight into place, caught half-way: the graph is there, the variables are not.
    (models / "regular" / "2").mkdir()
    shutil.copy(models / "regular" / "1" / "saved_model.pb", models / "regular" / "2")
    # A deploy that created the folder and has not copied anything yet.
    (models / "separable" / "2").mkdir()

    with (
        caplog.at_level(logging.WARNING, logger="sepconv.registry"),
        TestClient(create_app(Settings(model_dir=models, warmup_runs=1))) as client,
    ):
        body = wait_until_loaded(client)
        assert client.get("/health/ready").status_code == 200, body
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert {name: m["version"] for name, m in listed.items()} == {"regular": 1, "separable": 1}
    assert {name: m["status"] for name, m in listed.items()} == {
        "regular": "ready",
        "separable": "ready",
    }
    skipped = {
        (r.__dict__["model"], r.__dict__["version"], r.__dict__["reason"], r.__dict__["serving"])
        for r in caplog.records
        if r.getMessage() == "incomplete version folder ignored"
    }
    assert skipped == {
        ("regular", 2, "missing variables/variables.index", 1),
        ("separable", 2, "missing saved_model.pb, variables/variables.index", 1),
    }
