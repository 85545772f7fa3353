"""deploy/: the Prometheus alerting rules and the Prometheus and Alertmanager configs.

The real tools judge them: ``promtool check rules``, ``promtool test rules`` (the unit
tests in deploy/prometheus/aftercare-alerts.test.yml), ``promtool check config`` and
``amtool check-config`` / ``amtool config routes test`` (Debian packages prometheus and
prometheus-alertmanager, installed by .ci/run). Cross-checks against the collector: the
metrics the rules use are the ones it exposes, the severities are ones its Alertmanager
webhook maps to fault levels, and Alertmanager posts to its webhook path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from collector.fleet import Fleet
from collector.host_metrics import FleetExposition
from collector.metrics import CollectorMetrics
from collector.server.alertmanager_webhook import PATH as WEBHOOK_PATH
from collector.server.metrics_pages import metrics_text
from collector.store import AgentRecord, StoredSample
from collector.tickets.config import DEFAULT_LEVEL_MAP

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "aftercare-alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "aftercare-alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
LARGE_FLEET_CONFIG = PROMETHEUS_DIR / "prometheus-large-fleet.yml"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
COLLECTOR_METRICS_ADDRESS = "127.0.0.1:9464"  # the collector's --metrics-listen default

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)",
)
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool is not installed (Debian package prometheus-alertmanager; .ci/run installs it)",
)


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


# -- the real tools ----------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules() -> None:
    result = tool("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    result = tool("promtool", "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize("config", [PROMETHEUS_CONFIG, LARGE_FLEET_CONFIG], ids=lambda p: p.name)
def test_promtool_check_config(config: Path) -> None:
    result = tool("promtool", "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout, "the config loads the alerting rules"


@needs_amtool
def test_amtool_check_config() -> None:
    result = tool("amtool", "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        # a customer's alert from any other rule: a ticket
        (
            ["alertname=NodeFilesystemAlmostFull", "customer=acme", "instance=web1:9100"],
            "aftercare",
        ),
        (["alertname=ShopDown", "customer=acme", "severity=critical"], "aftercare"),
        # the collector's own health: no customer, the vendor's on-call
        (["alertname=AftercareSlaBreached", "clock=response", "level=1"], "vendor-oncall"),
        (["alertname=AftercareCollectorDown", "instance=127.0.0.1:9464"], "vendor-oncall"),
        (["alertname=AftercareNotificationsFailing", "channel=email"], "vendor-oncall"),
        # the collector tickets these itself: no second ticket
        (["alertname=AftercareHostFilesystemAlmostFull", "customer=acme"], "vendor-oncall"),
        (["alertname=AftercareAgentSilent", "customer=acme", "host=web-1"], "vendor-oncall"),
        (["alertname=AftercareAgentDisconnected", "customer=acme"], "vendor-oncall"),
    ],
)
def test_alertmanager_routes(labels: list[str], receiver: str) -> None:
    result = tool(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


# -- cross-checks with the collector ------------------------------------------------------


def test_every_rule_has_firing_and_quiet_unit_tests() -> None:
    cases: dict[str, list[bool]] = {}
    for test in load(RULE_TESTS)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for rule in alert_rules():
        outcomes = cases.get(rule["alert"], [])
        assert True in outcomes, f"{rule['alert']}: no test where it fires"
        assert False in outcomes, f"{rule['alert']}: no test where it stays quiet"


def test_severities_are_levels_the_webhook_knows() -> None:
    for rule in alert_rules():
        severity = rule["labels"]["severity"]
        assert severity in DEFAULT_LEVEL_MAP, f"{rule['alert']}: severity {severity!r}"
        assert rule["annotations"]["summary"], rule["alert"]


def _exposed_metric_names() -> set[str]:
    """Every metric name a collector with one reporting host exposes on /metrics."""
    fleet = Fleet()
    agent = AgentRecord("ag-1", "acme", "web-1", 0, "01", 1, last_seen_ms=1_000)
    labels = {"mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4"}
    fleet.load(agent, 1_000, [StoredSample("filesystem_used_ratio", labels, 0.5)])
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    text = metrics_text(registry, FleetExposition(fleet), host_samples=True).decode()
    names = set(re.findall(r"^# (?:HELP|TYPE) (\S+)", text, re.MULTILINE))
    return names | {f"{name}_total" for name in names}  # a counter's family name lacks _total


def test_rules_use_metrics_the_collector_exposes() -> None:
    exposed = _exposed_metric_names()
    for rule in alert_rules():
        for name in re.findall(r"\baftercare_[a-z_]+", rule["expr"]):
            assert name in exposed, f"{rule['alert']}: the collector has no metric {name}"


def test_prometheus_scrapes_the_collector_and_alerts_to_alertmanager() -> None:
    config = load(PROMETHEUS_CONFIG)
    assert config["rule_files"] == [RULES.name]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "aftercare-collector"
    assert 'job="aftercare-collector"' in next(
        r["expr"] for r in alert_rules() if r["alert"] == "AftercareCollectorDown"
    )
    assert job["static_configs"][0]["targets"] == [COLLECTOR_METRICS_ADDRESS]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    [alertmanagers] = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


def test_alertmanager_posts_to_the_collector_webhook_with_a_token_file() -> None:
    config = load(ALERTMANAGER_CONFIG)
    receivers = {r["name"]: r for r in config["receivers"]}
    [webhook] = receivers["aftercare"]["webhook_configs"]
    assert webhook["url"] == f"http://{COLLECTOR_METRICS_ADDRESS}{WEBHOOK_PATH}"
    assert webhook["send_resolved"] is True, "resolved alerts mark tickets recovered"
    authorization = webhook["http_config"]["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert authorization["credentials_file"].startswith("/"), "a token file, not the token"
    assert "credentials" not in authorization
    assert config["route"]["receiver"] == "aftercare"


def test_counters_the_rules_watch_are_exposed_from_zero() -> None:
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    text = generate_latest(registry).decode()
    assert 'aftercare_sla_breaches_total{clock="response",level="1"} 0.0' in text
    assert 'aftercare_sla_breaches_total{clock="resolution",level="3"} 0.0' in text
    assert 'aftercare_notifications_total{channel="webhook",result="failed"} 0.0' in text
    assert 'aftercare_notifications_total{channel="email",result="failed"} 0.0' in text
