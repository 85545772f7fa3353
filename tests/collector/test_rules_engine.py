"""RuleEngine semantics under a fake clock: for, pending resets, rate, predict,
heartbeats, matchers, per/abs, de-duplication keys, templates and hot reload."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from collector.rules import (
    HostRef,
    RuleEngine,
    RuleFileError,
    RuleSet,
    dedup_key,
    load_rules,
)
from collector.store.base import StoredSample

T0 = 1_700_000_000_000
MIN = 60_000
HOST = HostRef("agent-1", "acme", "web1")
OTHER = HostRef("agent-2", "acme", "db1")


def rules(tmp_path: Path, body: str, name: str = "rules.yaml") -> RuleSet:
    """A RuleSet from the YAML rules in ``body`` (one group)."""
    path = tmp_path / name
    text = "groups:\n  - name: test\n    rules:\n" + textwrap.indent(
        textwrap.dedent(body), "      "
    )
    path.write_text(text)
    return load_rules(path)


def sample(name: str, value: float, **labels: str) -> StoredSample:
    return StoredSample(name, labels, float(value))


def firing(engine: RuleEngine, now_ms: int, rule: str | None = None) -> list[str]:
    """``rule@series-labels`` of the alerts firing at ``now_ms``."""
    return [
        f"{a.rule}@{','.join(f'{k}={v}' for k, v in sorted(a.labels.items()))}"
        for a in engine.evaluate(now_ms)
        if rule is None or a.rule == rule
    ]


MEMORY_RULE = """\
- name: memory_high
  condition: {metric: memory_used_ratio, op: ">", threshold: 0.9}
  for: 5m
  level: 2
  annotations: {summary: "{{ host }} memory {{ value | percent }}"}
"""


def feed_memory(engine: RuleEngine, minute: float, value: float, host: HostRef = HOST) -> int:
    at = T0 + int(minute * MIN)
    engine.observe(host, at, [sample("memory_used_ratio", value)])
    return at


# -- for / pending ----------------------------------------------------------------------


def test_for_is_honoured(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE))
    for quarter in range(20):  # 0 .. 4m45s: pending
        at = feed_memory(engine, quarter / 4, 0.95)
        assert engine.evaluate(at) == []
    at = feed_memory(engine, 5, 0.95)
    [alert] = engine.evaluate(at)
    assert alert.rule == "memory_high"
    assert alert.active_since_ms == T0
    assert alert.value == 0.95
    assert alert.level == 2
    assert alert.summary == "web1 memory 95.0%"


def test_for_is_measured_in_sample_time_not_evaluation_time(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE))
    feed_memory(engine, 0, 0.95)
    assert engine.evaluate(T0 + 60 * MIN) == []  # no newer batch: it only held at T0


def test_pending_resets_when_the_condition_stops(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE))
    for minute in range(5):
        feed_memory(engine, minute, 0.95)
    feed_memory(engine, 4.5, 0.5)  # one healthy batch
    for minute in (5, 6, 7, 8, 9):
        at = feed_memory(engine, minute, 0.95)
        assert engine.evaluate(at) == []
    at = feed_memory(engine, 10, 0.95)
    [alert] = engine.evaluate(at)
    assert alert.active_since_ms == T0 + 5 * MIN


def test_a_firing_alert_stops_at_the_first_healthy_batch(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE))
    for minute in range(7):
        at = feed_memory(engine, minute, 0.95)
    assert len(engine.evaluate(at)) == 1
    at = feed_memory(engine, 7, 0.2)
    assert engine.evaluate(at) == []


def test_a_series_missing_from_the_latest_batch_is_not_evaluated(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE))
    for minute in range(7):
        at = feed_memory(engine, minute, 0.95)
    assert len(engine.evaluate(at)) == 1
    engine.observe(HOST, T0 + 7 * MIN, [sample("cpu_cores", 4)])  # memory check failed
    assert engine.evaluate(T0 + 7 * MIN) == []
    at = feed_memory(engine, 8, 0.95)  # pending again, from scratch
    assert engine.evaluate(at) == []
    at = feed_memory(engine, 13, 0.95)
    assert engine.evaluate(at)[0].active_since_ms == T0 + 8 * MIN


def test_for_zero_fires_on_the_first_batch(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE.replace("for: 5m", "for: 0s")))
    at = feed_memory(engine, 0, 0.95)
    assert len(engine.evaluate(at)) == 1


def test_an_older_batch_than_the_latest_is_ignored(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE.replace("for: 5m", "for: 0s")))
    feed_memory(engine, 10, 0.95)
    feed_memory(engine, 9, 0.1)  # late arrival of an older batch
    assert len(engine.evaluate(T0 + 10 * MIN)) == 1


# -- matchers, per, abs -----------------------------------------------------------------


FS_RULE = """\
- name: fs
  condition:
    metric: filesystem_used_ratio
    match: {MATCH}
    op: ">"
    threshold: 0.9
  level: 3
  annotations: {summary: "{{ labels.mountpoint }}"}
