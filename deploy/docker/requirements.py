"""The image's pip requirements and constraints, read from pyproject.toml (a Dockerfile step).

    python3 requirements.py RUNTIME REQUIREMENTS CONSTRAINTS

RUNTIME ``tensorflow`` serves the base image's own TensorFlow, whatever its distribution is
called (``tensorflow`` in the official images, ``tensorflow-cpu`` in others): it is required at
exactly its installed version, so pip keeps it and honours its own dependency pins, and every
other TensorFlow distribution is constrained to no version at all, so nothing can pull a second
one in. RUNTIME ``onnxruntime`` (the slim image) installs the serving dependencies without
TensorFlow or matplotlib, plus the ``serve-onnx`` extra.

Runs on the base image's python3 with the standard library only, before anything is installed.
"""

import sys

if sys.version_info < (3, 11):
    sys.exit(
        "sepconv-serve: the image build needs Python 3.11 or newer in BASE_IMAGE (tomllib reads "
        f"pyproject.toml), but its python3 is {sys.version.split()[0]}. Build on a base with "
        "Python 3.11+, such as tensorflow/tensorflow:2.21.0 or python:3.11-slim."
    )

import importlib.metadata  # noqa: E402 - after the version check, which must run on any Python
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import tomllib  # noqa: E402

TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel")
# Needed by training and plots only: the slim image serves without them.
NOT_SERVING = {"tensorflow", "matplotlib"}


def name_of(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        sys.exit(f"sepconv-serve: cannot read the requirement {requirement!r} in pyproject.toml")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version: ``2.21.0rc1`` -> ``(2, 21, 0)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("rc")[0])[:3])


def installed_tensorflow(floor: str) -> tuple[str, str]:
    """The base image's one TensorFlow distribution and version."""
    found = [(name, v) for name in TENSORFLOW_DISTRIBUTIONS for v in _versions(name)]
    if not found:
        sys.exit(
            "sepconv-serve: BASE_IMAGE has no TensorFlow (looked for "
            f"{', '.join(TENSORFLOW_DISTRIBUTIONS)}). RUNTIME=tensorflow serves the base "
            f"image's own TensorFlow: build on tensorflow/tensorflow:{floor}, or build the "
            "slim image: --build-arg RUNTIME=onnxruntime --build-arg BASE_IMAGE=python:3.11-slim."
        )
    if len(found) > 1:
        listed = ", ".join(f"{n}=={v}" for n, v in found)
        sys.exit(f"sepconv-serve: BASE_IMAGE holds several TensorFlow distributions: {listed}")
    ((name, version),) = found
    if release(version) < release(floor):
        sys.exit(
            f"sepconv-serve: BASE_IMAGE has {name}=={version}, older than the {floor} that "
            f"pyproject.toml needs: build on tensorflow/tensorflow:{floor} or newer."
        )
    return name, version


def _versions(name: str) -> list[str]:
    """``[version]`` of an installed distribution, ``[]`` if it is not installed."""
    try:
        return [importlib.metadata.version(name)]
    except importlib.metadata.PackageNotFoundError:
        return []


def main() -> None:
    runtime, requirements_path, constraints_path = sys.argv[1:]
    project = tomllib.loads(Path("pyproject.toml").read_text())
    build_requires = project["build-system"]["requires"]
    dependencies = project["project"]["dependencies"]
    floors = [re.search(r">=\s*([0-9.]+)", d) for d in dependencies if name_of(d) == "tensorflow"]
    floor = floors[0].group(1) if floors and floors[0] else "0"
    serving = [d for d in dependencies if name_of(d) not in NOT_SERVING]
    if runtime == "tensorflow":
        name, version = installed_tensorflow(floor)
        matplotlib = [d for d in dependencies if name_of(d) == "matplotlib"]
        requirements = [*build_requires, *serving, *matplotlib, f"{name}=={version}"]
        constraints = [f"{name}=={version}"]
    elif runtime == "onnxruntime":
        name = ""
        extra = project["project"]["optional-dependencies"]["serve-onnx"]
        requirements = [*build_requires, *serving, *extra]
        constraints = []
    else:
        sys.exit(f"sepconv-serve: RUNTIME must be tensorflow or onnxruntime, not {runtime!r}")
    # No version satisfies `<0`: a dependency wanting a(nother) TensorFlow fails the build.
    constraints += [f"{other}<0" for other in TENSORFLOW_DISTRIBUTIONS if other != name]
    Path(requirements_path).write_text("\n".join(requirements) + "\n")
    Path(constraints_path).write_text("\n".join(constraints) + "\n")
    print(f"sepconv-serve ({runtime}): requirements {requirements}, constraints {constraints}")


if __name__ == "__main__":
    main()
