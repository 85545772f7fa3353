"""/metrics and /metrics/hosts end to end: host gauges per customer and host, and promtool
finds nothing to lint."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Agent, Collector, wait_for


def test_metrics_expose_host_health_and_pass_promtool(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    agent.start()

    def scrape_with_host_gauges() -> str:
        text = collector.metrics()
        return text if "aftercare_host_filesystem_used_ratio{" in text else ""

    text = wait_for(scrape_with_host_gauges, 20, "host gauges in /metrics")
    series = {
        (
            sample.name,
            sample.labels.get("customer"),
            sample.labels.get("host"),
            sample.labels.get("agent_id"),
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for name in (
        "aftercare_host_memory_used_ratio",
        "aftercare_host_cpu_usage_ratio",
        "aftercare_host_network_receive_bytes_total",
        "aftercare_agent_connected",
    ):
        assert (name, "acme", "web-1", agent.agent_id) in series, name
    assert "# TYPE aftercare_host_network_receive_bytes_total counter" in text
    assert 'aftercare_ingest_batches_total{result="stored"}' in text
    assert 'aftercare_store_call_seconds_count{call="store_batches"}' in text
    assert 'aftercare_gc_pause_seconds_count{generation="2"}' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_separate_host_samples_are_served_on_metrics_hosts_only(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    collector = Collector(tmp_path / "collector", extra_args=["--host-samples", "separate"])
    collector.start()
    try:
        agent = make_agent("db-1")
        assert agent.enroll(collector.join_command("globex")).returncode == 0
        agent.start()
        hosts_url = f"http://127.0.0.1:{collector.metrics_port}/metrics/hosts?customer=globex"

        def host_page() -> str:
            with urllib.request.urlopen(hosts_url, timeout=10) as response:
                text = str(response.read().decode())
            return text if "aftercare_host_memory_used_ratio{" in text else ""

        text = wait_for(host_page, 20, "host gauges on /metrics/hosts")
        assert f'agent_id="{agent.agent_id}",customer="globex",host="db-1"' in text
        metrics = collector.metrics()
        assert "aftercare_host_" not in metrics
        assert f'aftercare_agent_connected{{agent_id="{agent.agent_id}"' in metrics
    finally:
        collector.stop()