"""

FILESYSTEMS = [
    sample("filesystem_used_ratio", 0.95, mountpoint="/", device="sda1", fstype="ext4"),
    sample("filesystem_used_ratio", 0.95, mountpoint="/run", device="tmpfs", fstype="tmpfs"),
    sample("filesystem_used_ratio", 0.95, mountpoint="/srv/a", device="sdb", fstype="xfs"),
    sample("filesystem_used_ratio", 0.5, mountpoint="/srv/b", device="sdc", fstype="xfs"),
]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("{}", ["/", "/run", "/srv/a"]),
        ('{fstype: "ext4"}', ["/"]),
        ('{fstype: "!tmpfs"}', ["/", "/srv/a"]),
        ('{mountpoint: "~/srv/.*"}', ["/srv/a"]),
        ('{mountpoint: "~/srv"}', []),  # regexes match the whole value
        ('{mountpoint: "!~/srv/.*|/run"}', ["/"]),
        ('{fstype: "~ext4|xfs", device: "!sdb"}', ["/"]),
        ('{device: "=sda1"}', ["/"]),
    ],
)
def test_matchers(tmp_path: Path, match: str, expected: list[str]) -> None:
    engine = RuleEngine(rules(tmp_path, FS_RULE.replace("{MATCH}", match)))
    engine.observe(HOST, T0, FILESYSTEMS)
    assert sorted(a.summary for a in engine.evaluate(T0)) == expected


def test_a_missing_label_matches_as_empty(tmp_path: Path) -> None:
    body = """\
    - name: odd
      condition: {metric: some_new_metric, match: {zone: "!~.+"}, op: ">", threshold: 1}
      level: 4
      annotations: {summary: "x"}
    """
    engine = RuleEngine(rules(tmp_path, body))
    engine.observe(HOST, T0, [sample("some_new_metric", 2), sample("some_new_metric", 2, zone="a")])
    assert [dict(a.labels) for a in engine.evaluate(T0)] == [{}]


LOAD_RULE = """\
- name: load
  condition:
    metric: load_average
    match: {period: 5m}
    per: cpu_cores
    op: ">"
    threshold: 2
  level: 3
  annotations: {summary: "{{ value }} per CPU"}
"""


def test_per_divides_by_the_hosts_latest_value(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, LOAD_RULE))
    load = sample("load_average", 12, period="5m")
    engine.observe(HOST, T0, [load, sample("cpu_cores", 4)])
    assert [a.summary for a in engine.evaluate(T0)] == ["3 per CPU"]
    engine.observe(HOST, T0 + MIN, [load, sample("cpu_cores", 8)])
    assert engine.evaluate(T0 + MIN) == []


@pytest.mark.parametrize("cores", [None, 0])
def test_per_without_a_divisor_is_not_evaluated(tmp_path: Path, cores: float | None) -> None:
    engine = RuleEngine(rules(tmp_path, LOAD_RULE))
    batch = [sample("load_average", 12, period="5m")]
    if cores is not None:
        batch.append(sample("cpu_cores", cores))
    engine.observe(HOST, T0, batch)
    assert engine.evaluate(T0) == []


def test_abs_compares_the_magnitude(tmp_path: Path) -> None:
    body = """\
    - name: skew
      condition: {metric: clock_offset_seconds, abs: true, op: ">", threshold: 1}
      level: 4
      annotations: {summary: "{{ value }}"}
    """
    engine = RuleEngine(rules(tmp_path, body))
    for minute, offset in enumerate((-1.5, 1.5, 0.5, -0.5)):
        engine.observe(HOST, T0 + minute * MIN, [sample("clock_offset_seconds", offset)])
        expected = ["1.5"] if abs(offset) > 1 else []
        assert [a.summary for a in engine.evaluate(T0 + minute * MIN)] == expected


# -- rate -------------------------------------------------------------------------------


RATE_RULE = """\
- name: errors
  condition: {metric: network_receive_errors_total, rate: 10m, op: ">", threshold: 1}
  level: 3
  annotations: {summary: "{{ value | round(3) }}/s"}
