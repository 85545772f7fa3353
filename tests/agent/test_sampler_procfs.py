"""Parsing and arithmetic of the /proc-based checks, against fixture snapshots of /proc."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.sampler.clock import STA_NANO, STA_UNSYNC, TIME_ERROR, ClockCheck, Timex
from agent.sampler.cpu import CpuCheck
from agent.sampler.disks import DiskCheck
from agent.sampler.filesystems import (
    DEFAULT_EXCLUDED_FSTYPES,
    DEFAULT_EXCLUDED_MOUNTPOINTS,
    FilesystemCheck,
    Mount,
    MountTable,
    filesystem_samples,
    parse_mounts,
    select_mounts,
)
from agent.sampler.memory import MemoryCheck
from agent.sampler.model import Sample
from agent.sampler.network import NetworkCheck
from agent.sampler.processes import ProcessCheck
from agent.sampler.procfs import ProcFile, read_bytes
from agent.sampler.system import FileDescriptorCheck, LoadCheck
from agent.sampler.temperatures import TemperatureCheck, sensors_present


def test_proc_file_reads_the_current_content_each_time(tmp_path: Path) -> None:
    path = tmp_path / "loadavg"
    file = ProcFile(str(path))
    with pytest.raises(FileNotFoundError):
        file.read()
    path.write_text("0.50 1.25 2.00 3/400 1234\n")
    assert file.read() == b"0.50 1.25 2.00 3/400 1234\n"
    path.write_text("0.10 0.20 0.30 1/90 99\n")  # rewritten in place, shorter
    assert file.read_text() == "0.10 0.20 0.30 1/90 99\n"
    assert ProcFile("/proc/loadavg").read().count(b" ") == 4
    directory = ProcFile(str(tmp_path))  # opens, but every read fails: closed each time
    for _ in range(2):
        with pytest.raises(IsADirectoryError):
            directory.read()


def test_reads_go_on_past_the_kernels_page_sized_pieces() -> None:
    # /proc files generated record by record come about a page per read(), however
    # large the buffer; only an empty read means the end.
    path = "/proc/self/smaps"
    fd = os.open(path, os.O_RDONLY)
    try:
        first = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    mappings = len(read_bytes("/proc/self/maps").splitlines())
    for whole in (read_bytes(path), ProcFile(path).read()):
        assert len(whole) > len(first)
        assert abs(whole.count(b"\nVmFlags:") - mappings) <= 5


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def by_key(samples: list[Sample], *label_names: str) -> dict[tuple[str, ...], float]:
    return {(s.name, *(s.labels[n] for n in label_names)): s.value for s in samples}


STAT_BOOT = """\
cpu  300 100 200 1000 50 10 40 100 0 0
cpu0 200 100 100 400 40 10 20 60 0 0
cpu1 100 0 100 600 10 0 20 40 0 0
intr 1 2 3
ctxt 42
"""
STAT_LATER = """\
cpu  400 100 250 1100 100 10 40 100 7 0
cpu0 300 100 150 400 90 10 20 60 7 0
cpu1 100 0 100 700 10 0 20 40 0 0
intr 1 2 3
"""


def test_cpu_first_cycle_reports_since_boot_then_deltas(tmp_path: Path) -> None:
    write(tmp_path, "stat", STAT_BOOT)
    check = CpuCheck(proc=str(tmp_path))
    boot = check()
    boot_modes = by_key([s for s in boot if s.name == "cpu_mode_ratio"], "cpu", "mode")
    # total since boot: user+nice 400, system+irq+softirq 250, idle 1000, iowait 50, steal 100
    assert boot_modes[("cpu_mode_ratio", "total", "user")] == pytest.approx(400 / 1800)
    assert boot_modes[("cpu_mode_ratio", "total", "steal")] == pytest.approx(100 / 1800)
    boot_usage = by_key([s for s in boot if s.name == "cpu_usage_ratio"], "cpu")
    assert boot_usage[("cpu_usage_ratio", "total")] == pytest.approx(750 / 1800)

    write(tmp_path, "stat", STAT_LATER)
    later = check()
    usage = {s.labels["cpu"]: s.value for s in later if s.name == "cpu_usage_ratio"}
    modes = by_key([s for s in later if s.name == "cpu_mode_ratio"], "cpu", "mode")
    # cpu0 deltas: user 100, system 50, idle 0, iowait 50 (guest 7 is inside user already)
    assert modes[("cpu_mode_ratio", "0", "user")] == pytest.approx(0.5)
    assert modes[("cpu_mode_ratio", "0", "iowait")] == pytest.approx(0.25)
    assert usage["0"] == pytest.approx(0.75)
    # cpu1: only idle advanced
    assert usage["1"] == pytest.approx(0.0)
    assert modes[("cpu_mode_ratio", "1", "idle")] == pytest.approx(1.0)
    assert usage["total"] == pytest.approx(150 / 300)


def test_cpu_cores_counts_the_cpus_stat_lists(tmp_path: Path) -> None:
    write(tmp_path, "stat", STAT_BOOT)
    got = by_key(CpuCheck(proc=str(tmp_path))())
    assert got[("cpu_cores",)] == 2
    assert by_key(CpuCheck()())[("cpu_cores",)] == os.cpu_count()


def test_cpu_repeats_previous_ratios_when_no_tick_elapsed(tmp_path: Path) -> None:
    write(tmp_path, "stat", STAT_BOOT)
    check = CpuCheck(proc=str(tmp_path))
    check()
    write(tmp_path, "stat", STAT_LATER)
    interval = check()
    assert check() == interval  # /proc/stat unchanged: no tick elapsed


def test_cpu_clamps_counters_that_step_back(tmp_path: Path) -> None:
    write(tmp_path, "stat", "cpu  100 0 100 100 50 0 0 0\n")
    check = CpuCheck(proc=str(tmp_path))
    check()
    write(tmp_path, "stat", "cpu  200 0 100 200 40 0 0 0\n")  # iowait went 50 -> 40
    modes = by_key([s for s in check() if s.name == "cpu_mode_ratio"], "mode")
    assert modes[("cpu_mode_ratio", "iowait")] == 0.0
    assert modes[("cpu_mode_ratio", "user")] == pytest.approx(0.5)


MEMINFO = """\
MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          100000 kB
Cached:          2000000 kB
SwapCached:            0 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
"""


def test_memory_and_swap_from_meminfo_and_vmstat(tmp_path: Path) -> None:
    write(tmp_path, "meminfo", MEMINFO)
    write(tmp_path, "vmstat", "nr_free_pages 5\npswpin 10\npswpout 20\noom_kill 3\n")
    got = by_key(MemoryCheck(proc=str(tmp_path))())
    page = os.sysconf("SC_PAGE_SIZE")
    assert got[("memory_total_bytes",)] == 8000000 * 1024
    assert got[("memory_available_bytes",)] == 6000000 * 1024
    assert got[("memory_used_ratio",)] == pytest.approx(0.25)
    assert got[("swap_used_bytes",)] == 500000 * 1024
    assert got[("swap_used_ratio",)] == pytest.approx(0.25)
    assert got[("swap_in_bytes_total",)] == 10 * page
    assert got[("swap_out_bytes_total",)] == 20 * page
    assert got[("oom_kills_total",)] == 3


def test_memory_without_memavailable_or_oom_kill(tmp_path: Path) -> None:
    write(tmp_path, "meminfo", MEMINFO.replace("MemAvailable:    6000000 kB\n", ""))
    write(tmp_path, "vmstat", "pswpin 0\npswpout 0\n")
    got = by_key(MemoryCheck(proc=str(tmp_path))())
    assert got[("memory_available_bytes",)] == (1000000 + 100000 + 2000000) * 1024
    assert ("oom_kills_total",) not in got


DISKSTATS = """\
   8       0 sda 100 0 2000 0 50 0 4000 0 0 1500 0 0 0 0 0
   8       1 sda1 90 0 1800 0 50 0 4000 0 0 1400 0 0 0 0 0
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0
 259       0 nvme0n1 5 0 8 0 6 0 16 0 0 7 0
 259       1 nvme0n1p1 5 0 8 0 6 0 16 0 0 7 0
 253       0 dm-0 1 0 1 0 1 0 1 0 0 1 0
 252       0 zram0 1 0 1 0 1 0 1 0 0 1 0
