"""The systemd check: output parsing, the once-a-minute cache, real subprocess errors."""

from __future__ import annotations

import time

import pytest

from agent.sampler import Sample, SystemctlError
from agent.sampler.systemd import SystemdCheck, parse_failed_units, run_systemctl
from tests.fakes import FakeClock

OUTPUT = """\
nginx.service         loaded failed failed A high performance web server
backup@daily.service  loaded failed failed Nightly backup
● ghost.mount         loaded failed failed /ghost
"""


class Systemctl:
    """Stands in for the systemctl run: returns ``output`` or raises ``error``."""

    def __init__(self, output: str = OUTPUT) -> None:
        self.output = output
        self.error: Exception | None = None
        self.calls: list[float] = []

    def __call__(self, timeout: float) -> str:
        self.calls.append(timeout)
        if self.error is not None:
            raise self.error
        return self.output


def by_unit(samples: list[Sample]) -> dict[str, float]:
    return {s.labels.get("unit", s.name): s.value for s in samples}


def test_parse_failed_units_with_and_without_bullets() -> None:
    assert parse_failed_units(OUTPUT) == ["nginx.service", "backup@daily.service", "ghost.mount"]
    assert parse_failed_units("") == []


def test_failed_units_are_counted_and_listed() -> None:
    check = SystemdCheck(runner=Systemctl(), present=lambda: True, clock=FakeClock(1000.0))
    assert by_unit(check.collect()) == {
        "systemd_units_failed": 3,
        "nginx.service": 1,
        "backup@daily.service": 1,
        "ghost.mount": 1,
    }


def test_systemctl_runs_at_most_once_per_refresh_period() -> None:
    clock, systemctl = FakeClock(1000.0), Systemctl()
    check = SystemdCheck(timeout=2.5, runner=systemctl, present=lambda: True, clock=clock)
    check.collect()
    systemctl.output = ""
    clock.now += 59
    assert by_unit(check.collect())["systemd_units_failed"] == 3  # cached
    assert systemctl.calls == [2.5]
    clock.now += 1
    assert by_unit(check.collect()) == {"systemd_units_failed": 0}
    assert systemctl.calls == [2.5, 2.5]


def test_an_error_is_cached_and_reported_until_the_next_refresh() -> None:
    clock, systemctl = FakeClock(1000.0), Systemctl()
    systemctl.error = SystemctlError("systemctl timed out after 4.0s")
    check = SystemdCheck(runner=systemctl, present=lambda: True, clock=clock)
    for _ in range(3):
        with pytest.raises(SystemctlError, match=r"timed out after 4\.0s"):
            check.collect()
        clock.now += 10
    assert len(systemctl.calls) == 1
    systemctl.error = None
    clock.now += 60
    assert by_unit(check.collect())["systemd_units_failed"] == 3


def test_planned_only_where_systemd_runs() -> None:
    assert SystemdCheck(present=lambda: False).plan() == {}
    assert list(SystemdCheck(present=lambda: True).plan()) == ["systemd"]


def test_whether_systemd_runs_is_looked_up_once_per_refresh_period() -> None:
    clock, lookups = FakeClock(1000.0), []

    def present() -> bool:
        lookups.append(clock.now)
        return len(lookups) > 1

    check = SystemdCheck(present=present, clock=clock)
    assert check.plan() == {}
    clock.now += 59
    assert check.plan() == {}
    clock.now += 1
    assert list(check.plan()) == ["systemd"]
    assert lookups == [1000.0, 1060.0]


def test_run_systemctl_maps_timeout_exit_status_and_missing_binary() -> None:
    start = time.monotonic()
    with pytest.raises(SystemctlError, match=r"timed out after 0\.2s"):
        run_systemctl(0.2, ("sleep", "10"))
    assert time.monotonic() - start < 2
    with pytest.raises(SystemctlError, match="exited 3: nope"):
        run_systemctl(5, ("sh", "-c", "echo nope >&2; exit 3"))
    with pytest.raises(SystemctlError, match="cannot run systemctl"):
        run_systemctl(5, ("/nonexistent/systemctl",))
    assert run_systemctl(5, ("echo", "a.service loaded failed failed A")).startswith("a.service")
