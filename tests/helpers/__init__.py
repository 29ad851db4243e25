"""What the test suites share: apps and servers to test against, images, datasets, tools.

One module per job: ``apps`` (a ready app in-process, plus its session fixture), ``servers``
(real uvicorn and ``sepconv-serve`` processes on free ports), ``images`` (encoders and crafted
files), ``datasets`` (tiny generated CIFAR-10 trees), ``reliability`` and ``hostile`` (error
checks and the hostile-input suites' shared fixtures), ``tools`` (external tools a suite needs).
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
