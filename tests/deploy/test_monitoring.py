"""The monitoring recipes in deploy/monitoring/: a ServiceMonitor and a PrometheusRule for the
Prometheus Operator, the same rules as a plain file, and a Prometheus config for Docker Compose.

No cluster is needed: the two custom resources are validated against the Operator's own CRD
schemas (vendored in schemas/, made strict so a misspelt key fails), checked against the
Service and the metrics they watch, and promtool (Debian's ``prometheus`` package) checks the
rules and the config and runs the rules' unit tests, rules.test.yml.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics_core import Metric

from service.process.metrics import ServiceMetrics
from tests.helpers import REPOSITORY, crds
from tests.helpers.crds import schema_errors
from tests.helpers.tools import require_executable

MONITORING_DIR = REPOSITORY / "deploy" / "monitoring"
KUBERNETES_DIR = REPOSITORY / "deploy" / "kubernetes"
SCHEMAS_DIR = Path(__file__).parent / "schemas"
RULES_FILE = MONITORING_DIR / "rules.yml"
RULES_TESTS_FILE = MONITORING_DIR / "rules.test.yml"
SEVERITIES = {"critical", "warning", "info"}
# Series of Prometheus's own that the rules may use besides the service's.
PROMETHEUS_SERIES = {"up"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = load(RULES_FILE)["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def kubernetes_service() -> dict[str, Any]:
    service: dict[str, Any] = load(KUBERNETES_DIR / "service.yaml")
    return service


def crd_validator(name: str, *, strictly: bool = True) -> jsonschema.protocols.Validator:
    """A validator for ``schemas/<name>-v1.json``, the CRD's openAPIV3Schema."""
    return crds.crd_validator(SCHEMAS_DIR / f"{name}-v1.json", strictly=strictly)


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """promtool run in deploy/monitoring/, where the files' relative paths point."""
    executable = require_executable(
        "promtool", "apt-get install prometheus: Debian's package brings promtool"
    )
    return subprocess.run(
        [str(executable), *arguments],
        cwd=MONITORING_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def exported_series() -> set[str]:
    """The series names the service's /metrics can show (a fresh registry, families only)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    families: list[Metric] = list(ServiceMetrics().registry.collect())
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def series_in(expression: str) -> set[str]:
    """The service's and the recorded series an expression reads (label values left out)."""
    unquoted = re.sub(r'"[^"]*"', '""', expression)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", unquoted))
    return {n for n in names if n.startswith("sepconv_") or ":" in n or n in PROMETHEUS_SERIES}


# The Prometheus Operator's custom resources.


@pytest.mark.parametrize(
    ("name", "file"),
    [("servicemonitor", "servicemonitor.yaml"), ("prometheusrule", "prometheusrule.yaml")],
)
def test_custom_resource_matches_the_operator_crd_strictly(name: str, file: str) -> None:
    resource = load(MONITORING_DIR / file)
    errors = schema_errors(crd_validator(name), resource)
    assert not errors, f"{file} against the {name} CRD:\n" + "\n".join(errors)


def test_strict_crd_schema_refuses_a_misspelt_key() -> None:
    monitor = load(MONITORING_DIR / "servicemonitor.yaml")
    monitor["spec"]["endpoints"][0]["intervall"] = monitor["spec"]["endpoints"][0].pop("interval")
    rule = load(MONITORING_DIR / "prometheusrule.yaml")
    rule["spec"]["groups"][1]["rules"][0]["annotation"] = {"summary": "misspelt"}

    assert not schema_errors(crd_validator("servicemonitor", strictly=False), monitor)
    assert schema_errors(crd_validator("servicemonitor"), monitor) == [
        "spec/endpoints/0: Additional properties are not allowed ('intervall' was unexpected)"
    ]
    assert not schema_errors(crd_validator("prometheusrule", strictly=False), rule)
    assert schema_errors(crd_validator("prometheusrule"), rule) == [
        "spec/groups/1/rules/0: Additional properties are not allowed ('annotation' was unexpected)"
    ]


def test_servicemonitor_selects_the_kubernetes_service_port_and_metrics_path() -> None:
    spec = load(MONITORING_DIR / "servicemonitor.yaml")["spec"]
    service = kubernetes_service()

    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "namespaceSelector" not in spec, "the Service has no namespace of its own"
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in port_names, f"the Service's ports are named {port_names}"
        assert endpoint["path"] == "/metrics"


def test_monitoring_kustomization_lists_both_custom_resources() -> None:
    kustomization = load(MONITORING_DIR / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == ["prometheusrule.yaml", "servicemonitor.yaml"]
    kinds = {load(MONITORING_DIR / name)["kind"] for name in kustomization["resources"]}
    assert kinds == {"PrometheusRule", "ServiceMonitor"}


# The rules: one source for the Operator and for plain Prometheus.


def test_prometheusrule_spec_is_the_rules_file() -> None:
    spec = load(MONITORING_DIR / "prometheusrule.yaml")["spec"]
    assert spec == load(RULES_FILE), "prometheusrule.yaml's spec and rules.yml differ: edit both"


def test_rules_read_only_series_the_service_exports_or_records() -> None:
    exported = exported_series()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        unknown = series_in(rule["expr"]) - exported - recorded - PROMETHEUS_SERIES
        assert not unknown, f"{rule.get('record') or rule['alert']} reads unknown {unknown}"


def test_rules_watch_the_scrape_job_of_the_operator_and_of_compose() -> None:
    service_job = kubernetes_service()["metadata"]["name"]
    (scrape,) = load(MONITORING_DIR / "prometheus.yml")["scrape_configs"]
    jobs = {j for rule in rules() for j in re.findall(r'job="([^"]*)"', rule["expr"])}
    assert jobs == {service_job} == {scrape["job_name"]}


def test_alerts_have_a_severity_a_summary_a_description_and_a_for() -> None:
    for alert in alerts():
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert alert["annotations"].keys() >= {"summary", "description"}, alert["alert"]
        assert re.fullmatch(r"\d+[smh]", alert["for"]), alert["alert"]


def test_rules_unit_tests_fire_and_hold_back_every_alert() -> None:
    cases = [
        case for test in load(RULES_TESTS_FILE)["tests"] for case in test.get("alert_rule_test", [])
    ]
    for name in (alert["alert"] for alert in alerts()):
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"rules.test.yml: {name} needs a firing and a quiet case"


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", RULES_FILE.name)
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", RULES_TESTS_FILE.name)
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"


# Prometheus under Docker Compose.


def test_prometheus_config_scrapes_the_compose_service_and_loads_the_rules() -> None:
    config = load(MONITORING_DIR / "prometheus.yml")
    compose = load(REPOSITORY / "docker-compose.yml")
    (scrape,) = config["scrape_configs"]
    (static,) = scrape["static_configs"]

    assert config["rule_files"] == [RULES_FILE.name]
    assert scrape["metrics_path"] == "/metrics"
    for target in static["targets"]:
        host, _, port = target.partition(":")
        service = compose["services"][host]
        assert port == service["environment"]["SEPCONV_PORT"], target


def test_prometheus_config_passes_promtool_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, f"promtool check config:\n{result.stdout}{result.stderr}"
