"""The KServe recipes in deploy/kserve/: a ServingRuntime for this image, InferenceServices on
it and on KServe's stock TensorFlow Serving and Triton runtimes, and (in storage/) the PVC they
read with the Job that fills it.

No cluster is needed. The custom resources are validated against KServe's own CRD schemas
(vendored in schemas/kserve-v0.20.0/, made strict by tests/helpers/crds.py so a misspelt key
fails) and their metadata against Kubernetes' ObjectMeta; the core resources with
kubernetes-validate; kubectl builds both kustomizations; and every reference is followed: the
runtimes with the formats and protocols they serve, the PVC and the paths under it in this
checkout's models/, the service's settings, probes and image user.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sepconv_contract import ONNX_FILE, latest_versions, model_folders
from sepconv_contract.versions import SAVED_MODEL_FILE, versions
from tests.deploy.test_containers import (
    KUBERNETES_VERSION,
    SETTINGS_VARIABLES,
    arguments_of,
    dockerfile_environment,
)
from tests.helpers import REPOSITORY
from tests.helpers.crds import crd_validator, schema_errors
from tests.helpers.tools import require_executable
from training.triton_config import TRITON_CONFIG_FILE

KSERVE_DIR = REPOSITORY / "deploy" / "kserve"
STORAGE_DIR = KSERVE_DIR / "storage"
KSERVE_SCHEMAS = Path(__file__).parent / "schemas" / "kserve-v0.20.0"
STOCK_RUNTIMES_DIR = KSERVE_SCHEMAS / "runtimes"
# Each KServe kind: the apiVersion its CRD serves and that version's vendored schema.
CRD_SCHEMAS = {
    "InferenceService": ("serving.kserve.io/v1beta1", "inferenceservice-v1beta1.json"),
    "ServingRuntime": ("serving.kserve.io/v1alpha1", "servingruntime-v1alpha1.json"),
    "ClusterServingRuntime": ("serving.kserve.io/v1alpha1", "servingruntime-v1alpha1.json"),
}
# Where KServe mounts an InferenceService's storageUri in the predictor container.
KSERVE_MODEL_MOUNT = "/mnt/models"
# KServe's stock runtime image is tensorflow/serving:2.6.2 (config/runtimes/kustomization.yaml).
STOCK_TENSORFLOW_SERVING = (2, 6, 2)
# Kubernetes' default terminationGracePeriodSeconds; Knative sets none of its own below it.
DEFAULT_GRACE_PERIOD_S = 30
PVC_SCHEME = "pvc://"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def listed(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifests ``folder/kustomization.yaml`` lists, by path relative to deploy/kserve."""
    return {
        str((folder / name).relative_to(KSERVE_DIR)): load(folder / name)
        for name in load(folder / "kustomization.yaml")["resources"]
    }


def manifests() -> dict[str, dict[str, Any]]:
    return listed(KSERVE_DIR) | listed(STORAGE_DIR)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [resource for resource in manifests().values() if resource["kind"] == kind]


def custom_resource_files() -> list[str]:
    return sorted(path for path, r in manifests().items() if r["kind"] in CRD_SCHEMAS)


def core_resource_files() -> list[str]:
    return sorted(path for path, r in manifests().items() if r["kind"] not in CRD_SCHEMAS)


def serving_runtime() -> dict[str, Any]:
    (runtime,) = of_kind("ServingRuntime")
    return runtime


def runtime_container() -> dict[str, Any]:
    (container,) = serving_runtime()["spec"]["containers"]
    return container


def inference_services() -> dict[str, dict[str, Any]]:
    return {isvc["metadata"]["name"]: isvc for isvc in of_kind("InferenceService")}


def stock_runtimes() -> dict[str, dict[str, Any]]:
    runtimes = (load(path) for path in sorted(STOCK_RUNTIMES_DIR.glob("*.yaml")))
    return {runtime["metadata"]["name"]: runtime for runtime in runtimes}


