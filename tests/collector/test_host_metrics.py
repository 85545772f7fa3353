"""The fleet's exposition: what Prometheus reads from /metrics and /metrics/hosts.

Real promtool judges the text where it is installed; the prometheus_client parser
reads it back everywhere, so a forged or lost line shows up as a wrong series set.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.fleet import Fleet
from collector.host_metrics import (
    FleetExposition,
    HostSelection,
    SelectionError,
    parse_selection,
    shard_of,
)
from collector.metrics import CollectorMetrics
from collector.server.http import HttpServer
from collector.server.metrics_pages import metrics_pages
from collector.store import AgentRecord, StoredSample

HOSTS = 300
Series = tuple[str, tuple[tuple[str, str], ...]]


def agent(n: int, customer: str = "") -> AgentRecord:
    customer = customer or ("acme", "globex", "initech")[n % 3]
    return AgentRecord(f"ag-{n:04d}", customer, f"web-{n}", 0, "01", 1, last_seen_ms=1_000 + n)


def host_samples(n: int) -> list[StoredSample]:
    return [
        StoredSample("memory_used_ratio", {}, n / HOSTS),
        StoredSample("cpu_usage_ratio", {"cpu": "0"}, 0.25),
        StoredSample("cpu_usage_ratio", {"cpu": "1"}, 0.5),
        StoredSample("filesystem_used_ratio", {"mountpoint": "/", "fstype": "ext4"}, 0.75),
        StoredSample("network_receive_bytes_total", {"device": "eth0"}, float(n * 1000)),
    ]


def fleet_of(hosts: int = HOSTS) -> Fleet:
    fleet = Fleet()
    for n in range(hosts):
        fleet.load(agent(n), 1_000, host_samples(n))
    return fleet


def series_of(text: str) -> dict[Series, float]:
    """Every sample in ``text`` by name and labels (prometheus_client's parser)."""
    found: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"duplicate series {key}"
            found[key] = sample.value
    return found


def host_series(text: str) -> set[str]:
    return {labels["agent_id"] for (_, pairs) in series_of(text) for labels in [dict(pairs)]}


def assert_families_contiguous(text: str) -> None:
    """One HELP and TYPE per family, before all of its lines, which are together."""
    typed = re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE)
    assert len(typed) == len(set(typed)), "a family announced twice"
    current = ""
    seen: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            current = line.split()[2]
            seen.add(current)
        elif not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            assert name is not None and name.group(0) == current, f"stray line {line!r}"


def test_every_host_sample_is_exposed_with_its_host_labels() -> None:
    text = FleetExposition(fleet_of()).host_samples(HostSelection())
    series = series_of(text)
    expected: dict[Series, float] = {}
    for n in range(HOSTS):
        host = {"agent_id": f"ag-{n:04d}", "customer": ("acme", "globex", "initech")[n % 3]}
        host["host"] = f"web-{n}"
        for sample in host_samples(n):
            name = "aftercare_host_" + sample.name
            expected[(name, tuple(sorted({**host, **sample.labels}.items())))] = sample.value
    assert series == expected
    assert "# TYPE aftercare_host_network_receive_bytes_total counter" in text
    assert "# TYPE aftercare_host_memory_used_ratio gauge" in text
    assert_families_contiguous(text)


def test_connectivity_covers_every_host() -> None:
    fleet = fleet_of(3)
    fleet.connected(agent(1), "web-1", "1.2.3", 5_000)
    text = FleetExposition(fleet).connectivity()
    series = series_of(text)
    one = (("agent_id", "ag-0001"), ("customer", "globex"), ("host", "web-1"))
    assert series[("aftercare_agent_connected", one)] == 1.0
    zero = (("agent_id", "ag-0000"), ("customer", "acme"), ("host", "web-0"))
    assert series[("aftercare_agent_connected", zero)] == 0.0
    assert series[("aftercare_agent_last_seen_timestamp_seconds", one)] == 5.0
    assert series[("aftercare_agent_info", (*one, ("version", "1.2.3")))] == 1.0
    assert_families_contiguous(text)


def test_values_prometheus_spells_its_own_way() -> None:
    fleet = Fleet()
    samples = [
        StoredSample("a", {"k": "nan"}, math.nan),
        StoredSample("a", {"k": "inf"}, math.inf),
        StoredSample("a", {"k": "-inf"}, -math.inf),
        StoredSample("a", {"k": "big"}, 1e300),
        StoredSample("a", {"k": "int"}, 7),  # type: ignore[arg-type]  # from an old store row
    ]
    fleet.load(agent(0), 1, samples)
    text = FleetExposition(fleet).host_samples(HostSelection())
    assert 'k="nan"} NaN\n' in text and 'k="inf"} +Inf\n' in text and "} -Inf\n" in text
    values = {dict(labels)["k"]: v for (_, labels), v in series_of(text).items()}
    assert values["big"] == 1e300 and values["int"] == 7.0 and values["-inf"] == -math.inf


def test_a_hostile_label_value_cannot_forge_a_line() -> None:
    forged = 'x"} 1\naftercare_agent_connected{customer="globex",host="db"} 1\n# \\'
    fleet = Fleet()
    fleet.load(agent(0, "acme"), 1, [StoredSample("disk", {"mount": forged}, 2.0)])
    text = FleetExposition(fleet).host_samples(HostSelection())
    [(name, labels)] = series_of(text)
    assert name == "aftercare_host_disk"
    assert dict(labels)["mount"] == forged
    assert dict(labels)["customer"] == "acme"
    assert len(text.splitlines()) == 3  # HELP, TYPE, the one sample


