"""Command-line entry points: ``sepconv-train``, ``sepconv-evaluate``, ``python -m training``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# TensorFlow's C++ start-up chatter buries the progress bars; users can raise it again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Each command's module, imported alone: evaluating needs TensorFlow, training may run without.
COMMAND_MODULES = {
    "train": "training.train",
    "evaluate": "training.evaluate",
    "export-onnx": "training.onnx_export",
    "export": "training.runtime_export",
}
COMMANDS = tuple(COMMAND_MODULES)


def _run(command: str, argv: Sequence[str] | None) -> int:
    from training.data import DatasetError
    from training.history import RunNotFound
    from training.output_dir import OutputDirError, check_training_outputs

    module = importlib.import_module(COMMAND_MODULES[command])
    parser = argparse.ArgumentParser(
        prog=f"sepconv-{command}",
        description=(module.__doc__ or "").strip().splitlines()[0],
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if command == "train":  # before the data loads: a wrong uid fails in a second
            check_training_outputs(args)
        return int(module.run(args))
    except (DatasetError, RunNotFound, OutputDirError) as error:
        print(f"sepconv-{command}: {error}", file=sys.stderr)
        return 2


def train_main(argv: Sequence[str] | None = None) -> int:
    """``sepconv-train``."""
    return _run("train", argv)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``sepconv-evaluate``."""
    return _run("evaluate", argv)


def export_onnx_main(argv: Sequence[str] | None = None) -> int:
    """``sepconv-export-onnx``."""
    return _run("export-onnx", argv)


def export_main(argv: Sequence[str] | None = None) -> int:
    """``sepconv-export``: every runtime's artifact beside each SavedModel, scored."""
    return _run("export", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training train|evaluate|export-onnx|export [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m training {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return _run(argv[0], argv[1:])
