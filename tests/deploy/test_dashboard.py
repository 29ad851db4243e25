"""The Grafana dashboard, deploy/monitoring/grafana/dashboards/sepconv-serve.json.

Its structure is checked as Grafana reads it (one data source variable, unique panel ids, no
overlapping panels), its expressions by promtool; then every query of every panel runs against
a real Prometheus (Debian's ``prometheus``, on loopback) that scrapes a real ``sepconv-serve``
under load every second and evaluates deploy/monitoring/rules.yml, and must return data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sepconv_bench.server import free_port
from service.process.metrics import ServiceMetrics
from tests.deploy.test_monitoring import (
    MONITORING_DIR,
    PROMETHEUS_SERIES,
    RULES_FILE,
    exported_series,
    promtool,
    rules,
    series_in,
)
from tests.helpers import REPOSITORY
from tests.helpers.images import image_bytes
from tests.helpers.servers import serve_process
from tests.helpers.tools import require_executable

GRAFANA_DIR = MONITORING_DIR / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "sepconv-serve.json"
MONITORING_PAGE = REPOSITORY / "docs" / "monitoring.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = "sepconv-serve"
MODELS = ("regular", "separable")
# What Grafana puts in place of its variables. $__rate_interval is 4 scrape intervals at least:
# more here, so a rate still spans samples while the test's own load trickles along.
RATE_INTERVAL = "30s"
# The model variable as "All" (its allValue) and as one model picked.
MODEL_CHOICES = {"all": ".*", "one": MODELS[0]}

# The service under load: a queue of 16 refuses a batch of 24 images at once (503 OVERLOADED).
MAX_QUEUE = 16
SERVER_ENV = {"SEPCONV_MAX_QUEUE": str(MAX_QUEUE), "SEPCONV_MAX_BATCH_SIZE": "8"}
SINGLE_PREDICTIONS = 180
BATCHES = 30
BATCH_FILES = 8
OVERSIZED_BATCHES = 6
CONCURRENCY = 8


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too, rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.panel} [{self.ref_id}]"


def panel_queries() -> list[PanelQuery]:
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]


def variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard()["templating"]["list"]}


def substitute(expr: str, model: str) -> str:
    """``expr`` as Grafana sends it, with the job and ``model`` chosen."""
    values = {"__rate_interval": RATE_INTERVAL, "job": JOB, "model": model}
    unknown = set(re.findall(r"\$\{?(\w+)", expr)) - values.keys()
    assert not unknown, f"{expr!r} uses variables the dashboard does not define: {unknown}"
    return re.sub(r"\$\{?(\w+)\}?", lambda match: values[match.group(1)], expr)


# The dashboard as Grafana reads it.


def test_dashboard_is_a_grafana_dashboard_with_a_stable_uid() -> None:
    board = dashboard()
    assert board["uid"] == "sepconv-serve", "links to the dashboard use its uid"
    assert 36 <= board["schemaVersion"] <= 41, "Grafana 10 and 11 read schema 36 to 41"
    assert "id" not in board or board["id"] is None, "a provisioned dashboard gets its own id"
    assert panel_queries(), "the dashboard has no queries"


def test_panels_have_unique_ids_and_the_datasource_variable() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: duplicate refIds"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, f"{panel['title']} [{target['refId']}]"


def test_panels_do_not_overlap_and_fit_the_grid() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels():
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x, y in itertools.product(
            range(position["x"], position["x"] + position["w"]),
            range(position["y"], position["y"] + position["h"]),
        ):
            assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
            cells[(x, y)] = panel["title"]


def test_template_variables_pick_a_prometheus_a_job_and_models() -> None:
    by_name = variables()
    assert by_name.keys() == {"datasource", "job", "model"}
    assert by_name["datasource"]["type"] == "datasource"
    assert by_name["datasource"]["query"] == "prometheus"
    for name in ("job", "model"):
        assert by_name[name]["datasource"] == DATASOURCE, name
        assert by_name[name]["query"]["query"] == by_name[name]["definition"], name
        assert re.fullmatch(r"label_values\(.+, \w+\)", by_name[name]["definition"]), name
    assert by_name["model"]["multi"] and by_name["model"]["includeAll"]
    assert by_name["model"]["allValue"] == MODEL_CHOICES["all"]
    assert by_name["job"]["current"]["value"] == JOB


def test_queries_read_only_series_the_service_exports_or_records() -> None:
    known = exported_series() | {rule["record"] for rule in rules() if "record" in rule}
    for query in panel_queries():
        unknown = series_in(query.expr) - known - PROMETHEUS_SERIES
        assert not unknown, f"{query.name} reads {unknown}, which nothing exports or records"


def test_queries_filter_by_the_job_variable() -> None:
    for query in panel_queries():
        selectors = re.findall(r"\{([^}]*)\}", query.expr)
        assert selectors, f"{query.name} selects series of any job"
        for selector in selectors:
            assert 'job=~"$job"' in selector, f"{query.name}: {{{selector}}} has no job filter"


def test_queries_parse_as_promql(tmp_path: Path) -> None:
    # promtool parses each expression as the expression of a recording rule.
    queries = panel_queries()
    check = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": substitute(q.expr, ".*")}
                    for index, q in enumerate(queries)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump(check))
    result = promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_kustomization_ships_the_dashboard_to_grafanas_sidecar() -> None:
    kubectl = require_executable("kubectl", "it brings kustomize: kubectl kustomize")
    built = subprocess.run(
        [str(kubectl), "kustomize", str(MONITORING_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (config_map,) = [r for r in yaml.safe_load_all(built) if r["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"][DASHBOARD_FILE.name]) == dashboard()


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus() -> None:
    provisioning = GRAFANA_DIR / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sepconv.yml").read_text())[
        "providers"
    ]
    assert source["type"] == "prometheus" and source["isDefault"]
    # Grafana's $__rate_interval needs the scrape interval Prometheus really uses.
    scrape = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())["global"]
    assert source["jsonData"]["timeInterval"] == scrape["scrape_interval"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# The Monitoring page: its metrics table is the service's registry.


@dataclass(frozen=True)
class DocumentedMetric:
    series: str
    type: str
    labels: frozenset[str]


def documented_metrics() -> list[DocumentedMetric]:
    """The rows of docs/monitoring.md's metrics table."""
    rows = re.findall(
        r"^\| `(sepconv_\w+)` \| (\w+) \| ([^|]*) \|", MONITORING_PAGE.read_text(), re.M
    )
    return [
        DocumentedMetric(series, kind, frozenset(re.findall(r"`(\w+)`", labels)))
        for series, kind, labels in rows
    ]