"""


def test_disks_whole_devices_only_with_bytes_and_seconds(tmp_path: Path) -> None:
    write(tmp_path, "diskstats", DISKSTATS)
    got = by_key(DiskCheck(proc=str(tmp_path))(), "device")
    assert {device for _, device in got} == {"sda", "nvme0n1", "dm-0"}
    assert got[("disk_reads_total", "sda")] == 100
    assert got[("disk_read_bytes_total", "sda")] == 2000 * 512
    assert got[("disk_writes_total", "sda")] == 50
    assert got[("disk_written_bytes_total", "sda")] == 4000 * 512
    assert got[("disk_io_time_seconds_total", "sda")] == pytest.approx(1.5)


NET_DEV = """\
Inter-|   Receive                                 |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo ...
    lo: 3193 29 0 0 0 0 0 0 3193 29 0 0 0 0 0 0
  eth0:1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
veth1a2b: 5 5 0 0 0 0 0 0 5 5 0 0 0 0 0 0
"""


def test_network_counters_skip_loopback_and_veth(tmp_path: Path) -> None:
    write(tmp_path, "net/dev", NET_DEV)
    got = by_key(NetworkCheck(proc=str(tmp_path))(), "interface")
    assert {interface for _, interface in got} == {"eth0"}
    expected = {
        "receive_bytes": 1000, "receive_packets": 10, "receive_errors": 1, "receive_drops": 2,
        "transmit_bytes": 2000, "transmit_packets": 20, "transmit_errors": 3, "transmit_drops": 4,
    }  # fmt: skip
    for what, value in expected.items():
        assert got[(f"network_{what}_total", "eth0")] == value


def process_tree(root: Path) -> None:
    write(root, "1/stat", "1 (systemd) S 0 1 1 0 -1\n")
    write(root, "20/stat", "20 (odd) Z name) Z 1 20 20\n")  # comm with ") Z "
    write(root, "21/stat", "21 (worker) R 1 21 21\n")
    write(root, "22/stat", "22 (defunct) Z 1 22 22\n")
    write(root, "self/stat", "99 (me) S\n")


def test_processes_counts_zombies_from_the_state_field(tmp_path: Path) -> None:
    process_tree(tmp_path)
    (tmp_path / "23").mkdir()  # exited between listing and reading: listed, not a zombie
    got = by_key(ProcessCheck(proc=str(tmp_path))())
    assert got == {("processes_total",): 5, ("processes_zombie",): 2}


class CpuClock:
    """Fake thread CPU clock: each reading advances by ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_process_counting_keeps_to_its_cpu_budget(tmp_path: Path) -> None:
    process_tree(tmp_path)
    # each pass "costs" 3.5 ms against a 1 ms budget: count, repeat 3 times, count again
    check = ProcessCheck(proc=str(tmp_path), scan_budget=0.001, cpu_clock=CpuClock(0.0035))
    first = by_key(check())
    assert first == {("processes_total",): 4, ("processes_zombie",): 2}
    write(tmp_path, "21/stat", "21 (worker) Z 1 21 21\n")
    write(tmp_path, "30/stat", "30 (new) S 1 30 30\n")
    for _ in range(3):
        assert by_key(check()) == first
    assert by_key(check()) == {("processes_total",): 5, ("processes_zombie",): 3}


