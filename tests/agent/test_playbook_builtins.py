"""The read-only builtin functions, on this host and on fixture snapshots of /proc."""

from __future__ import annotations

import ctypes
import inspect
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.playbook import BuiltinArgumentError, BuiltinError
from agent.playbook.builtins import (
    BUILTIN_NAMES,
    Host,
    default_builtins,
    default_routes,
    kernel_records,
    run_command,
)

NOW_PLUS = 20.0


def call(builtin: str, host: Host | None = None, /, **args: object) -> str:
    function = default_builtins(host)[builtin]
    return function(time.monotonic() + NOW_PLUS, **args).decode()


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bin_dir(tmp_path: Path, **scripts: str) -> str:
    """A PATH directory holding the given shell scripts (test stand-ins for programs)."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for name, body in scripts.items():
        script = directory / name
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(0o755)
    return str(directory)


def test_names_and_arguments_are_the_playbook_format_contract() -> None:
    from playbooks.builtins import BUILTIN_ARGS, BUILTIN_FUNCTIONS

    assert set(BUILTIN_NAMES) == set(BUILTIN_FUNCTIONS)
    for name, function in default_builtins().items():
        parameters = inspect.signature(function).parameters.values()
        keywords = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert set(BUILTIN_ARGS[name]) <= keywords, name
        assert all(
            p.default is not inspect.Parameter.empty for p in parameters if p.name != "deadline"
        )


# --- processes ------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["cpu", "memory"])
def test_top_processes_lists_this_process(by: str) -> None:
    text = call("top_processes", by=by, limit="500", interval="200ms")
    assert f" by {by}" in text.splitlines()[0]
    assert any(line.split()[0] == str(os.getpid()) for line in text.splitlines()[2:])


def test_top_processes_keeps_a_forged_argv_on_one_row() -> None:
    """A process whose argv holds a newline cannot add a row of its own making."""
    forged = "\n    1 root           99.0  99.0    1.0G  forged"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", forged], stdin=subprocess.DEVNULL
    )
    try:
        text = call("top_processes", by="memory", limit="500")
    finally:
        child.kill()
        child.wait()
    rows = text.splitlines()[2:]
    assert all(row.split() and row.split()[0].isdigit() for row in rows)
    ours = [row for row in rows if row.split()[0] == str(child.pid)]
    assert len(ours) == 1 and "\\n" in ours[0] and "forged" in ours[0]
    assert not any(row.endswith("  forged") and row.split()[0] == "1" for row in rows)


@pytest.mark.parametrize(
    ("args", "problem"),
    [({"by": "disk"}, "by must be"), ({"limit": 0}, "limit"), ({"interval": "soon"}, "interval")],
)
def test_top_processes_validates_arguments(args: dict[str, object], problem: str) -> None:
    with pytest.raises(BuiltinArgumentError, match=problem):
        call("top_processes", **args)


# --- disks ----------------------------------------------------------------------------


def test_largest_directories_sums_subtrees_down_to_depth(tmp_path: Path) -> None:
    (tmp_path / "big" / "deep" / "deeper").mkdir(parents=True)
    (tmp_path / "small").mkdir()
    (tmp_path / "big" / "deep" / "deeper" / "f").write_bytes(os.urandom(300_000))
    (tmp_path / "small" / "f").write_bytes(os.urandom(10_000))
    text = call("largest_directories", path=str(tmp_path), limit=10, depth=2)
    rows = [line.split()[1] for line in text.splitlines()[2:-1]]
    assert rows[:3] == [str(tmp_path), f"{tmp_path}/big", f"{tmp_path}/big/deep"]
    assert f"{tmp_path}/small" in rows
    assert f"{tmp_path}/big/deep/deeper" not in rows  # below depth 2: counted in its parents
    assert text.splitlines()[-1].startswith("complete:")


def test_largest_directories_stops_at_the_deadline(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / str(i)).mkdir()
    function = default_builtins()["largest_directories"]
    text = function(time.monotonic(), path=str(tmp_path)).decode()
    assert "PARTIAL (time limit reached)" in text


@pytest.mark.parametrize("path", ["relative/path", "/proc", "/sys/kernel", "/no/such/dir"])
def test_largest_directories_refuses_bad_paths(path: str) -> None:
    with pytest.raises(BuiltinArgumentError):
        call("largest_directories", path=path)


def test_largest_directories_does_not_cross_filesystems() -> None:
    text = call("largest_directories", path="/", limit=100, depth=1)
    rows = [line.split()[1] for line in text.splitlines()[2:-1]]
    assert "/proc" not in rows and "/sys" not in rows


def test_deleted_open_files_finds_a_deleted_file_held_open(tmp_path: Path) -> None:
    path = tmp_path / "ghost.log"
    with path.open("wb") as held:
        held.write(b"x" * 2_000_000)
        held.flush()
        path.unlink()
        text = call("deleted_open_files")
    lines = [line for line in text.splitlines() if f"{path} (deleted)" in line]
    assert len(lines) == 1
    assert lines[0].split()[1] == str(os.getpid())
    assert lines[0].split()[0] == "1.9M"


# --- network --------------------------------------------------------------------------


def test_listening_sockets_shows_a_listener_with_its_process() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        text = call("listening_sockets")
    line = next(line for line in text.splitlines() if f"127.0.0.1:{port} " in line)
    assert line.split()[0] == "tcp"
    assert line.split()[2] == str(os.getpid())


def test_dns_resolve_localhost(tmp_path: Path) -> None:
    write(tmp_path, "resolv.conf", "# comment\nnameserver 192.0.2.53\nsearch example.com\n")
    text = call("dns_resolve", Host(etc=tmp_path), name="localhost")
    assert "  nameserver 192.0.2.53" in text
    assert "127.0.0.1" in text or "::1" in text


@pytest.mark.parametrize("name", ["a b", "$(id)", "-x", "a" * 300, "host;rm"])
def test_dns_resolve_refuses_names_that_are_not_host_names(name: str) -> None:
    with pytest.raises(BuiltinArgumentError):
        call("dns_resolve", name=name)


ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
ROUTES6 = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
)


ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
192.0.2.1        0x1         0x2         52:54:00:12:34:56     *        eth0
"""