def test_a_hostile_name_or_label_key_cannot_pose_as_another_host_or_metric() -> None:
    fleet = Fleet()
    hostile = [
        StoredSample('up{customer="globex"} 1\nfake', {}, 1.0),
        StoredSample("load", {"customer": "globex", "host": "db", "agent_id": "ag-9"}, 2.0),
        StoredSample("load2", {"__name__": "up", "job": "x", "bad key": "v", "9lives": "v"}, 3.0),
    ]
    fleet.load(agent(0, "acme"), 1, hostile)
    text = FleetExposition(fleet).host_samples(HostSelection())
    series = series_of(text)
    assert all(name.startswith("aftercare_host_") for name, _ in series)
    for _, labels in series:
        assert dict(labels)["customer"] == "acme" and dict(labels)["agent_id"] == "ag-0000"
    by_name = {name: dict(labels) for name, labels in series}
    assert by_name["aftercare_host_load"].keys() == {"agent_id", "customer", "host"}
    assert by_name["aftercare_host_load2"] == {
        "agent_id": "ag-0000",
        "customer": "acme",
        "host": "web-0",
        "label___name__": "up",
        "job": "x",
        "bad_key": "v",
        "label_9lives": "v",
    }
    assert_families_contiguous(text)


def test_shards_split_the_hosts_exactly_and_stably() -> None:
    exposition = FleetExposition(fleet_of())
    parts = [exposition.host_samples(HostSelection(k, 4)) for k in range(4)]
    hosts = [host_series(part) for part in parts]
    assert sum(len(h) for h in hosts) == HOSTS
    assert set().union(*hosts) == {f"ag-{n:04d}" for n in range(HOSTS)}
    assert all(40 < len(h) < 110 for h in hosts), [len(h) for h in hosts]
    assert all(shard_of(a, 4) == k for k, h in enumerate(hosts) for a in h)
    assert shard_of("ag-0001", 4) == zlib.crc32(b"ag-0001") % 4 == 0  # documented: fixed
    whole = series_of(exposition.host_samples(HostSelection()))
    assert whole == {k: v for part in parts for k, v in series_of(part).items()}


def test_customer_and_name_filters() -> None:
    exposition = FleetExposition(fleet_of())
    text = exposition.host_samples(
        parse_selection("customer=acme&name=cpu_&name=aftercare_host_mem")
    )
    series = series_of(text)
    assert {name for name, _ in series} == {
        "aftercare_host_cpu_usage_ratio",
        "aftercare_host_memory_used_ratio",
    }
    assert {dict(labels)["customer"] for _, labels in series} == {"acme"}
    assert len(series) == 100 * 3
    assert exposition.host_samples(parse_selection("customer=nobody")) == ""


def test_only_hosts_held_here_are_exported_by_a_replica() -> None:
    fleet = fleet_of(4)
    fleet.connected(agent(2), "web-2", "1", 9)
    fleet.connected_elsewhere(frozenset({"ag-0001"}))
    exposition = FleetExposition(fleet, held_here_only=True)
    assert host_series(exposition.host_samples(HostSelection())) == {"ag-0002"}
    assert len(series_of(exposition.connectivity())) == 4 * 3


def test_the_series_text_is_made_once_per_series() -> None:
    exposition = FleetExposition(fleet_of())
    first = exposition.host_samples(HostSelection())
    remembered = dict(exposition._series)
    assert len(remembered) == 5  # the five series every host sends
    assert exposition.host_samples(HostSelection()) == first
    assert all(exposition._series[k] is v for k, v in remembered.items())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("shard=1", "together"),
        ("shards=4", "together"),
        ("shard=4&shards=4", "0 <= shard < shards"),
        ("shard=0&shards=0", "0 <= shard < shards"),
        ("shard=0&shards=2000", "<= 1024"),
        ("shard=-1&shards=4", "whole numbers"),
        ("shard=a&shards=4", "whole numbers"),
        ("shard=0&shard=1&shards=4", "once each"),
        ("host=web-1", "unknown parameter 'host'"),
        ("name=", "metric name prefix"),
        ("name=aftercare_host_", "metric name prefix"),
        ("shard", "malformed"),
    ],
)
def test_bad_selections_say_what_is_allowed(query: str, message: str) -> None:
    with pytest.raises(SelectionError, match=re.escape(message)):
        parse_selection(query)


def test_an_empty_query_selects_everything() -> None:
    assert parse_selection("") == HostSelection()


@pytest.fixture
def served() -> Iterator[str]:
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    pages = metrics_pages(registry, FleetExposition(fleet_of()), host_samples_on_metrics=False)
    server = HttpServer("127.0.0.1", 0, pages, {})
    yield f"http://127.0.0.1:{server.port}"
    server.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_separate_host_samples_leave_metrics_and_are_served_on_hosts(served: str) -> None:
    status, metrics = get(served + "/metrics")
    assert status == 200
    assert "aftercare_host_" not in metrics
    assert "aftercare_agent_connected{" in metrics and "aftercare_ingest_batches_total" in metrics
    status, hosts = get(served + "/metrics/hosts?shard=0&shards=2")
    assert status == 200
    assert 0 < len(host_series(hosts)) < HOSTS
    status, body = get(served + "/metrics/hosts?shard=2&shards=2")
    assert status == 400 and "0 <= shard < shards" in body
    status, body = get(served + "/nowhere")
    assert status == 404 and "/metrics/hosts" in body


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)",
)


@needs_promtool
@pytest.mark.parametrize("page", ["/metrics", "/metrics/hosts", "/metrics/hosts?shard=1&shards=3"])
def test_promtool_accepts_the_pages(served: str, page: str) -> None:
    status, text = get(served + page)
    assert status == 200 and text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
