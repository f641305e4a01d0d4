"""The operations files (ops/): every metric the Grafana dashboard and the Prometheus alerts
name exists on the service's /metrics, the alert rules and the Prometheus config have the
structure Prometheus loads (and pass promtool where it is installed), the dashboard has the
fields Grafana imports, and the `observability` compose profile wires them together."""

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "dashboards" / "phoenix-coupons.json"
PROVISIONING = OPS / "grafana" / "provisioning"

# What an operator must see on the dashboard, and be alerted on.
DASHBOARD_SHOWS = {
    "phoenix_worker_ready",
    "phoenix_outbox_published_total",
    "phoenix_outbox_dead_total",
    "phoenix_outbox_oldest_pending_seconds",
    "phoenix_outbox_backlog",
    "phoenix_redemptions_total",
    "phoenix_reservations_total",
    "phoenix_redemption_refusals_total",
    "phoenix_code_lookups_refused_total",
    "phoenix_worker_events_consumed_total",
    "phoenix_worker_events_matched_total",
    "phoenix_worker_coupons_issued_total",
    "phoenix_worker_coupons_announced_total",
    "phoenix_worker_consumer_lag",
    "phoenix_worker_batch_seconds_bucket",
    "phoenix_worker_dead_letters_total",
    "phoenix_http_requests_total",
    "phoenix_http_request_seconds_bucket",
}
ALERTS_ON = {
    "PhoenixConsumerLagGrowing": "phoenix_worker_consumer_lag",
    "PhoenixDeadLetters": "phoenix_worker_dead_letters_total",
    "PhoenixOutboxBacklogOld": "phoenix_outbox_oldest_pending_seconds",
    "PhoenixApi5xxRate": "phoenix_http_requests_total",
    "PhoenixWorkerNotReady": "phoenix_worker_ready",
}
METRIC_NAME = re.compile(r"\bphoenix_[A-Za-z0-9_]+")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Top-level panels and those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions() -> dict[str, str]:
    """Every PromQL expression of ops/, by where it is."""
    found = {f"alert {r['alert']}": r["expr"] for r in alert_rules()}
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def named_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used."""
    used: dict[str, set[str]] = {}
    for where, expr in expressions().items():
        for name in METRIC_NAME.findall(expr):
            used.setdefault(name, set()).add(where)
    return used


def metric_types(exposition: str) -> dict[str, str]:
    """Family name -> type, from the `# TYPE` lines (present for labelled families with no
    sample yet too)."""
    types = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
    return types


def exposes(types: dict[str, str], name: str) -> bool:
    """A series name PromQL can select: a counter or gauge family, a histogram's `_bucket`,
    `_sum` or `_count` series, a summary's `_sum` / `_count`, or a counter's `_total` (also
    where the family is typed without the suffix, as OpenMetrics does)."""
    if types.get(name) in ("counter", "gauge", "untyped"):
        return True
    for suffix in HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and types.get(base) in ("histogram", "summary"):
            return suffix != "_bucket" or types[base] == "histogram"
    return name.endswith("_total") and types.get(name.removesuffix("_total")) == "counter"


@pytest.fixture
async def exposition(tmp_path: Path) -> AsyncIterator[str]:
    """/metrics of the API app in-process, with the worker as under `phoenix-coupons run`
    (nothing connects: the container is not started)."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        mongodb_uri="mongodb://127.0.0.1:9/?directConnection=true",
        secret_key=TEST_SECRET,
        data_dir=tmp_path,
    )
    container = Container(settings)
    app = create_app(container, manage_lifecycle=False, worker=container.worker())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            response = await http.get("/metrics")
            assert response.status_code == 200
            yield response.text
    finally:
        await container.mongo.close()


def test_the_exposes_rule_follows_the_exposition_format() -> None:
    types = {"a_total": "counter", "b": "gauge", "c_seconds": "histogram", "d": "counter"}
    assert exposes(types, "a_total") and exposes(types, "b") and exposes(types, "d_total")
    for series in ("c_seconds_bucket", "c_seconds_sum", "c_seconds_count"):
        assert exposes(types, series)
    for absent in ("a", "c_seconds", "b_total", "b_bucket", "e_total", "a_total_count"):
        assert not exposes(types, absent), absent


async def test_every_metric_the_dashboard_and_alerts_name_exists(exposition: str) -> None:
    types = metric_types(exposition)
    used = named_metrics()
    missing = {name: sorted(where) for name, where in used.items() if not exposes(types, name)}
    assert not missing, f"named in ops/ but not on /metrics: {json.dumps(missing, indent=1)}"


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    shown = {
        name
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
        for name in METRIC_NAME.findall(target["expr"])
    }
    assert shown >= DASHBOARD_SHOWS, sorted(DASHBOARD_SHOWS - shown)


def test_the_alerts_cover_lag_dead_letters_backlog_5xx_and_readiness() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for alert, metric in ALERTS_ON.items():
        assert alert in rules, alert
        assert metric in rules[alert]["expr"], alert


def test_alert_rules_have_the_structure_prometheus_loads() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names)), "group names must be unique"
    seen: set[str] = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group["name"]
        assert group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
            assert rule["alert"] not in seen, f"{rule['alert']} defined twice"
            seen.add(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_prometheus_scrapes_the_api_and_every_worker_and_loads_the_alerts() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert [(PROMETHEUS.parent / path).resolve() for path in config["rule_files"]] == [
        ALERTS.resolve()
    ]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["phoenix-api"]["metrics_path"] == "/metrics"
    assert jobs["phoenix-api"]["static_configs"] == [{"targets": ["api:8080"]}]
    assert jobs["phoenix-worker"]["metrics_path"] == "/metrics"
    assert jobs["phoenix-worker"]["dns_sd_configs"][0] | {"refresh_interval": None} == {
        "names": ["worker"],
        "type": "A",
        "port": 8081,
        "refresh_interval": None,
    }
    # The ports the compose services serve them on.
    services = compose()["services"]
    assert "8080:8080" in services["api"]["ports"]
    assert services["worker"]["environment"]["PHOENIX_WORKER_PORT"] == "8081"
    alert_jobs = {m for r in alert_rules() for m in re.findall(r'job="([^"]+)"', r["expr"])}
    assert alert_jobs <= set(jobs)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_config_and_the_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_dashboard_has_what_grafana_imports() -> None:
    board = dashboard()
    assert board["title"] and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in all_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(board["panels"]):
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repository path, of the service's bind mounts of ops/."""
    found = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source
    return found


def test_the_observability_profile_provisions_prometheus_and_grafana() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["observability"], name
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), "pin the version"
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        for source in mounts(service).values():
            assert (ROOT / source).exists(), source
    assert mounts(services["prometheus"])["/etc/prometheus"] == "./ops/prometheus"
    grafana = mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "./ops/grafana/provisioning"
    # The provider reads the folder the dashboards are mounted at.
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "phoenix-coupons.yml").read_text())[
        "providers"
    ]
    assert grafana[provider["options"]["path"]] == "./ops/grafana/dashboards"
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    # Everything else of the stack keeps running without the profile.
    others = {name for name, s in services.items() if "profiles" not in s}
    assert {"kafka", "mongo", "api", "worker"} <= others