def test_default_routes_from_the_route_tables(tmp_path: Path) -> None:
    write(tmp_path, "net/route", ROUTES)
    write(tmp_path, "net/ipv6_route", ROUTES6)
    assert default_routes(Host(proc=tmp_path)) == [
        ("192.0.2.1", "eth0", 100),
        ("fe80::1", "eth0", 1024),
    ]


def test_gateway_reachability_without_ping_reports_the_route_only(tmp_path: Path) -> None:
    write(tmp_path, "net/route", ROUTES)
    text = call("gateway_reachability", Host(proc=tmp_path, path=str(tmp_path / "nothing")))
    assert text.splitlines() == [
        "default route via 192.0.2.1 dev eth0 metric 100",
        "  neighbour: no entry in the ARP table",
        "ping is not installed; reporting the route and neighbour state only",
    ]


def test_gateway_neighbour_state_from_the_arp_table(tmp_path: Path) -> None:
    write(tmp_path, "net/route", ROUTES)
    write(tmp_path, "net/arp", ARP)
    text = call("gateway_reachability", Host(proc=tmp_path, path=str(tmp_path / "nothing")))
    assert "  neighbour: 52:54:00:12:34:56 (complete)" in text.splitlines()


def test_gateway_reachability_pings_the_gateway(tmp_path: Path) -> None:
    write(tmp_path, "net/route", ROUTES)
    path = bin_dir(tmp_path, ping='echo "fake ping $*"')  # contacts nothing
    text = call("gateway_reachability", Host(proc=tmp_path, path=path), count=2)
    assert "fake ping -n -c 2 -W 1 192.0.2.1" in text.splitlines()


def test_no_default_route(tmp_path: Path) -> None:
    write(tmp_path, "net/route", ROUTES.splitlines()[0] + "\n")
    assert call("gateway_reachability", Host(proc=tmp_path)) == "no default route\n"


# --- kernel log -----------------------------------------------------------------------