"""


def feed_counter(engine: RuleEngine, values: Mapping[float, float]) -> None:
    for minute, value in values.items():
        at = T0 + int(minute * MIN)
        engine.observe(HOST, at, [sample("network_receive_errors_total", value, interface="eth0")])


def test_rate_needs_half_a_window_of_history(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, RATE_RULE))
    feed_counter(engine, {m: 600.0 * m for m in range(5)})  # 10/s, but only 4 minutes
    assert engine.evaluate(T0 + 4 * MIN) == []
    feed_counter(engine, {5: 3000.0})
    [alert] = engine.evaluate(T0 + 5 * MIN)
    assert alert.value == pytest.approx(10.0)


def test_rate_handles_a_counter_reset(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, RATE_RULE))
    # 3 errors/s; a reboot at minute 5 restarts the counter from 0
    feed_counter(engine, {0: 1000, 2: 1360, 4: 1720, 6: 180, 8: 540, 10: 900})
    [alert] = engine.evaluate(T0 + 10 * MIN)
    assert alert.value == pytest.approx((360 + 360 + 180 + 360 + 360) / 600)
    assert alert.summary == "2.700/s"


def test_rate_uses_only_the_window(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, RATE_RULE))
    # a burst long ago, quiet for the last 10 minutes
    feed_counter(engine, {0: 0, 1: 100_000, **{m: 100_000 for m in range(2, 16)}})
    assert engine.evaluate(T0 + 15 * MIN) == []


# -- predict ----------------------------------------------------------------------------


PREDICT_RULE = """\
- name: disk_full_soon
  condition:
    metric: filesystem_used_ratio
    op: ">="
    threshold: 1.0
    predict: {window: 6h, within: 24h}
  for: 30m
  level: 3
  annotations:
    summary: "{{ labels.mountpoint }} full in {{ eta | duration }} ({{ value | percent }})"
