"""Fixtures every suite shares: small real SavedModels exported by the tests, the in-process
app on them (``tests.helpers.apps``), and the CI rule for missing tools (``tests.helpers.tools``).
Each folder's own conftest.py holds what only its suites use."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both architectures, untrained but real, exported as ``<dir>/<name>/1/`` with metadata."""
    from training.architectures import ARCHITECTURES, build_model
    from training.export import build_metadata, export_saved_model, version_dir, write_metadata

    root = tmp_path_factory.mktemp("models")
    for index, architecture in enumerate(ARCHITECTURES):
        import keras

        keras.utils.set_random_seed(index)
        model = build_model(architecture)
        target = version_dir(root, architecture, 1)
        export_saved_model(model, target)
        write_metadata(
            target,
            build_metadata(
                model,
                name=architecture,
                version=1,
                architecture=architecture,
                epochs=0,
                seconds_per_epoch=None,
                data_source="untrained (tests)",
            ),
        )
    return root


# Fixtures of the service tests (a ready app on the SavedModels above, test images).
pytest_plugins = ["tests.helpers.apps"]