def test_cheap_counts_run_every_cycle_and_stale_ones_are_capped(tmp_path: Path) -> None:
    process_tree(tmp_path)
    cheap = ProcessCheck(proc=str(tmp_path), scan_budget=0.001, cpu_clock=CpuClock(0.0004))
    dear = ProcessCheck(
        proc=str(tmp_path), scan_budget=0.001, max_stale_cycles=2, cpu_clock=CpuClock(1.0)
    )
    cheap(), dear()
    write(tmp_path, "21/stat", "21 (worker) Z 1 21 21\n")
    assert by_key(cheap())[("processes_zombie",)] == 3
    assert [by_key(dear())[("processes_zombie",)] for _ in range(3)] == [2, 2, 3]


def test_file_descriptors_and_load(tmp_path: Path) -> None:
    write(tmp_path, "sys/fs/file-nr", "2000\t0\t100000\n")
    write(tmp_path, "loadavg", "0.50 1.25 2.00 3/400 1234\n")
    fds = by_key(FileDescriptorCheck(proc=str(tmp_path))())
    assert fds == {
        ("file_descriptors_allocated",): 2000,
        ("file_descriptors_limit",): 100000,
        ("file_descriptors_used_ratio",): pytest.approx(0.02),
    }
    loads = by_key(LoadCheck(proc=str(tmp_path))(), "period")
    assert loads == {("load_average", "1m"): 0.5, ("load_average", "5m"): 1.25,
                     ("load_average", "15m"): 2.0}  # fmt: skip