KMSG = """\
6,1,1000000,-;Linux version 6.1
3,2,2500000,-;ata1: failed command: READ FPDMA QUEUED
 SUBSYSTEM=scsi
4,3,3000000,-;just a warning
0,4,4000000,c;Kernel panic - not syncing
6,5,5000000,-;oom-kill:constraint=CONSTRAINT_NONE,task=java,pid=4242
3,6,5100000,-;Out of memory: Killed process 4242 (java) total-vm:1234kB
"""


HARDWARE = """\
4,7,5200000,-;mce: [Hardware Error]: Machine check events logged
3,8,5300000,-;blk_update_request: I/O error, dev sda, sector 2048
3,9,5400000,-;EXT4-fs error (device sda2): bad inode
"""


def kernel_host(tmp_path: Path, log: str = KMSG, up: float = 10.0) -> Host:
    write(tmp_path, "proc/uptime", f"{up} 1.0\n")
    write(tmp_path, "proc/vmstat", "nr_free_pages 1\noom_kill 2\n")
    return Host(proc=tmp_path / "proc", kmsg=write(tmp_path, "kmsg", log))


def test_kernel_records_parse_kmsg_format(tmp_path: Path) -> None:
    records = list(kernel_records(kernel_host(tmp_path), time.monotonic() + 5))
    assert [(r.level, r.seconds) for r in records][:2] == [(6, 1.0), (3, 2.5)]
    assert len(records) == 6  # the continuation line is not a record


def test_kernel_errors_keeps_err_and_worse(tmp_path: Path) -> None:
    lines = call("kernel_errors", kernel_host(tmp_path)).splitlines()
    assert lines[0] == "3 kernel messages at level err or worse in the last 1d, newest 200 kept"
    assert "err: ata1: failed command" in lines[1]
    assert "emerg: Kernel panic" in lines[2]
    assert "Out of memory" in lines[3]
    assert "warning" not in "\n".join(lines)


def test_kernel_errors_since_and_limit(tmp_path: Path) -> None:
    host = kernel_host(tmp_path, up=7.0)  # records at 2.5s and 4s of uptime are older than 2s
    lines = call("kernel_errors", host, since="2s", limit=5).splitlines()
    assert lines[0].startswith("1 kernel messages") and "Out of memory" in lines[1]
    lines = call("kernel_errors", host, limit="1").splitlines()
    assert len(lines) == 2 and "Out of memory" in lines[1]  # the newest is kept


def test_kernel_errors_hardware_kind(tmp_path: Path) -> None:
    lines = call("kernel_errors", kernel_host(tmp_path, KMSG + HARDWARE), kind="hardware")
    found = lines.splitlines()[1:]
    assert [line.split(": ", 1)[1] for line in found] == [
        "ata1: failed command: READ FPDMA QUEUED",
        "mce: [Hardware Error]: Machine check events logged",
        "blk_update_request: I/O error, dev sda, sector 2048",
    ]


@pytest.mark.parametrize(
    "args", [{"since": "yesterday"}, {"since": "1000d"}, {"kind": "soft"}, {"limit": -1}]
)
def test_kernel_errors_validates_arguments(tmp_path: Path, args: dict[str, object]) -> None:
    with pytest.raises(BuiltinArgumentError):
        call("kernel_errors", kernel_host(tmp_path), **args)


def test_oom_history(tmp_path: Path) -> None:
    lines = call("oom_history", kernel_host(tmp_path)).splitlines()
    assert lines[0] == "OOM kills since boot (/proc/vmstat oom_kill): 2"
    assert lines[1] == "2 kernel OOM killer messages in the last 7d, newest 20 kept"
    assert "task=java" in lines[2] and "Killed process 4242" in lines[3]


def test_kernel_log_falls_back_to_dmesg(tmp_path: Path) -> None:
    path = bin_dir(tmp_path, dmesg='echo "[ 1.0] dmesg said $*"')
    host = Host(kmsg=tmp_path / "missing", path=path)
    text = call("kernel_errors", host)
    assert "dmesg said --level=emerg,alert,crit,err" in text