def test_monitoring_page_lists_every_metric_with_its_type() -> None:
    # A counter's family is its series without _total; the other types are named alike.
    documented = {
        metric.series.removesuffix("_total"): metric.type for metric in documented_metrics()
    }
    exported = {family.name: family.type for family in ServiceMetrics().registry.collect()}
    assert documented == exported


def test_monitoring_page_names_every_recording_rule_and_alert() -> None:
    page = MONITORING_PAGE.read_text()
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        assert f"| `{name}` |" in page, f"docs/monitoring.md does not list {name}"


# Every query against a real Prometheus scraping a real sepconv-serve.


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    targets_file: Path
    log: Path

    def scrape(self, target: str) -> None:
        """Add ``target`` to the scrape job and wait for its first good scrape."""
        staged = self.targets_file.with_suffix(".tmp")
        staged.write_text(json.dumps([{"targets": [target]}]))
        staged.rename(self.targets_file)  # whole, never a half-written file
        up = wait_for(lambda: _up(self), self.process, timeout_s=30)
        assert up, f"Prometheus never scraped {target}:\n{self.output()}"

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)
        answer: dict[str, Any] = response.json()
        return answer

    def result(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        data: dict[str, Any] = answer["data"]
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def prometheus_on_loopback(folder: Path) -> Iterator[Prometheus]:
    """Debian's Prometheus on a free loopback port: every second it scrapes the targets given
    to ``scrape`` (a file it watches, so it can start while the service loads) and evaluates
    rules.yml."""
    executable = require_executable("prometheus", "apt-get install prometheus (Debian's 2.42)")
    targets_file = folder / "targets.json"
    targets_file.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            }
        ],
    }
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(executable),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Prometheus(process, f"http://127.0.0.1:{port}", targets_file, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _up(prometheus: Prometheus) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return bool(prometheus.result(f'up{{job="{JOB}"}} == 1'))
    return False


def wait_for(
    condition: Any, process: subprocess.Popen[bytes], timeout_s: float, poll_s: float = 0.5
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(poll_s)
    return False


PNG = image_bytes("PNG")


async def drive_load(base_url: str) -> dict[int, int]:
    """Single and batch predictions, a few 404s and oversized batches, in a shuffled order."""
    requests: list[tuple[str, dict[str, str], int]] = [
        ("/predict", {"model": ("all", *MODELS)[index % 3]}, 1)
        for index in range(SINGLE_PREDICTIONS)
    ]
    requests += [("/predict/batch", {}, BATCH_FILES)] * BATCHES
    requests += [("/predict/batch", {}, MAX_QUEUE + BATCH_FILES)] * OVERSIZED_BATCHES
    requests += [("/predict", {"model": "missing"}, 1)] * 4
    random.Random(0).shuffle(requests)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def send(client: httpx.AsyncClient, path: str, query: dict[str, str], files: int) -> int:
        async with slots:
            if path == "/predict":
                headers = {"content-type": "image/png"}
                response = await client.post(path, params=query, content=PNG, headers=headers)
            else:
                upload = [("files", ("image.png", PNG, "image/png"))] * files
                response = await client.post(path, params=query, files=upload)
            return response.status_code

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        statuses = await asyncio.gather(*(send(client, *request) for request in requests))
    return {status: statuses.count(status) for status in set(statuses)}


@contextlib.contextmanager
def trickle(base_url: str) -> Iterator[None]:
    """A prediction every 50 ms while the queries run, so no rate window goes empty."""
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.wait(0.05):
                client.post("/predict", content=PNG, headers={"content-type": "image/png"})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def prometheus(
    exported_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A Prometheus that has scraped a loaded sepconv-serve, with every panel showing data."""
    folder = tmp_path_factory.mktemp("dashboard")
    with (
        prometheus_on_loopback(folder) as scraper,
        serve_process(exported_models, folder / "server.log", SERVER_ENV) as server,
    ):
        scraper.scrape(f"127.0.0.1:{server.port}")
        statuses = asyncio.run(drive_load(server.url))
        # Only the oversized batches must be shed; a full queue may refuse a few others too.
        assert statuses.keys() <= {200, 404, 503}, statuses
        assert statuses.get(200, 0) >= SINGLE_PREDICTIONS // 2, statuses
        assert statuses.get(503, 0) >= OVERSIZED_BATCHES, statuses
        assert statuses.get(404) == 4, statuses
        with trickle(server.url):
            queries = [substitute(q.expr, ".*") for q in panel_queries()]
            # The recording rules need an evaluation after the load's samples were scraped.
            # A query still empty by then fails in its own test, named after its panel.
            wait_for(
                lambda: all(scraper.result(expr) for expr in queries),
                scraper.process,
                timeout_s=30,
            )
            yield scraper


@pytest.mark.network
@pytest.mark.parametrize("model", MODEL_CHOICES.values(), ids=MODEL_CHOICES.keys())
@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.name)
def test_panel_query_returns_data_from_a_live_scrape(
    prometheus: Prometheus, query: PanelQuery, model: str
) -> None:
    result = prometheus.result(substitute(query.expr, model))
    assert result, f"{query.name} returned no series"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(value) for value in values), f"{query.name}: only {values}"
    if model != ".*":
        # A panel split by model shows the chosen one only.
        shown = {sample["metric"].get("model") for sample in result} - {None}
        assert shown <= {model}, f"{query.name} shows {shown} for model {model!r}"


@pytest.mark.network
@pytest.mark.parametrize("name", ["job", "model"])
def test_template_variable_lists_the_live_values(prometheus: Prometheus, name: str) -> None:
    # label_values(SELECTOR, LABEL) is Grafana's call of Prometheus's label values API.
    call = re.fullmatch(r"label_values\((.+), (\w+)\)", variables()[name]["definition"])
    assert call is not None
    selector, label = call.groups()
    response = httpx.get(
        f"{prometheus.url}/api/v1/label/{label}/values",
        params={"match[]": substitute(selector, ".*")},
        timeout=10,
    )
    values = response.json()["data"]
    assert set(values) == ({JOB} if name == "job" else set(MODELS)), values


@pytest.mark.network
def test_runtime_join_labels_each_model_with_its_serving_runtime(prometheus: Prometheus) -> None:
    (query,) = [q for q in panel_queries() if "0.99" in q.expr and "group_left" in q.expr]
    runtimes = {
        sample["metric"]["model"]: sample["metric"]["runtime"]
        for sample in prometheus.result(substitute(query.expr, ".*"))
    }
    assert runtimes == dict.fromkeys(MODELS, "tensorflow")


@pytest.mark.network
def test_monitoring_page_labels_are_the_scraped_labels(prometheus: Prometheus) -> None:
    # Labels Prometheus adds, or a histogram's own.
    added = {"__name__", "job", "instance", "le"}
    for metric in documented_metrics():
        name = metric.series + ("_count" if metric.type == "histogram" else "")
        response = httpx.get(
            f"{prometheus.url}/api/v1/series", params={"match[]": name}, timeout=10
        )
        series = response.json()["data"]
        assert series, f"{name} was never scraped"
        scraped = {label for labels in series for label in labels} - added
        assert scraped == metric.labels, f"{name}: docs/monitoring.md says {set(metric.labels)}"