"""


def feed_fs(engine: RuleEngine, hours: float, ratio: Callable[[float], float]) -> None:
    """A batch every 5 minutes for ``hours``: /var used at ``ratio(hours since T0)``."""
    for minute in range(0, int(hours * 60) + 1, 5):
        value = ratio(minute / 60)
        fs = sample("filesystem_used_ratio", value, mountpoint="/var", device="sdb", fstype="xfs")
        engine.observe(HOST, T0 + minute * MIN, [fs])


def test_a_filesystem_filling_linearly_is_predicted_full(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, PREDICT_RULE))
    feed_fs(engine, 4, lambda h: 0.5 + 0.025 * h)  # 2.5 points an hour: 60% at 4h
    [alert] = engine.evaluate(T0 + 4 * 60 * MIN)
    assert alert.value == pytest.approx(0.6)
    assert alert.summary == "/var full in 16h (60.0%)"
    # pending from the first batch with 3h of history (half the window), + for 30m
    assert alert.active_since_ms == T0 + 3 * 60 * MIN


def test_a_flat_filesystem_is_not_predicted_full(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, PREDICT_RULE))
    feed_fs(engine, 8, lambda h: 0.95 - 0.001 * math.sin(h))
    assert engine.evaluate(T0 + 8 * 60 * MIN) == []


def test_a_slow_fill_is_not_predicted_full(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, PREDICT_RULE))
    feed_fs(engine, 8, lambda h: 0.5 + 0.01 * h)  # 58% at 8h, 82% 24h later
    assert engine.evaluate(T0 + 8 * 60 * MIN) == []


def test_predict_needs_half_a_window(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, PREDICT_RULE.replace("for: 30m", "for: 0s")))
    feed_fs(engine, 2.9, lambda h: 0.5 + 0.1 * h)
    assert engine.evaluate(T0 + 3 * 60 * MIN) == []
    feed_fs(engine, 3, lambda h: 0.5 + 0.1 * h)
    assert len(engine.evaluate(T0 + 3 * 60 * MIN)) == 1


def test_predict_downwards(tmp_path: Path) -> None:
    body = """\
    - name: free_running_out
      condition:
        metric: filesystem_free_bytes
        op: "<"
        threshold: 0
        predict: {window: 1h, within: 4h}
      level: 3
      annotations: {summary: "{{ eta | duration }}"}
    """
    engine = RuleEngine(rules(tmp_path, body))
    for minute in range(61):
        free = sample(
            "filesystem_free_bytes", 10e9 - minute * 40e6, mountpoint="/", device="a", fstype="ext4"
        )
        engine.observe(HOST, T0 + minute * MIN, [free])
    [alert] = engine.evaluate(T0 + 60 * MIN)
    assert alert.summary == "3h 10m"  # 7.6e9 left at 40 MB a minute
    assert alert.value == pytest.approx(10e9 - 60 * 40e6)


# -- heartbeat --------------------------------------------------------------------------


HEARTBEAT_RULE = """\
- name: host_unreachable
  heartbeat: {grace: 2m}
  level: 1
  labels: {category: connectivity}
  annotations:
    summary: "{{ host }} silent for {{ value | duration }} (grace {{ threshold | duration }})"