def test_unreadable_kernel_log_without_dmesg_is_an_error(tmp_path: Path) -> None:
    host = Host(kmsg=tmp_path / "missing", path=str(tmp_path))
    with pytest.raises(BuiltinError, match="dmesg is not installed"):
        call("kernel_errors", host)


# --- services -------------------------------------------------------------------------

SYSTEMCTL = """\
case "$1" in
  list-units) echo "● nginx.service loaded failed failed nginx"; echo "bad;name loaded failed";;
  show) printf 'Id=nginx.service\\nActiveState=failed\\nResult=exit-code\\n'
        printf 'InactiveEnterTimestamp=Sun 2026-11-22 01:02:11 UTC\\nExecMainStatus=1\\n';;
esac
"""


def systemd_host(tmp_path: Path) -> Host:
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    path = bin_dir(tmp_path, systemctl=SYSTEMCTL, journalctl='echo "journal $*"')
    return Host(run=tmp_path / "run", path=path)


def test_without_systemd(tmp_path: Path) -> None:
    host = Host(run=tmp_path, path=str(tmp_path))
    assert call("failed_units", host) == "systemd not available\n"
    assert call("unit_journal", host, unit="nginx.service") == "systemd not available\n"


def test_failed_units_with_result_since_and_status(tmp_path: Path) -> None:
    assert call("failed_units", systemd_host(tmp_path)).splitlines() == [
        "1 failed units",
        "nginx.service  failed  result=exit-code  since Sun 2026-11-22 01:02:11 UTC  status=1",
    ]


def test_unit_journal_of_one_unit_and_of_every_failed_unit(tmp_path: Path) -> None:
    host = systemd_host(tmp_path)
    text = call("unit_journal", host, unit="nginx.service", lines="20", since="1h")
    assert text.startswith("journal --no-pager --output=short-iso --lines=20 --since=")
    assert text.endswith(" --unit=nginx.service\n")
    lines = call("unit_journal", host).splitlines()
    assert lines[0] == "-- nginx.service --"
    assert "--lines=100" in lines[1]


@pytest.mark.parametrize("unit", ["-x", "a b", "$(id)", "x;y", "../x\n"])
def test_unit_journal_refuses_bad_unit_names(unit: str) -> None:
    with pytest.raises(BuiltinArgumentError):
        call("unit_journal", unit=unit)


# --- pressure, clock, hardware, inventory, summary ------------------------------------


def test_pressure_stall(tmp_path: Path) -> None:
    write(tmp_path, "pressure/cpu", "some avg10=1.00 avg60=0.50 avg300=0.10 total=123\n")
    write(tmp_path, "loadavg", "0.50 0.40 0.30 1/100 42\n")
    text = call("pressure_stall", Host(proc=tmp_path))
    assert text.splitlines() == [
        "cpu:",
        "  some avg10=1.00 avg60=0.50 avg300=0.10 total=123",
        "loadavg: 0.50 0.40 0.30 1/100 42",
    ]
    assert "not available" in call("pressure_stall", Host(proc=tmp_path / "none"))


def test_time_sync_status_from_adjtimex() -> None:
    def adjtimex(timex: ctypes.Structure) -> int:
        timex.status = 0x0001
        timex.offset = 1500  # microseconds
        timex.esterror = 2000
        timex.maxerror = 16000
        return 0

    lines = call("time_sync_status", Host(adjtimex=adjtimex)).splitlines()
    assert lines[:5] == [
        "synchronized: yes",
        "offset: 1.500 ms",
        "estimated error: 2.000 ms",
        "maximum error: 16.000 ms",
        "status: 0x0001 PLL",
    ]


def test_time_sync_status_on_this_host() -> None:
    assert call("time_sync_status").startswith("synchronized: ")


def test_time_sync_status_asks_the_running_daemon(tmp_path: Path) -> None:
    text = call("time_sync_status", Host(path=bin_dir(tmp_path, chronyc='echo "chrony $*"')))
    assert "chrony" not in text  # no chronyd runs here: chronyc is not asked


def test_sensors_never_fails() -> None:
    assert call("sensors")


