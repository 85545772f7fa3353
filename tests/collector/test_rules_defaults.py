"""Every default rule fires on a synthetic unhealthy host and stays quiet on a healthy one.

``CASES`` maps each rule of ``collector/rules/default.yaml`` to an unhealthy and a
near-miss healthy variant of a realistic host (``healthy_samples``: the names and labels
of docs/metrics.md, ~100 samples). A batch is fed every 15 s of fake time for long
enough to cover the rule's window and ``for``; a default rule without a case here fails
``test_every_default_rule_has_a_case``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from collector.rules import Alert, HostRef, RuleEngine, RuleSet, default_rules_path, load_rules
from collector.store.base import StoredSample

INTERVAL_S = 15.0
START_MS = 1_700_000_000_000
HOST = HostRef(agent_id="agent-1", customer="acme", hostname="web1")

Samples = list[StoredSample]
Mutator = Callable[[float, Samples], Samples]  # (seconds since the first batch, samples)

FILESYSTEMS = (
    ("/", "/dev/sda2", "ext4"),
    ("/var", "/dev/sdb1", "xfs"),
    ("/data", "srv:/d", "nfs4"),
)


def healthy_samples(t: float = 0.0, *, cores: int = 4) -> Samples:
    """A healthy host ``t`` seconds into the run: every metric of docs/metrics.md."""
    out: Samples = []

    def add(name: str, value: float, **labels: str) -> None:
        out.append(StoredSample(name, labels, float(value)))

    modes = {"user": 0.18, "system": 0.05, "idle": 0.73, "iowait": 0.02, "steal": 0.02}
    for cpu in ("total", *map(str, range(cores))):
        add("cpu_usage_ratio", 0.23, cpu=cpu)
        for mode, share in modes.items():
            add("cpu_mode_ratio", share, cpu=cpu, mode=mode)
    for period, load in (("1m", 0.9), ("5m", 0.8), ("15m", 0.7)):
        add("load_average", load, period=period)
    add("cpu_cores", cores)
    add("memory_total_bytes", 16 * 2**30)
    add("memory_available_bytes", 9 * 2**30)
    add("memory_used_ratio", 7 / 16)
    add("swap_total_bytes", 2 * 2**30)
    add("swap_used_bytes", 2**27)
    add("swap_used_ratio", 1 / 16)
    add("swap_in_bytes_total", 4096 * (1000 + t // 60))
    add("swap_out_bytes_total", 4096 * (3000 + t // 60))
    add("oom_kills_total", 2)  # long ago
    for mountpoint, device, fstype in FILESYSTEMS:
        fs = {"mountpoint": mountpoint, "device": device, "fstype": fstype}
        add("filesystem_size_bytes", 100 * 2**30, **fs)
        add("filesystem_free_bytes", 55 * 2**30, **fs)
        add("filesystem_used_ratio", 0.45, **fs)
        add("filesystem_inodes_total", 6_553_600, **fs)
        add("filesystem_inodes_free", 6_000_000, **fs)
        add("filesystem_inodes_used_ratio", 0.0845, **fs)
        add("filesystem_readonly", 0, **fs)
    for device in ("sda", "sdb"):
        add("disk_reads_total", 1e6 + 50 * t, device=device)
        add("disk_read_bytes_total", 4e10 + 2e5 * t, device=device)
        add("disk_writes_total", 2e6 + 80 * t, device=device)
        add("disk_written_bytes_total", 8e10 + 4e5 * t, device=device)
        add("disk_io_time_seconds_total", 5e3 + 0.05 * t, device=device)
    for direction in ("receive", "transmit"):
        add(f"network_{direction}_bytes_total", 1e11 + 1e6 * t, interface="eth0")
        add(f"network_{direction}_packets_total", 1e8 + 900 * t, interface="eth0")
        add(f"network_{direction}_errors_total", 12 + 0.01 * t, interface="eth0")
        add(f"network_{direction}_drops_total", 40 + 0.02 * t, interface="eth0")
    add("processes_total", 180)
    add("processes_zombie", 0)
    add("file_descriptors_allocated", 4_000)
    add("file_descriptors_limit", 1_000_000)
    add("file_descriptors_used_ratio", 0.004)
    add("boot_time_seconds", START_MS / 1000 - 86_400)
    add("uptime_seconds", 86_400 + t)
    add("temperature_celsius", 48, sensor="coretemp", label="Package id 0")
    add("temperature_celsius", 41, sensor="nvme", label="Composite")
    add("systemd_units_failed", 0)
    add("clock_synchronized", 1)
    add("clock_offset_seconds", 0.000_2)
    add("clock_max_error_seconds", 0.05)
    add("clock_estimated_error_seconds", 0.001)
    for check in ("cpu", "memory", "filesystems:/", "systemd"):
        add("agent_check_duration_seconds", 0.002, check=check)
    return out


def set_value(samples: Samples, name: str, value: float, **labels: str) -> Samples:
    """``samples`` with the value of every ``name`` series carrying ``labels`` replaced."""
    found = False
    result: Samples = []
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            s, found = StoredSample(s.name, s.labels, float(value)), True
        result.append(s)
    assert found, f"no sample {name}{labels}"
    return result


def setting(name: str, value: Callable[[float], float] | float, **labels: str) -> Mutator:
    """A mutator that sets ``name{labels}`` to ``value`` (a number, or a function of t)."""

    def mutate(t: float, samples: Samples) -> Samples:
        number = value(t) if callable(value) else value
        return set_value(samples, name, number, **labels)

    return mutate


def both(*mutators: Mutator) -> Mutator:
    def mutate(t: float, samples: Samples) -> Samples:
        for mutator in mutators:
            samples = mutator(t, samples)
        return samples

    return mutate


def adding(name: str, value: float, **labels: str) -> Mutator:
    def mutate(t: float, samples: Samples) -> Samples:
        return [*samples, StoredSample(name, labels, value)]

    return mutate


@dataclass(frozen=True)
class Case:
    unhealthy: Mutator
    healthy: Mutator  # a near miss, not just the baseline where possible
    labels: Mapping[str, str] = field(default_factory=dict)  # the alert must carry these
    minutes: float = 40.0  # how long batches are fed (covers the window and `for`)
    silent_s: tuple[float, float] = (0.0, 0.0)  # (unhealthy, healthy) silence before evaluating


def _fs(metric: str, value: Callable[[float], float] | float, mountpoint: str = "/var") -> Mutator:
    return setting(metric, value, mountpoint=mountpoint)


def _oom_counter(t: float) -> float:
    return 2 if t < 35 * 60 else 3  # one kill 5 minutes before the end


def _oom_after_reboot(t: float) -> float:
    return 2 if t < 20 * 60 else 0  # the counter resets on reboot: not a kill


def _unsynchronised_lately(t: float) -> float:
    return 1 if t < 20 * 60 else 0  # unsynchronised for 20 minutes, `for` is 30


CASES: dict[str, Case] = {
    "filesystem_almost_full": Case(
        _fs("filesystem_used_ratio", 0.95),
        _fs("filesystem_used_ratio", 0.89),
        {"mountpoint": "/var", "device": "/dev/sdb1", "category": "storage"},
    ),
    "filesystem_predicted_full": Case(
        # 60% used, filling 2 points an hour: full in about 16 hours
        _fs("filesystem_used_ratio", lambda t: 0.60 + 0.02 * t / 3600),
        # busy but flat: 80% with +-1% of churn
        _fs("filesystem_used_ratio", lambda t: 0.80 + 0.01 * math.sin(t / 600)),
        {"mountpoint": "/var"},
        minutes=4 * 60,
    ),
    "filesystem_inodes_almost_full": Case(
        _fs("filesystem_inodes_used_ratio", 0.95, "/data"),
        _fs("filesystem_inodes_used_ratio", 0.89, "/data"),
        {"mountpoint": "/data", "fstype": "nfs4"},
    ),
    "filesystem_readonly": Case(
        _fs("filesystem_readonly", 1, "/"),
        _fs("filesystem_readonly", 0, "/"),
        {"mountpoint": "/"},
    ),
    "memory_pressure": Case(setting("memory_used_ratio", 0.97), setting("memory_used_ratio", 0.94)),
    "swap_heavy_use": Case(setting("swap_used_ratio", 0.9), setting("swap_used_ratio", 0.7)),
    "oom_kills": Case(
        setting("oom_kills_total", _oom_counter), setting("oom_kills_total", _oom_after_reboot)
    ),
    "cpu_saturation": Case(
        setting("cpu_usage_ratio", 0.98, cpu="total"),
        setting("cpu_usage_ratio", 1.0, cpu="0"),  # one CPU pegged, the host is fine
        {"cpu": "total"},
    ),
    "load_saturation": Case(
        setting("load_average", 9, period="5m"),  # 2.25 per CPU on 4 CPUs
        both(setting("load_average", 12, period="5m"), setting("cpu_cores", 8)),  # 1.5
        {"period": "5m"},
    ),
    "iowait_high": Case(
        setting("cpu_mode_ratio", 0.4, cpu="total", mode="iowait"),
        setting("cpu_mode_ratio", 0.9, cpu="0", mode="iowait"),
        {"cpu": "total", "mode": "iowait"},
    ),
    "systemd_unit_failed": Case(
        both(
            setting("systemd_units_failed", 1),
            adding("systemd_unit_failed", 1.0, unit="nginx.service"),
        ),
        setting("systemd_units_failed", 0),
        {"unit": "nginx.service"},
    ),
    "file_descriptors_near_limit": Case(
        setting("file_descriptors_used_ratio", 0.95), setting("file_descriptors_used_ratio", 0.85)
    ),
    "clock_unsynchronized": Case(
        setting("clock_synchronized", 0), setting("clock_synchronized", _unsynchronised_lately)
    ),
    "clock_skewed": Case(
        setting("clock_offset_seconds", -1.5),  # behind: abs() catches it
        setting("clock_offset_seconds", 0.9),
    ),
    "network_receive_errors": Case(
        setting("network_receive_errors_total", lambda t: 12 + 5 * t, interface="eth0"),
        setting("network_receive_errors_total", lambda t: 12 + 0.5 * t, interface="eth0"),
        {"interface": "eth0"},
    ),
    "network_transmit_errors": Case(
        setting("network_transmit_errors_total", lambda t: 12 + 5 * t, interface="eth0"),
        setting("network_transmit_errors_total", lambda t: 12 + 0.5 * t, interface="eth0"),
        {"interface": "eth0"},
    ),
    "host_unreachable": Case(both(), both(), silent_s=(150.0, 90.0)),
}


@pytest.fixture(scope="module")
def default_rules() -> RuleSet:
    return load_rules(default_rules_path())


def run(rules: RuleSet, mutate: Mutator, minutes: float, silent_s: float = 0.0) -> list[Alert]:
    """Feed a batch every 15 s of fake time for ``minutes``; evaluate after each and
    return the alerts of the last evaluation, ``silent_s`` after the last batch."""
    engine = RuleEngine(rules)
    steps = int(minutes * 60 / INTERVAL_S)
    at_ms = START_MS
    for step in range(steps + 1):
        t = step * INTERVAL_S
        at_ms = START_MS + int(t * 1000)
        engine.observe(HOST, at_ms, mutate(t, healthy_samples(t)))
        engine.evaluate(at_ms)
    return engine.evaluate(at_ms + int(silent_s * 1000))


def test_every_default_rule_has_a_case(default_rules: RuleSet) -> None:
    assert set(CASES) == set(default_rules.names)


def test_the_default_rules_load_without_warnings(default_rules: RuleSet) -> None:
    assert default_rules.warnings == ()
    assert len(default_rules) >= 17


def test_a_healthy_host_raises_nothing(default_rules: RuleSet) -> None:
    assert run(default_rules, both(), minutes=4 * 60) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_fires_on_an_unhealthy_host(default_rules: RuleSet, name: str) -> None:
    case = CASES[name]
    rule = default_rules.get(name)
    assert rule is not None
    alerts = [
        a
        for a in run(default_rules, case.unhealthy, case.minutes, case.silent_s[0])
        if a.rule == name
    ]
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert.level == rule.level
    assert alert.host == HOST
    assert dict(alert.labels).items() >= {**case.labels, **rule.labels}.items()
    assert alert.playbook == rule.playbook
    assert alert.summary and "{{" not in alert.summary and "{{" not in alert.description
    assert "web1" in alert.summary or "web1" in alert.description


@pytest.mark.parametrize("name", sorted(CASES))
def test_quiet_on_a_healthy_host(default_rules: RuleSet, name: str) -> None:
    case = CASES[name]
    alerts = run(default_rules, case.healthy, case.minutes, case.silent_s[1])
    assert [a for a in alerts if a.rule == name] == []


def test_healthy_samples_look_like_an_agent_batch() -> None:
    samples = healthy_samples()
    assert 90 <= len(samples) <= 110
    from collector.rules import KNOWN_METRICS

    assert {s.name for s in samples} == set(KNOWN_METRICS) - {"systemd_unit_failed"}
    for s in samples:
        assert set(s.labels) == KNOWN_METRICS[s.name], s