"""


def test_heartbeat_grace(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, HEARTBEAT_RULE))
    engine.seen(HOST, T0)
    assert engine.evaluate(T0 + 2 * MIN) == []  # exactly the grace: not yet
    [alert] = engine.evaluate(T0 + 2 * MIN + 1)
    assert alert.active_since_ms == T0 + 2 * MIN
    assert alert.level == 1
    assert dict(alert.labels) == {"category": "connectivity"}
    assert alert.dedup_key == dedup_key(HOST.agent_id, "host_unreachable", {})
    [alert] = engine.evaluate(T0 + 5 * MIN)
    assert alert.value == 300
    assert alert.summary == "web1 silent for 5m (grace 2m)"


def test_heartbeat_is_renewed_by_batches_and_seen(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, HEARTBEAT_RULE))
    engine.observe(HOST, T0, [])
    engine.seen(HOST, T0 + 2 * MIN)
    engine.seen(HOST, T0)  # never moves back
    assert engine.evaluate(T0 + 4 * MIN) == []
    engine.observe(HOST, T0 - 60 * MIN, [], received_ms=T0 + 4 * MIN)  # skewed agent clock
    assert engine.evaluate(T0 + 6 * MIN) == []
    assert len(engine.evaluate(T0 + 6 * MIN + 1)) == 1


def test_unknown_and_forgotten_hosts_do_not_alert(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, HEARTBEAT_RULE))
    assert engine.evaluate(T0) == []
    engine.seen(HOST, T0)
    engine.forget(HOST.agent_id)
    assert engine.evaluate(T0 + 60 * MIN) == []


# -- alerts: order, dedup keys, templates -----------------------------------------------


def test_alerts_are_ordered_and_dedup_keys_are_stable(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, FS_RULE.replace("{MATCH}", "{}")))
    reordered = [
        StoredSample(s.name, dict(reversed(list(s.labels.items()))), s.value)
        for s in reversed(FILESYSTEMS)
    ]
    engine.observe(OTHER, T0, FILESYSTEMS)
    engine.observe(HOST, T0, reordered)
    first = engine.evaluate(T0)
    assert [(a.host.hostname, a.summary) for a in first] == [
        ("db1", "/"),
        ("db1", "/srv/a"),
        ("db1", "/run"),  # by device, fstype, mountpoint
        ("web1", "/"),
        ("web1", "/srv/a"),
        ("web1", "/run"),
    ]
    engine.observe(OTHER, T0 + MIN, reordered)
    engine.observe(HOST, T0 + MIN, FILESYSTEMS)
    second = engine.evaluate(T0 + MIN)
    assert [a.dedup_key for a in first] == [a.dedup_key for a in second]
    assert len({a.dedup_key for a in first}) == 6
    assert first[0].dedup_key == dedup_key(
        "agent-2", "fs", {"fstype": "ext4", "mountpoint": "/", "device": "sda1"}
    )


def test_dedup_key_ignores_the_rules_own_labels(tmp_path: Path) -> None:
    plain = RuleEngine(rules(tmp_path, MEMORY_RULE))
    labelled = RuleEngine(
        rules(tmp_path, MEMORY_RULE.replace("level: 2", "level: 2\n  labels: {team: a, b: c}"))
    )
    for engine in (plain, labelled):
        for minute in range(6):
            feed_memory(engine, minute, 0.99)
    [a] = plain.evaluate(T0 + 5 * MIN)
    [b] = labelled.evaluate(T0 + 5 * MIN)
    assert a.dedup_key == b.dedup_key
    assert dict(b.labels) == {"team": "a", "b": "c"}
    assert a.dedup_key != dedup_key("agent-2", "memory_high", {})
    assert a.dedup_key != dedup_key("agent-1", "other_rule", {})


def test_templates_render_every_placeholder(tmp_path: Path) -> None:
    body = """\
    - name: full
      condition:
        metric: filesystem_free_bytes
        match: {fstype: xfs}
        op: "<"
        threshold: 2147483648
      level: 3
      labels: {team: storage}
      annotations:
        summary: "{{host}}/{{ customer }}/{{ agent_id }}: {{ rule }} L{{ level }}"
        description: >-
          {{ labels.mountpoint }} ({{ labels.team }}) has {{ value | bytes }} free,
          under {{ threshold|bytes }}; raw {{ value }}, {{ value | round }},
          {{ value | round(2) }}; {{ labels.missing_is_empty }}.
      playbook: disk-usage
    """
    (tmp_path / "x.yaml").write_text("")
    with pytest.raises(RuleFileError):  # labels.missing_is_empty: not a label of the metric
        rules(tmp_path, body)
    engine = RuleEngine(rules(tmp_path, body.replace("; {{ labels.missing_is_empty }}", "")))
    fs = sample(
        "filesystem_free_bytes", 1.5 * 2**30 + 0.25, mountpoint="/srv", device="d", fstype="xfs"
    )
    engine.observe(HOST, T0, [fs])
    [alert] = engine.evaluate(T0)
    assert alert.summary == "web1/acme/agent-1: full L3"
    assert alert.description == (
        "/srv (storage) has 1.5 GiB free, under 2 GiB; raw 1.611e+09, 1610612736, 1610612736.25."
    )
    assert alert.playbook == "disk-usage"
    assert dict(alert.labels) == {
        "mountpoint": "/srv",
        "device": "d",
        "fstype": "xfs",
        "team": "storage",
    }


# -- hot reload -------------------------------------------------------------------------


def test_reload_keeps_unchanged_rules_and_resets_changed_ones(tmp_path: Path) -> None:
    cpu_rule = """\
    - name: cpu_high
      condition: {metric: cpu_usage_ratio, match: {cpu: total}, op: ">", threshold: 0.9}
      for: 5m
      level: 3
      annotations: {summary: "cpu"}
    """
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE + textwrap.dedent(cpu_rule)))
    batch = [sample("memory_used_ratio", 0.95), sample("cpu_usage_ratio", 0.95, cpu="total")]
    for minute in range(4):
        engine.observe(HOST, T0 + minute * MIN, batch)
    # reorder the file (memory_high moves) and change cpu_high's threshold
    changed = textwrap.dedent(cpu_rule).replace("0.9}", "0.92}") + MEMORY_RULE
    engine.replace_rules(rules(tmp_path, changed))
    for minute in range(5, 10):
        engine.observe(HOST, T0 + minute * MIN, batch)
        assert firing(engine, T0 + minute * MIN) == ["memory_high@"]
    engine.observe(HOST, T0 + 10 * MIN, batch)
    assert firing(engine, T0 + 10 * MIN) == ["cpu_high@cpu=total", "memory_high@"]
    [cpu, memory] = engine.evaluate(T0 + 10 * MIN)
    assert cpu.active_since_ms == T0 + 5 * MIN  # restarted with the first batch after reload
    assert memory.active_since_ms == T0


def test_reload_adds_and_removes_rules(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE.replace("for: 5m", "for: 0s")))
    batch = [sample("memory_used_ratio", 0.95), sample("swap_used_ratio", 0.9)]
    engine.observe(HOST, T0, batch)
    assert firing(engine, T0) == ["memory_high@"]
    swap = """\
    - name: swap_high
      condition: {metric: swap_used_ratio, op: ">", threshold: 0.8}
      level: 3
      annotations: {summary: "swap"}
    """
    engine.replace_rules(rules(tmp_path, swap))
    assert firing(engine, T0) == []  # memory_high is gone at once
    engine.observe(HOST, T0 + MIN, batch)
    assert firing(engine, T0 + MIN) == ["swap_high@"]


def test_reload_keeps_history(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, RATE_RULE))
    feed_counter(engine, {m: 600.0 * m for m in range(11)})
    assert len(engine.evaluate(T0 + 10 * MIN)) == 1
    engine.replace_rules(rules(tmp_path, RATE_RULE.replace("threshold: 1", "threshold: 5")))
    feed_counter(engine, {11: 6600.0})
    assert firing(engine, T0 + 11 * MIN) == ["errors@interface=eth0"]  # 10/s > 5 at once
    engine.replace_rules(rules(tmp_path, RATE_RULE.replace("rate: 10m", "rate: 20m")))
    feed_counter(engine, {12: 7200.0})
    assert firing(engine, T0 + 12 * MIN) == []  # a new window: history starts again


def test_a_window_longer_than_retention_is_refused(tmp_path: Path) -> None:
    long = RATE_RULE.replace("rate: 10m", "rate: 12h")
    with pytest.raises(RuleFileError, match=r"rules.yaml:4: window of 43200s exceeds"):
        RuleEngine(rules(tmp_path, long))
    engine = RuleEngine(rules(tmp_path, RATE_RULE))
    with pytest.raises(RuleFileError):
        engine.replace_rules(rules(tmp_path, long, "long.yaml"))
    assert engine.rules.names == ("errors",)
    assert RuleEngine(rules(tmp_path, long), retention_seconds=86400).rules.names == ("errors",)


# -- bounded memory ---------------------------------------------------------------------


def test_only_windowed_metrics_keep_history_and_it_is_bounded(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, MEMORY_RULE + PREDICT_RULE))
    for second in range(0, 12 * 3600, 5):  # a 5 s interval for 12 hours
        batch = [
            sample("memory_used_ratio", 0.5),
            sample("filesystem_used_ratio", 0.5, mountpoint="/", device="a", fstype="ext4"),
            sample("filesystem_used_ratio", 0.5, mountpoint="/b", device="b", fstype="ext4"),
        ]
        engine.observe(HOST, T0 + second * 1000, batch)
    stats = engine.stats()
    assert (stats.hosts, stats.windows) == (1, 2)
    assert stats.window_points <= 2 * (2 * 128 + 2)


def test_a_vanished_series_loses_its_history(tmp_path: Path) -> None:
    engine = RuleEngine(rules(tmp_path, RATE_RULE))
    feed_counter(engine, {0: 0, 1: 10})
    assert engine.stats().windows == 1
    engine.observe(HOST, T0 + 11 * MIN, [])
    assert engine.stats().windows == 1  # gone for exactly a window: kept
    engine.observe(HOST, T0 + 12 * MIN, [])
    assert engine.stats().windows == 0