MOUNTS = r"""/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
sysfs /sys sysfs rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/vdb /srv/my\040data xfs rw 0 0
/dev/vdc /srv/my\040data ext4 ro 0 0
server:/export /mnt/nfs nfs4 rw 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/vdd /var/lib/docker/volumes ext4 rw 0 0
/dev/loop3 /snap/core/1 squashfs ro 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
"""


def test_mount_selection() -> None:
    mounts = parse_mounts(MOUNTS)
    assert mounts[4] == Mount("/dev/vdb", "/srv/my data", "xfs")
    selected = select_mounts(mounts, DEFAULT_EXCLUDED_FSTYPES, DEFAULT_EXCLUDED_MOUNTPOINTS)
    assert selected == [
        Mount("/dev/vda", "/", "ext4"),
        Mount("/dev/vdc", "/srv/my data", "ext4"),  # the later mount hides the earlier
        Mount("server:/export", "/mnt/nfs", "nfs4"),
    ]


def test_mount_table_rereads_a_plain_file_every_time(tmp_path: Path) -> None:
    write(tmp_path, "self/mounts", "/dev/vda / ext4 rw 0 0\n")
    table = MountTable(str(tmp_path / "self/mounts"))
    assert table() == [Mount("/dev/vda", "/", "ext4")]
    write(tmp_path, "self/mounts", "/dev/vda / ext4 rw 0 0\n/dev/vdb /srv xfs rw 0 0\n")
    assert table() == [Mount("/dev/vda", "/", "ext4"), Mount("/dev/vdb", "/srv", "xfs")]


def test_mount_table_of_this_process_reads_again_only_after_a_change() -> None:
    table = MountTable("/proc/self/mounts")
    first = table()
    assert first == parse_mounts(read_bytes("/proc/self/mounts").decode())
    assert table() is first  # no mount or unmount since: the kernel flagged nothing


def test_filesystems_replan_when_the_mounts_change() -> None:
    mounts = [Mount("/dev/vda", "/", "ext4")]
    check = FilesystemCheck(mounts=lambda: mounts)
    assert list(check.plan()) == ["filesystems:/"]
    mounts.append(Mount("/dev/vdb", "/srv", "xfs"))
    assert list(check.plan()) == ["filesystems:/", "filesystems:/srv"]
    mounts.pop(0)
    assert list(check.plan()) == ["filesystems:/srv"]


def test_root_is_kept_even_on_an_excluded_type() -> None:
    mounts = parse_mounts("overlay / overlay rw 0 0\n")
    selected = select_mounts(mounts, DEFAULT_EXCLUDED_FSTYPES, DEFAULT_EXCLUDED_MOUNTPOINTS)
    assert selected == [Mount("overlay", "/", "overlay")]


def statvfs(
    blocks: int, bfree: int, bavail: int, files: int, ffree: int, flag: int = 0
) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, flag, 255))


def test_filesystem_figures_follow_df() -> None:
    mount = Mount("/dev/vda", "/", "ext4")
    got = by_key(filesystem_samples(mount, statvfs(1000, 300, 250, 100, 40)), "mountpoint")
    assert got[("filesystem_size_bytes", "/")] == 1000 * 4096
    assert got[("filesystem_free_bytes", "/")] == 250 * 4096
    assert got[("filesystem_used_ratio", "/")] == pytest.approx(700 / 950)
    assert got[("filesystem_inodes_total", "/")] == 100
    assert got[("filesystem_inodes_free", "/")] == 40
    assert got[("filesystem_inodes_used_ratio", "/")] == pytest.approx(0.6)
    assert got[("filesystem_readonly", "/")] == 0