def test_sensors_reads_hwmon_voltages(tmp_path: Path) -> None:
    write(tmp_path, "class/hwmon/hwmon0/name", "nct6775\n")
    write(tmp_path, "class/hwmon/hwmon0/in0_input", "1032\n")
    write(tmp_path, "class/hwmon/hwmon0/in0_label", "Vcore\n")
    write(tmp_path, "class/hwmon/hwmon0/in1_input", "3312\n")
    lines = call("sensors", Host(sys=tmp_path)).splitlines()
    assert "voltage nct6775/Vcore: 1.032 V" in lines
    assert "voltage nct6775/in1: 3.312 V" in lines


SMARTCTL = (
    'if [ "$1" = --scan ]; then echo "/dev/sda -d sat # /dev/sda"; echo "bad;dev -d x";'
    ' else echo "health of $*"; fi'
)


def test_smart_health_of_every_disk_or_one(tmp_path: Path) -> None:
    assert "smartctl is not installed" in call("smart_health", Host(path=str(tmp_path)))
    host = Host(path=bin_dir(tmp_path, smartctl=SMARTCTL))
    assert call("smart_health", host) == "=== /dev/sda (sat)\nhealth of -H -i -A -d sat /dev/sda\n"
    one = call("smart_health", host, device="/dev/nvme0n1")
    assert one == "=== /dev/nvme0n1\nhealth of -H -i -A /dev/nvme0n1\n"
    with pytest.raises(BuiltinArgumentError):
        call("smart_health", host, device="/dev/../etc/shadow -x")


DPKG_QUERY = r'printf "ii \tzlib\t1.2\tamd64\nrc \told\t0.1\tall\nii \tbash\t5.2\tamd64\n"'
DPKG_LOG = """\
2026-11-01 10:00:00 startup archives unpack
2026-11-01 10:00:01 install zlib:amd64 <none> 1.2
2026-11-01 10:00:02 status installed zlib:amd64 1.2
2026-11-02 09:00:00 upgrade bash:amd64 5.1 5.2
"""


def test_package_inventory_and_recent_changes(tmp_path: Path) -> None:
    assert "no package manager" in call("package_inventory", Host(path=str(tmp_path)))
    write(tmp_path, "log/dpkg.log", DPKG_LOG)
    host = Host(path=bin_dir(tmp_path, **{"dpkg-query": DPKG_QUERY}), var_log=tmp_path / "log")
    assert call("package_inventory", host).splitlines() == [
        "2 packages installed (dpkg-query)",
        "bash 5.2 amd64",
        "zlib 1.2 amd64",
        f"last 2 package changes ({tmp_path}/log/dpkg.log):",
        "2026-11-01 10:00:01 install zlib:amd64 <none> 1.2",
        "2026-11-02 09:00:00 upgrade bash:amd64 5.1 5.2",
    ]
    assert len(call("package_inventory", host, recent=0).splitlines()) == 3


def test_system_summary_on_this_host() -> None:
    text = call("system_summary")
    assert f"hostname: {socket.gethostname()}" in text
    assert os.uname().release in text
    for label in ("uptime: ", "virtualisation: ", "reboot required: ", "memory: ", "filesystems:"):
        assert label in text


def test_system_summary_reboot_required(tmp_path: Path) -> None:
    write(tmp_path, "reboot-required", "*** System restart required ***\n")
    write(tmp_path, "reboot-required.pkgs", "linux-image-6.1\nlibc6\n")
    text = call("system_summary", Host(run=tmp_path))
    assert "reboot required: yes (for linux-image-6.1, libc6)" in text


# --- commands -------------------------------------------------------------------------


def test_run_command_kills_the_group_at_the_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_command(["sh", "-c", "sleep 1000 & sleep 1000"], time.monotonic() + 0.3)
    assert result.returncode is None
    assert time.monotonic() - started < 3


def test_run_command_caps_output() -> None:
    result = run_command(["yes"], time.monotonic() + 10, limit=1000)
    assert result.truncated and len(result.output) == 1000


def test_run_command_scrubs_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERCARE_LEAK", "x")
    output = run_command(["env"], time.monotonic() + 5).output.decode()
    assert "AFTERCARE_LEAK" not in output
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in output