def kubernetes_deployment_container() -> dict[str, Any]:
    deployment = load(REPOSITORY / "deploy" / "kubernetes" / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def image_user() -> str:
    """The uid the image ends with (its last USER)."""
    return arguments_of("USER")[-1].split(":")[0]


@functools.cache
def kserve_validator(schema_file: str, *, strictly: bool = True) -> jsonschema.protocols.Validator:
    # Built once per schema: the InferenceService's is 1.6 MB.
    return crd_validator(KSERVE_SCHEMAS / schema_file, strictly=strictly)


def object_meta_errors(metadata: Any) -> list[str]:
    """Errors in ``metadata`` as Kubernetes' ObjectMeta, which every CRD leaves to the API
    server (its schema says only ``type: object``): checked as a ConfigMap's metadata."""
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    try:
        kubernetes_validate.validate(carrier, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.path))}: {error.message}"]
    return []


def kserve_errors(resource: dict[str, Any], *, strictly: bool = True) -> list[str]:
    """What KServe's CRD (strictly: with no unknown key) and ObjectMeta find wrong."""
    api_version, schema_file = CRD_SCHEMAS[resource["kind"]]
    errors = [] if resource["apiVersion"] == api_version else [f"apiVersion: not {api_version}"]
    errors += schema_errors(kserve_validator(schema_file, strictly=strictly), resource)
    return errors + (object_meta_errors(resource["metadata"]) if strictly else [])


def kubernetes_errors(resource: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.path))}: {error.message}"]
    return []


def claim_and_path(storage_uri: str) -> tuple[str, str]:
    """``pvc://<claim>/<path>`` split into the claim's name and the path inside it."""
    assert storage_uri.startswith(PVC_SCHEME), f"{storage_uri} is not a pvc:// URI"
    claim, _, path = storage_uri.removeprefix(PVC_SCHEME).partition("/")
    return claim, path


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# The manifests against their schemas.


