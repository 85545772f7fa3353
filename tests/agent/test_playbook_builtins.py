"""The read-only builtin functions, on this host and on fixture snapshots of /proc."""

from __future__ import annotations

import ctypes
import os
import socket
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


def test_names_are_the_documented_set() -> None:
    assert set(BUILTIN_NAMES) == {
        "top_processes",
        "largest_directories",
        "deleted_open_files",
        "listening_sockets",
        "kernel_errors",
        "failed_units",
        "unit_journal",
        "pressure_stall",
        "dns_resolve",
        "gateway_reachability",
        "time_sync_status",
        "sensors",
        "smart_health",
        "package_inventory",
        "system_summary",
        "oom_history",
    }


def test_names_match_the_playbook_format_when_it_lists_them() -> None:
    import playbooks

    declared = getattr(playbooks, "BUILTIN_FUNCTIONS", None)
    if declared is None:
        try:
            from playbooks import model

            declared = getattr(model, "BUILTIN_FUNCTIONS", None)
        except ImportError:  # pragma: no cover
            declared = None
    if declared is None:
        pytest.skip("playbooks does not export BUILTIN_FUNCTIONS yet")
    assert set(declared) == set(BUILTIN_NAMES)


# --- processes ------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["cpu", "memory"])
def test_top_processes_lists_this_process(by: str) -> None:
    text = call("top_processes", by=by, limit="100")
    assert f" by {by};" in text.splitlines()[0]
    assert any(line.split()[0] == str(os.getpid()) for line in text.splitlines()[2:])


@pytest.mark.parametrize(
    ("args", "problem"), [({"by": "disk"}, "by must be"), ({"limit": 0}, "limit")]
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
        "ping is not installed; reporting the route only",
    ]


def test_gateway_reachability_pings_the_gateway(tmp_path: Path) -> None:
    write(tmp_path, "net/route", ROUTES)
    path = bin_dir(tmp_path, ping='echo "fake ping $*"')  # contacts nothing
    text = call("gateway_reachability", Host(proc=tmp_path, path=path), count=2)
    assert "fake ping -n -c 2 -W 2 192.0.2.1" in text


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


def test_kernel_records_parse_kmsg_format(tmp_path: Path) -> None:
    host = Host(kmsg=write(tmp_path, "kmsg", KMSG))
    records = list(kernel_records(host, time.monotonic() + 5))
    assert [(r.level, r.seconds) for r in records][:2] == [(6, 1.0), (3, 2.5)]
    assert len(records) == 6  # the continuation line is not a record


def test_kernel_errors_keeps_err_and_worse(tmp_path: Path) -> None:
    host = Host(kmsg=write(tmp_path, "kmsg", KMSG))
    lines = call("kernel_errors", host).splitlines()
    assert lines[0].startswith("last 3 kernel messages")
    assert "err: ata1: failed command" in lines[1]
    assert "emerg: Kernel panic" in lines[2]
    assert "warning" not in "\n".join(lines)


def test_oom_history(tmp_path: Path) -> None:
    write(tmp_path, "proc/vmstat", "nr_free_pages 1\noom_kill 2\n")
    host = Host(proc=tmp_path / "proc", kmsg=write(tmp_path, "kmsg", KMSG))
    lines = call("oom_history", host).splitlines()
    assert lines[0] == "OOM kills since boot (/proc/vmstat oom_kill): 2"
    assert lines[1].startswith("2 OOM-related")
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


def test_without_systemd(tmp_path: Path) -> None:
    host = Host(systemd_run_dir=tmp_path / "none", path=str(tmp_path))
    assert call("failed_units", host) == "systemd not available\n"
    assert call("unit_journal", host, unit="nginx.service") == "systemd not available\n"


def test_failed_units_and_journal_with_systemd(tmp_path: Path) -> None:
    path = bin_dir(
        tmp_path,
        systemctl='echo "nginx.service loaded failed failed nginx"',
        journalctl='echo "journal $*"',
    )
    host = Host(systemd_run_dir=tmp_path, path=path)
    assert (
        call("failed_units", host) == "1 failed units\nnginx.service loaded failed failed nginx\n"
    )
    text = call("unit_journal", host, unit="nginx.service", lines="20")
    assert text == "journal --no-pager --output=short-iso --lines=20 --unit=nginx.service\n"


@pytest.mark.parametrize("unit", ["-x", "a b", "$(id)", "x;y", ""])
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


def test_sensors_never_fails() -> None:
    assert call("sensors")


def test_smart_health(tmp_path: Path) -> None:
    assert "smartctl is not installed" in call("smart_health", Host(path=str(tmp_path)))
    path = bin_dir(
        tmp_path,
        smartctl='if [ "$1" = --scan ]; then echo "/dev/sda -d sat # /dev/sda";'
        ' echo "bad;dev -d x"; else echo "health of $*"; fi',
    )
    text = call("smart_health", Host(path=path))
    assert text == "=== /dev/sda (sat)\nhealth of -H -i -A -d sat /dev/sda\n"


def test_package_inventory(tmp_path: Path) -> None:
    assert "no package manager" in call("package_inventory", Host(path=str(tmp_path)))
    path = bin_dir(
        tmp_path, **{"dpkg-query": r'printf "ii \tzlib\t1.2\nrc \told\t0.1\nii \tbash\t5.2\n"'}
    )
    assert call("package_inventory", Host(path=path)) == (
        "2 packages installed (dpkg-query)\nbash 5.2\nzlib 1.2\n"
    )


def test_system_summary_on_this_host() -> None:
    text = call("system_summary")
    assert f"hostname: {socket.gethostname()}" in text
    assert os.uname().release in text
    assert "memory: " in text and "filesystems:" in text


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
