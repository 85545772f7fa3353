"""The sampler on this machine: real metrics, plus injected failing, slow and hung checks."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sampler import (
    CheckFailure,
    Cycle,
    Sample,
    Sampler,
    SamplerClosed,
    SimpleCheck,
)
from agent.sampler.filesystems import FilesystemCheck, Mount
from agent.sampler.refresh import Refresh

CORE_NAMES = {
    "cpu_usage_ratio",
    "cpu_mode_ratio",
    "load_average",
    "cpu_cores",
    "memory_total_bytes",
    "memory_available_bytes",
    "memory_used_ratio",
    "swap_total_bytes",
    "swap_used_bytes",
    "swap_used_ratio",
    "swap_in_bytes_total",
    "swap_out_bytes_total",
    "filesystem_size_bytes",
    "filesystem_free_bytes",
    "filesystem_used_ratio",
    "filesystem_inodes_total",
    "filesystem_inodes_free",
    "filesystem_readonly",
    "processes_total",
    "processes_zombie",
    "file_descriptors_allocated",
    "file_descriptors_limit",
    "file_descriptors_used_ratio",
    "boot_time_seconds",
    "uptime_seconds",
    "clock_synchronized",
    "clock_offset_seconds",
    "clock_max_error_seconds",
    "clock_estimated_error_seconds",
    "agent_check_duration_seconds",
}
DISK_NAMES = {
    "disk_read_bytes_total",
    "disk_written_bytes_total",
    "disk_reads_total",
    "disk_writes_total",
    "disk_io_time_seconds_total",
}
NETWORK_NAMES = {
    f"network_{direction}_{what}_total"
    for direction in ("receive", "transmit")
    for what in ("bytes", "packets", "errors", "drops")
}
ENVIRONMENT_DEPENDENT = {"systemd", "temperatures"}


@pytest.fixture
def sampler() -> Iterator[Sampler]:
    with Sampler(check_timeout=5.0) as instance:
        yield instance


def values(cycle: Cycle, name: str, **labels: str) -> list[float]:
    """Values of samples called ``name`` whose labels include ``labels``."""
    return [
        s.value
        for s in cycle.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def one(cycle: Cycle, name: str, **labels: str) -> float:
    found = values(cycle, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def burn_cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def whole_disks() -> bool:
    return any(not d.startswith(("loop", "ram", "zram")) for d in os.listdir("/sys/block"))


def real_interfaces() -> bool:
    return any(i != "lo" and not i.startswith("veth") for i in os.listdir("/sys/class/net"))


def test_collect_twice_reports_the_core_metrics_with_sane_values(sampler: Sampler) -> None:
    first = sampler.collect()
    second = sampler.collect()

    for cycle in (first, second):
        names = {s.name for s in cycle.samples}
        assert names >= CORE_NAMES, CORE_NAMES - names
        if whole_disks():
            assert names >= DISK_NAMES
        if real_interfaces():
            assert names >= NETWORK_NAMES
        assert [f for f in cycle.failures if f.check not in ENVIRONMENT_DEPENDENT] == []
        for sample in cycle.samples:
            assert isinstance(sample.value, float), sample
            if sample.name.endswith("_ratio"):
                assert 0.0 <= sample.value <= 1.0, sample
    assert second.collected_unix_ms >= first.collected_unix_ms
    assert abs(second.collected_unix_ms / 1000 - time.time()) < 60


def test_memory_and_system_figures_agree_with_the_kernel(sampler: Sampler) -> None:
    cycle = sampler.collect()
    total = one(cycle, "memory_total_bytes")
    available = one(cycle, "memory_available_bytes")
    assert total > 0
    assert 0 < available <= total
    assert one(cycle, "memory_used_ratio") == pytest.approx(1 - available / total)
    assert one(cycle, "cpu_cores") == os.cpu_count()
    assert values(cycle, "load_average", period="1m") == [pytest.approx(os.getloadavg()[0], 1)]
    assert one(cycle, "uptime_seconds") > 0
    assert one(cycle, "boot_time_seconds") == pytest.approx(
        time.time() - time.clock_gettime(time.CLOCK_BOOTTIME), abs=2
    )
    assert one(cycle, "file_descriptors_allocated") > 0
    assert one(cycle, "file_descriptors_limit") >= one(cycle, "file_descriptors_allocated")
    assert one(cycle, "processes_total") >= 2
    assert one(cycle, "processes_zombie") <= one(cycle, "processes_total")
    assert one(cycle, "clock_synchronized") in (0.0, 1.0)
    if "oom_kill " in Path("/proc/vmstat").read_text():
        assert one(cycle, "oom_kills_total") >= 0


def test_root_filesystem_is_reported(sampler: Sampler) -> None:
    cycle = sampler.collect()
    st = os.statvfs("/")
    size = one(cycle, "filesystem_size_bytes", mountpoint="/")
    assert size == st.f_blocks * st.f_frsize
    assert 0 < one(cycle, "filesystem_free_bytes", mountpoint="/") <= size
    assert one(cycle, "filesystem_readonly", mountpoint="/") in (0.0, 1.0)
    labels = next(s.labels for s in cycle.samples if s.name == "filesystem_size_bytes")
    assert set(labels) == {"mountpoint", "device", "fstype"}
    mounted = {s.labels["mountpoint"] for s in cycle.samples if s.name.startswith("filesystem_")}
    assert not any(m.startswith(("/proc", "/sys", "/dev")) for m in mounted)


def test_cpu_ratios_cover_the_interval_since_the_previous_collect(sampler: Sampler) -> None:
    sampler.collect()
    burn_cpu(0.5)  # one core fully busy for (almost) the whole interval
    cycle = sampler.collect()
    cores = os.cpu_count() or 1
    assert one(cycle, "cpu_usage_ratio", cpu="total") >= 0.7 / cores
    for cpu in ["total", *map(str, range(cores))]:
        modes = {
            s.labels["mode"]: s.value
            for s in cycle.samples
            if s.name == "cpu_mode_ratio" and s.labels["cpu"] == cpu
        }
        assert set(modes) == {"user", "system", "idle", "iowait", "steal"}
        assert sum(modes.values()) == pytest.approx(1.0)
        usage = one(cycle, "cpu_usage_ratio", cpu=cpu)
        assert usage == pytest.approx(1 - modes["idle"] - modes["iowait"])


def test_a_raising_check_becomes_a_failure_while_the_others_report() -> None:
    def forbidden() -> list[Sample]:
        raise PermissionError("[Errno 13] Permission denied: '/proc/secret'")

    with Sampler(extra_checks=[SimpleCheck("secret", forbidden)]) as sampler:
        cycle = sampler.collect()
    error = "PermissionError: [Errno 13] Permission denied: '/proc/secret'"
    assert CheckFailure("secret", error) in cycle.failures
    assert {s.name for s in cycle.samples} >= CORE_NAMES


def test_a_check_whose_planning_fails_is_reported_under_its_name() -> None:
    def no_mounts() -> list[Mount]:
        raise FileNotFoundError("/proc/self/mounts")

    ok = SimpleCheck("ok", lambda: [Sample("ok_total", {}, 1.0)])
    with Sampler(checks=[FilesystemCheck(mounts=no_mounts), ok]) as sampler:
        cycle = sampler.collect()
    assert cycle.failures == [CheckFailure("filesystems", "FileNotFoundError: /proc/self/mounts")]
    assert values(cycle, "ok_total") == [1.0]


def test_non_blocking_checks_run_in_the_collecting_thread_in_check_order() -> None:
    threads: dict[str, threading.Thread] = {}

    def probe(name: str, fail: bool = False) -> SimpleCheck:
        def run() -> list[Sample]:
            threads[name] = threading.current_thread()
            if fail:
                raise OSError(f"no {name}")
            return [Sample(f"{name}_total", {}, 1.0)]

        return SimpleCheck(name, run, blocking=name.startswith("pooled"))

    checks = [probe("pooled_a"), probe("inline_b"), probe("pooled_c"), probe("inline_d", True)]
    with Sampler(checks=checks) as sampler:
        cycle = sampler.collect()
    assert threads["inline_b"] is threads["inline_d"] is threading.current_thread()
    assert threads["pooled_a"] is not threading.current_thread()
    assert [s.name for s in cycle.samples if s.name != "agent_check_duration_seconds"] == [
        "pooled_a_total",
        "inline_b_total",
        "pooled_c_total",
    ]
    assert cycle.failures == [CheckFailure("inline_d", "OSError: no inline_d")]


class HangingStatvfs:
    """statvfs that blocks on ``release`` for one mountpoint and counts its calls."""

    def __init__(self, hung: str) -> None:
        self.hung = hung
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, path: str) -> os.statvfs_result:
        if path == self.hung:
            self.calls += 1
            self.release.wait(30)
        return os.statvfs("/")


def test_a_hung_statvfs_does_not_stall_the_cycle_and_is_not_restarted() -> None:
    mounts = [
        Mount("/dev/vda", "/", "ext4"),
        Mount("server:/export", "/mnt/nfs", "nfs4"),  # before /srv: /srv queues behind it
        Mount("/dev/vdb", "/srv", "xfs"),
    ]
    statvfs = HangingStatvfs("/mnt/nfs")
    check = FilesystemCheck(mounts=lambda: mounts, statvfs=statvfs)
    sampler = Sampler(check_timeout=1.0, checks=[check])
    try:
        start = time.monotonic()
        first = sampler.collect()
        assert time.monotonic() - start < 1.5
        assert first.failures == [CheckFailure("filesystems:/mnt/nfs", "timed out after 1.0s")]
        assert values(first, "filesystem_size_bytes", mountpoint="/")
        assert values(first, "filesystem_size_bytes", mountpoint="/srv")
        assert not values(first, "filesystem_size_bytes", mountpoint="/mnt/nfs")

        start = time.monotonic()
        second = sampler.collect()
        assert time.monotonic() - start < 0.5
        assert second.failures == [
            CheckFailure("filesystems:/mnt/nfs", "still hung from a previous cycle")
        ]
        assert values(second, "filesystem_size_bytes", mountpoint="/srv")
        assert statvfs.calls == 1

        statvfs.release.set()
        deadline = time.monotonic() + 5
        while sampler.collect().failures and time.monotonic() < deadline:
            time.sleep(0.05)
        third = sampler.collect()
        assert third.failures == []
        assert values(third, "filesystem_size_bytes", mountpoint="/mnt/nfs")
        assert statvfs.calls >= 2
    finally:
        statvfs.release.set()
        sampler.close()


def test_a_slow_check_times_out_on_its_own_limit_and_others_still_report() -> None:
    release = threading.Event()
    runs = []

    def slow() -> list[Sample]:
        runs.append(1)
        release.wait(30)
        return [Sample("slow_total", {}, 1.0)]

    fast = SimpleCheck("fast", lambda: [Sample("fast_total", {}, 1.0)])
    sampler = Sampler(check_timeout=0.3, checks=[SimpleCheck("slow", slow), fast])
    try:
        start = time.monotonic()
        cycle = sampler.collect()
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 0.8
        assert cycle.failures == [CheckFailure("slow", "timed out after 0.3s")]
        assert values(cycle, "fast_total") == [1.0]
        for _ in range(3):
            again = sampler.collect()
            assert again.failures == [CheckFailure("slow", "still hung from a previous cycle")]
            assert values(again, "fast_total") == [1.0]
        assert len(runs) == 1
        assert sampler._pool.thread_count <= 2  # the stuck one and one lane
    finally:
        release.set()
        sampler.close()


def test_close_is_idempotent_and_stops_collecting() -> None:
    sampler = Sampler(check_timeout=1.0)
    sampler.collect()
    sampler.close()
    sampler.close()
    with pytest.raises(SamplerClosed):
        sampler.collect()
    deadline = time.monotonic() + 2
    while sampler._pool.thread_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sampler._pool.thread_count == 0


def test_check_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="check_timeout"):
        Sampler(check_timeout=0)


def test_refresh_is_due_at_first_then_once_per_period() -> None:
    now = [100.0]
    refresh = Refresh(60.0, clock=lambda: now[0])
    answers = []
    for t in (100.0, 130.0, 159.9, 160.0, 200.0, 220.0):
        now[0] = t
        answers.append(refresh.due())
    assert answers == [True, False, False, True, False, True]