@pytest.mark.parametrize("folder", [KSERVE_DIR, STORAGE_DIR], ids=["kserve", "storage"])
def test_kustomization_lists_every_manifest_of_its_folder(folder: Path) -> None:
    names = set(load(folder / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert names == on_disk, f"{folder}/kustomization.yaml lists {names}, the folder has {on_disk}"


@pytest.mark.parametrize("path", custom_resource_files())
def test_custom_resource_matches_the_kserve_crd_strictly(path: str) -> None:
    errors = kserve_errors(manifests()[path])
    assert not errors, f"{path} against KServe's CRD:\n" + "\n".join(errors)


@pytest.mark.parametrize("name", sorted(stock_runtimes()))
def test_strict_crd_schema_accepts_kserve_stock_runtimes(name: str) -> None:
    # KServe's own manifests pass the strict schema: strictness refuses typos, not real fields.
    errors = kserve_errors(stock_runtimes()[name])
    assert not errors, f"KServe's {name} against its own CRD:\n" + "\n".join(errors)


def test_strict_crd_schema_refuses_misspelt_keys() -> None:
    isvc = inference_services()["sepconv"]
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop(
        "storageUri"
    )
    runtime = serving_runtime()
    probe = runtime["spec"]["containers"][0]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")
    runtime["metadata"]["label"] = runtime["metadata"].pop("labels")

    assert not kserve_errors(isvc, strictly=False)
    assert kserve_errors(isvc) == [
        "spec/predictor/model: Additional properties are not allowed ('storageURI' was unexpected)"
    ]
    assert not kserve_errors(runtime, strictly=False)
    assert kserve_errors(runtime) == [
        "spec/containers/0/readinessProbe: Additional properties are not allowed "
        "('periodSecond' was unexpected)",
        "metadata: Additional properties are not allowed ('label' was unexpected)",
    ]


@pytest.mark.parametrize("path", core_resource_files())
def test_core_resource_matches_the_kubernetes_schema(path: str) -> None:
    errors = kubernetes_errors(manifests()[path])
    assert not errors, f"{path}, invalid for Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(errors)


@pytest.mark.parametrize("folder", [KSERVE_DIR, STORAGE_DIR], ids=["kserve", "storage"])
def test_kustomization_builds_the_listed_manifests(folder: Path) -> None:
    kubectl = require_executable(
        "kubectl", "install kubectl: its built-in kustomize renders the kustomizations"
    )
    result = subprocess.run(
        [str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {folder}:\n{result.stderr}"

    def key(resource: dict[str, Any]) -> tuple[str, str]:
        return resource["kind"], resource["metadata"]["name"]

    rendered = sorted(yaml.safe_load_all(result.stdout), key=key)
    assert rendered == sorted(listed(folder).values(), key=key)


# The runtime: this image, as deploy/kubernetes runs it.


def test_runtime_serves_its_own_format_over_the_open_inference_protocol() -> None:
    spec = serving_runtime()["spec"]
    assert spec["protocolVersions"] == ["v2"], "the service speaks v2 (and its own REST API)"
    assert spec["multiModel"] is False
    assert [f["name"] for f in spec["supportedModelFormats"]] == ["sepconv"]
    formats_of_stock_runtimes = {
        f["name"] for r in stock_runtimes().values() for f in r["spec"]["supportedModelFormats"]
    }
    assert "sepconv" not in formats_of_stock_runtimes
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"


def test_service_routes_the_protocol_the_runtime_declares(tmp_path: Path) -> None:
    from service.main import create_app
    from service.process.settings import Settings

    # What KServe's v2 clients call: health, model readiness and metadata, inference.
    paths = set(create_app(Settings(model_dir=tmp_path)).openapi()["paths"])
    v2 = {"/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}"}
    v2 |= {"/v2/models/{model_name}/ready", "/v2/models/{model_name}/infer"}
    assert v2 <= paths, f"the service does not route {sorted(v2 - paths)}"


def test_runtime_container_sets_only_settings_the_service_reads() -> None:
    container = runtime_container()
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    (port,) = container["ports"]

    # KServe merges the InferenceService's model spec into the container of this name.
    assert container["name"] == "kserve-container"
    assert container["image"] == kubernetes_deployment_container()["image"]
    unknown = set(environment) - SETTINGS_VARIABLES
    assert not unknown, f"the runtime sets {unknown}, which the settings class does not read"
    assert environment["SEPCONV_MODEL_DIR"] == KSERVE_MODEL_MOUNT
    assert environment["SEPCONV_HOST"] == "0.0.0.0"
    assert port == {"name": "http1", "containerPort": 8080, "protocol": "TCP"}
    assert environment["SEPCONV_PORT"] == str(port["containerPort"])
    assert float(environment["SEPCONV_GRACEFUL_TIMEOUT_S"]) < DEFAULT_GRACE_PERIOD_S
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()


def test_runtime_probes_are_the_kubernetes_deployment_probes_on_the_serving_port() -> None:
    container = runtime_container()
    deployment = kubernetes_deployment_container()
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe, reference = container[kind], deployment[kind]
        # Knative probes the serving port only, so the port is its number, not a name.
        assert probe["httpGet"]["port"] == container["ports"][0]["containerPort"], kind
        assert probe["httpGet"]["path"] == reference["httpGet"]["path"], kind
        timing = {k: v for k, v in probe.items() if k != "httpGet"}
        assert timing == {k: v for k, v in reference.items() if k != "httpGet"}, kind


def test_runtime_runs_as_the_image_user_on_a_read_only_root() -> None:
    container = runtime_container()
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == image_user()
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The one writable path: /tmp (uploads, the comparison lock), an emptyDir.
    (mount,) = container["volumeMounts"]
    volumes = {volume["name"]: volume for volume in serving_runtime()["spec"]["volumes"]}
    assert mount["mountPath"] == "/tmp" and "emptyDir" in volumes[mount["name"]]


# The InferenceServices: each on a runtime that serves its format, reading the PVC.


def test_inference_services_name_a_runtime_serving_their_format_and_protocol() -> None:
    runtimes = stock_runtimes() | {serving_runtime()["metadata"]["name"]: serving_runtime()}
    (account,) = of_kind("ServiceAccount")
    for name, isvc in inference_services().items():
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        runtime = runtimes[model["runtime"]]["spec"]
        formats = {(f["name"], f.get("version")) for f in runtime["supportedModelFormats"]}
        assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats, name
        assert model["protocolVersion"] in runtime["protocolVersions"], name
        assert predictor["serviceAccountName"] == account["metadata"]["name"], name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= model["resources"][bound].keys(), name


def test_inference_services_read_the_pvc_the_storage_job_fills() -> None:
    (claim,) = of_kind("PersistentVolumeClaim")
    (job,) = of_kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (mount,) = container["volumeMounts"]
    filled = Path(container["command"][-1]).relative_to(mount["mountPath"])
    for name, isvc in inference_services().items():
        claim_name, path = claim_and_path(isvc["spec"]["predictor"]["model"]["storageUri"])
        assert claim_name == claim["metadata"]["name"], name
        # The Job copies this checkout's models/ (through the image) to <claim>/models.
        assert Path(path).parts[0] == str(filled) == "models", name
        assert (REPOSITORY / path).is_dir(), f"{name} reads {path}, which this checkout lacks"


def test_sepconv_inference_service_reads_the_whole_model_repository() -> None:
    model = inference_services()["sepconv"]["spec"]["predictor"]["model"]
    _, path = claim_and_path(model["storageUri"])
    assert model["runtime"] == serving_runtime()["metadata"]["name"]
    assert latest_versions(REPOSITORY / path) == latest_versions(REPOSITORY / "models")


def test_tensorflow_serving_serves_every_savedmodel_on_a_newer_image() -> None:
    served = {}
    for name, isvc in inference_services().items():
        model = isvc["spec"]["predictor"]["model"]
        if model["runtime"] != "kserve-tensorflow-serving":
            continue
        _, path = claim_and_path(model["storageUri"])
        # TensorFlow Serving's base path: the version folders of one model.
        numbered = versions(REPOSITORY / path)
        assert numbered and (numbered[0][1] / SAVED_MODEL_FILE).is_file(), name
        assert version_tuple(model["runtimeVersion"]) > STOCK_TENSORFLOW_SERVING, name
        served[Path(path).name] = name
    assert set(served) == set(model_folders(REPOSITORY / "models"))


def test_triton_reads_a_model_repository_with_a_config_per_model() -> None:
    (triton,) = [
        isvc
        for isvc in inference_services().values()
        if isvc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    ]
    _, path = claim_and_path(triton["spec"]["predictor"]["model"]["storageUri"])
    folders = model_folders(REPOSITORY / path)
    environment = {variable["name"]: variable["value"] for variable in runtime_container()["env"]}
    assert folders
    for name, folder in folders.items():
        config = (folder / TRITON_CONFIG_FILE).read_text()
        (_, latest), *_ = versions(folder)
        assert (latest / ONNX_FILE).is_file(), f"{name}: run sepconv-export-onnx"
        # Triton batches as the sepconv runtime does, so the two compare like for like.
        batch = re.search(r"^max_batch_size: (\d+)$", config, re.MULTILINE)
        assert batch and batch.group(1) == environment["SEPCONV_MAX_BATCH_SIZE"], name


# The storage: a PVC filled from the image.


def test_models_job_copies_the_image_models_as_the_image_user() -> None:
    (claim,) = of_kind("PersistentVolumeClaim")
    (job,) = of_kind("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (volume,) = pod["volumes"]
    image_models = dockerfile_environment()["SEPCONV_MODEL_DIR"]

    assert container["image"] == kubernetes_deployment_container()["image"]
    assert container["command"][:3] == ["cp", "-R", f"{image_models}/."]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert container["volumeMounts"][0]["name"] == volume["name"]
    assert str(pod["securityContext"]["runAsUser"]) == image_user()
    # The fresh volume must be writable by that user.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
