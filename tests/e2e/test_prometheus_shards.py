"""A real Prometheus scrapes host samples in shards, as deploy/prometheus-large-fleet.yml says.

The collector's metric pages (``--host-samples separate``) are served by the real HTTP
server over a fleet of 300 hosts; Prometheus runs the shipped large-fleet config with its
targets pointed there. Every host's samples must arrive exactly once across the four
shard targets, and a hostile label value must arrive as written without forging a series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.fleet import Fleet
from collector.host_metrics import FleetExposition
from collector.metrics import CollectorMetrics
from collector.server.http import HttpServer
from collector.server.metrics_pages import metrics_pages
from collector.store import AgentRecord, StoredSample
from tests.support import free_port, wait_for

PROMETHEUS = shutil.which("prometheus")
LARGE_FLEET_CONFIG = (
    Path(__file__).parents[2] / "deploy" / "prometheus" / "prometheus-large-fleet.yml"
)
HOSTS = 300
FORGED = 'x"} 1\naftercare_agent_connected{customer="globex",host="db"} 1'

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (Debian package prometheus; .ci/run installs it)",
)


def fleet_of_hosts() -> Fleet:
    fleet = Fleet()
    for n in range(HOSTS):
        agent = AgentRecord(f"ag-{n:04d}", ("acme", "initech")[n % 2], f"web-{n}", 0, "01", 1)
        mount = FORGED if n == 7 else "/"
        samples = [
            StoredSample("memory_used_ratio", {}, n / HOSTS),
            StoredSample("filesystem_used_ratio", {"mountpoint": mount}, 0.5),
        ]
        fleet.connected(agent, agent.hostname, "0.1.0", 1_000)
        fleet.observed(agent.agent_id, 1_000, samples, 1_000)
    return fleet


@pytest.fixture
def metrics_address() -> Iterator[str]:
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    pages = metrics_pages(
        registry, FleetExposition(fleet_of_hosts()), host_samples_on_metrics=False
    )
    server = HttpServer("127.0.0.1", 0, pages, {})
    yield f"127.0.0.1:{server.port}"
    server.close()


def shipped_config_for(address: str) -> dict[str, Any]:
    """The shipped large-fleet config, scraping ``address`` every second, no alerting."""
    config = yaml.safe_load(LARGE_FLEET_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    del config["rule_files"], config["alerting"]
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job["scrape_timeout"] = "1s"
        for group in job["static_configs"]:
            group["targets"] = [address]
    return config


@pytest.fixture
def prometheus(tmp_path: Path, metrics_address: str) -> Iterator[str]:
    assert PROMETHEUS is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(shipped_config_for(metrics_address)), encoding="utf-8")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        print("--- prometheus log ---\n" + (tmp_path / "prometheus.log").read_text()[-4000:])


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
    except OSError:
        return []  # not up yet
    return list(body["data"]["result"])


def scalar(prometheus: str, expression: str) -> float | None:
    result = query(prometheus, expression)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_gets_every_host_once_across_the_shards(prometheus: str) -> None:
    def all_hosts_scraped_by_every_target() -> bool:
        """Every host's samples in, and the last scrape of every target good (on a
        loaded machine one scrape may time out: the next one is waited for)."""
        targets = query(prometheus, 'up{job=~"aftercare-hosts|aftercare-collector"}')
        return (
            scalar(prometheus, "count(aftercare_host_memory_used_ratio)") == HOSTS
            and len(targets) == 5
            and all(t["value"][1] == "1" for t in targets)
        )

    wait_for(all_hosts_scraped_by_every_target, 60, f"{HOSTS} hosts' samples, targets up")
    targets = query(prometheus, 'up{job="aftercare-hosts"}')
    assert sorted(t["metric"]["instance"].rsplit("/", 1)[1] for t in targets) == list("0123")
    per_host = "max(count by (agent_id) (aftercare_host_memory_used_ratio))"
    assert scalar(prometheus, per_host) == 1.0, "a host came from two shards"
    assert scalar(prometheus, "count(aftercare_agent_connected == 1)") == HOSTS
    assert (
        scalar(prometheus, "count(aftercare_host_memory_used_ratio{job='aftercare-collector'})")
        is None
    )


def test_a_hostile_label_value_reaches_prometheus_as_written(prometheus: str) -> None:
    def hostile_series() -> list[dict[str, Any]]:
        return query(prometheus, 'aftercare_host_filesystem_used_ratio{agent_id="ag-0007"}')

    [series] = wait_for(hostile_series, 60, "host ag-0007's filesystem sample")
    assert series["metric"]["mountpoint"] == FORGED
    assert series["metric"]["customer"] == "initech"
    assert query(prometheus, 'aftercare_agent_connected{host="db"}') == []