def test_filesystem_readonly_and_no_inode_table() -> None:
    mount = Mount("/dev/sdb", "/data", "btrfs")
    samples = filesystem_samples(mount, statvfs(10, 0, 0, 0, 0, flag=os.ST_RDONLY))
    got = by_key(samples, "mountpoint")
    assert got[("filesystem_readonly", "/data")] == 1
    assert got[("filesystem_used_ratio", "/data")] == 1.0
    assert ("filesystem_inodes_used_ratio", "/data") not in got
    assert samples[0].labels == {"mountpoint": "/data", "device": "/dev/sdb", "fstype": "btrfs"}


def test_temperatures_label_fallback_and_duplicates() -> None:
    def reader() -> dict[str, list[SimpleNamespace]]:
        return {
            "coretemp": [SimpleNamespace(label="Package id 0", current=48.0)],
            "nvme": [
                SimpleNamespace(label="Composite", current=35.0),
                SimpleNamespace(label="Composite", current=36.0),
            ],
            "acpitz": [
                SimpleNamespace(label="", current=27.8),
                SimpleNamespace(label="x", current=None),
            ],
        }

    got = by_key(TemperatureCheck(reader=reader, present=lambda: True)(), "sensor", "label")
    assert got == {
        ("temperature_celsius", "coretemp", "Package id 0"): 48.0,
        ("temperature_celsius", "nvme", "Composite"): 35.0,
        ("temperature_celsius", "nvme", "Composite #2"): 36.0,
        ("temperature_celsius", "acpitz", "temp1"): 27.8,
    }


def test_no_temperature_hardware_means_no_samples(tmp_path: Path) -> None:
    assert TemperatureCheck(reader=dict, present=lambda: True)() == []
    (tmp_path / "class/hwmon").mkdir(parents=True)
    (tmp_path / "class/thermal/cooling_device0").mkdir(parents=True)
    assert not sensors_present(str(tmp_path))  # nothing to ask psutil about
    (tmp_path / "class/thermal/thermal_zone0").mkdir()
    assert sensors_present(str(tmp_path))
    assert isinstance(TemperatureCheck()(), list)  # this host, whatever its sensors


def test_sensor_hardware_is_looked_up_once_per_refresh_period() -> None:
    now, lookups, reads = [1000.0], [], []

    def present() -> bool:
        lookups.append(now[0])
        return len(lookups) > 1

    def reader() -> dict[str, list[SimpleNamespace]]:
        reads.append(now[0])
        return {"acpitz": [SimpleNamespace(label="", current=27.8)]}

    check = TemperatureCheck(reader=reader, present=present, clock=lambda: now[0])
    assert check() == []
    now[0] += 59
    assert check() == []
    now[0] += 1
    assert by_key(check(), "sensor") == {("temperature_celsius", "acpitz"): 27.8}
    now[0] += 1
    check()
    assert lookups == [1000.0, 1060.0]
    assert reads == [1060.0, 1061.0]


def fake_adjtimex(state: int, status: int, offset: int) -> ClockCheck:
    def call(timex: Timex) -> int:
        assert timex.modes == 0
        timex.status, timex.offset, timex.maxerror, timex.esterror = status, offset, 16000, 250
        return state

    return ClockCheck(adjtimex=call)


def test_clock_synchronised_with_nanosecond_offset() -> None:
    got = by_key(fake_adjtimex(0, STA_NANO, -1_500_000)())
    assert got == {
        ("clock_synchronized",): 1,
        ("clock_offset_seconds",): pytest.approx(-0.0015),
        ("clock_max_error_seconds",): pytest.approx(0.016),
        ("clock_estimated_error_seconds",): pytest.approx(0.00025),
    }


@pytest.mark.parametrize(("state", "status"), [(TIME_ERROR, 0), (0, STA_UNSYNC)])
def test_clock_unsynchronised(state: int, status: int) -> None:
    got = by_key(fake_adjtimex(state, status, 1500)())
    assert got[("clock_synchronized",)] == 0
    assert got[("clock_offset_seconds",)] == pytest.approx(0.0015)  # microseconds


def test_real_adjtimex_is_read_only_and_answers() -> None:
    check = ClockCheck()
    before = by_key(check())
    after = by_key(check())
    assert before[("clock_synchronized",)] in (0, 1)
    assert after[("clock_max_error_seconds",)] >= 0
