"""``inspection_facts`` on a fixture snapshot of /proc, /etc, /run and stand-in programs."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent.playbook import BuiltinArgumentError
from agent.playbook.builtins import Host, default_builtins
from collector.inspections.facts import HostFacts, read_facts
from tests.agent.test_playbook_builtins import bin_dir, write

DPKG_QUERY = (
    r'printf "ii \tzlib1g\t1:1.2.13\tamd64\nrc \told\t0.1\tall\nii \tbash\t5.2\tamd64\n'
    r'ii \tlibc6\t2.36-9\tamd64\nii \tlibc6\t2.36-8\ti386\nii \tlibc6\t2.36-9\tarmhf\n"'
)
SYSTEMCTL = """\
case "$1" in
  list-unit-files) printf 'ssh.service enabled enabled\\nnginx.service enabled enabled\\n' ;;
  list-units) printf '● backup.service loaded failed failed Nightly backup\\n' ;;
esac"""
KMSG = """\
6,1,1000000,-;Linux version 6.1.0
3,2,2000000,-;blk_update_request: I/O error, dev sda, sector 2048
3,3,8000000,-;Buffer I/O error on dev sda1, logical block 0
3,4,8500000,-;Out of memory: Killed process 4242 (java) total-vm:1234kB
6,5,8600000,-;oom-kill:constraint=CONSTRAINT_NONE,task=java,pid=4242
"""
# /proc/net/tcp: 0.0.0.0:22 LISTEN (inode 1001), 127.0.0.1:5432 LISTEN (1002), an
# established connection (not listed); tcp6 [::]:80 LISTEN (1003); udp 0.0.0.0:123 (1004)
ZERO6 = "0" * 32
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0   0 1001 1
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000 105   0 1002 1
   2: 0100007F:1538 0100007F:D3A2 01 00000000:00000000 00:00000000 00000000 105   0 1005 1
"""
TCP6 = f"""\
  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt uid timeout inode
   0: {ZERO6}:0050 {ZERO6}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1003 1
"""
UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:007B 00000000:0000 07 00000000:00000000 00:00000000 00000000   0   0 1004 2 0 0
"""
MOUNTS = """\
/dev/root / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
tmpfs /run tmpfs rw 0 0
server:/export /mnt/with\\040space nfs4 rw 0 0
/dev/sdb1 /nonexistent-mount-for-test xfs rw 0 0
"""


def synced(timex: ctypes.Structure) -> int:
    timex.status = 0x0001
    timex.offset = 1500
    return 0


def fixture_host(tmp_path: Path, **changes: Any) -> Host:
    proc = tmp_path / "proc"
    write(tmp_path, "proc/uptime", "10.0 1.0\n")
    write(tmp_path, "proc/vmstat", "oom_kill 3\n")
    write(tmp_path, "proc/sys/kernel/osrelease", "6.1.0-26-amd64\n")
    write(tmp_path, "proc/sys/kernel/hostname", "web-1\n")
    write(tmp_path, "proc/net/tcp", TCP)
    write(tmp_path, "proc/net/tcp6", TCP6)
    write(tmp_path, "proc/net/udp", UDP)
    write(tmp_path, "proc/mounts", MOUNTS)
    for pid, comm, inodes in (("100", "sshd", ["1001"]), ("200", "postgres", ["1002", "1005"])):
        write(tmp_path, f"proc/{pid}/comm", comm + "\n")
        (proc / pid / "fd").mkdir(parents=True)
        for fd, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", proc / pid / "fd" / str(fd + 3))
        os.symlink("/dev/null", proc / pid / "fd" / "0")
    write(tmp_path, "etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    write(tmp_path, "run/reboot-required", "*** System restart required ***\n")
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    write(
        tmp_path,
        "var/lib/update-notifier/updates-available",
        "\n7 updates can be applied immediately.\n3 of these updates are standard security "
        "updates.\nTo see these additional updates run: apt list --upgradable\n",
    )
    values: dict[str, Any] = {
        "proc": proc,
        "etc": tmp_path / "etc",
        "run": tmp_path / "run",
        "var_lib": tmp_path / "var" / "lib",
        "kmsg": write(tmp_path, "kmsg", KMSG),
        "path": bin_dir(tmp_path, **{"dpkg-query": DPKG_QUERY, "systemctl": SYSTEMCTL}),
        "adjtimex": synced,
    }
    values.update(changes)
    return Host(**values)


def facts(host: Host, **args: object) -> dict[str, Any]:
    output = default_builtins(host)["inspection_facts"](time.monotonic() + 20, **args)
    assert output.endswith(b"\n") and output.count(b"\n") == 1, "one line of JSON"
    document: dict[str, Any] = json.loads(output)
    return document


def test_facts_from_a_fixture_host(tmp_path: Path) -> None:
    config = write(tmp_path, "etc/app.conf", "key = value\n")
    config.chmod(0o644)
    document = facts(fixture_host(tmp_path), since="7s", config_files=str(config))
    assert document["schema"] == "aftercare.inspection-facts/1"
    assert (document["hostname"], document["kernel"]) == ("web-1", "6.1.0-26-amd64")
    assert document["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert document["uptime_s"] == 10.0 and document["reboot_required"] is True
    assert document["packages"]["manager"] == "dpkg"
    assert document["packages"]["items"] == {
        "zlib1g": "1:1.2.13",
        "bash": "5.2",
        "libc6": "2.36-9",
        "libc6:i386": "2.36-8",  # another architecture at another version is kept apart
    }
    assert document["security_updates"]["state"] == "known"
    assert document["security_updates"]["count"] == 3
    assert document["units"] == {
        "systemd": True,
        "enabled": ["nginx.service", "ssh.service"],
        "failed": ["backup.service"],
    }
    assert document["listening"] == [
        {"proto": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd"},
        {"proto": "tcp6", "address": "::", "port": 80, "process": "?"},
        {"proto": "udp", "address": "0.0.0.0", "port": 123, "process": "?"},
        {"proto": "tcp", "address": "127.0.0.1", "port": 5432, "process": "postgres"},
    ]
    mounts = {m["mountpoint"]: m for m in document["mounts"]}
    assert set(mounts) == {"/", "/mnt/with space", "/nonexistent-mount-for-test"}
    assert mounts["/"]["size_bytes"] > 0 and mounts["/"]["used_bytes"] > 0
    assert mounts["/mnt/with space"]["error"] == "network filesystem: not measured"
    assert "statvfs failed" in mounts["/nonexistent-mount-for-test"]["error"]
    assert document["time_sync"] == {"synchronized": True, "offset_ms": 1.5}
    # since=7s with uptime 10s: only records from 3s on count (one I/O error, one OOM kill)
    kernel_log = document["kernel_log"]
    assert (kernel_log["readable"], kernel_log["io_errors"], kernel_log["oom_kills"]) == (
        True,
        1,
        1,
    )
    assert kernel_log["oom_kills_since_boot"] == 3
    digest = hashlib.sha256(b"key = value\n").hexdigest()
    assert document["config_files"] == {str(config): {"sha256": digest}}
    # the collector reads exactly this document
    parsed = read_facts({"facts": json.dumps(document)})
    assert isinstance(parsed, HostFacts) and parsed.security_updates == 3
    assert parsed.failed_units == ("backup.service",)


def test_unreadable_or_private_config_files_are_recorded_not_fatal(tmp_path: Path) -> None:
    directory = tmp_path / "etc" / "conf.d"
    directory.mkdir(parents=True)
    missing = tmp_path / "etc" / "missing.conf"
    private = write(tmp_path, "etc/secret.key", "1234\n")
    private.chmod(0o640)
    paths = f"{directory},{missing},{private}"
    document = facts(fixture_host(tmp_path), config_files=paths)
    assert document["config_files"] == {
        str(directory): {"error": "not a regular file"},
        str(missing): {"error": "No such file or directory"},
        str(private): {"error": "not world-readable: no checksum of a private file is reported"},
    }


@pytest.mark.parametrize(
    "value",
    ["etc/passwd", "/etc/../etc/shadow", "/etc/a b", "/etc/x;rm", ",".join(["/a"] * 51), "/$HOME"],
)
def test_config_files_must_be_safe_absolute_paths(tmp_path: Path, value: str) -> None:
    with pytest.raises(BuiltinArgumentError, match="config_files"):
        facts(fixture_host(tmp_path), config_files=value)


def test_missing_sources_give_unknown_not_failure(tmp_path: Path) -> None:
    def broken(timex: ctypes.Structure) -> int:
        raise OSError(1, "Operation not permitted")

    host = Host(
        proc=tmp_path / "none",
        etc=tmp_path / "none",
        run=tmp_path / "none",
        var_lib=tmp_path / "none",
        kmsg=tmp_path / "none" / "kmsg",
        path=str(tmp_path / "empty-bin"),
        adjtimex=broken,
    )
    document = facts(host)
    assert document["packages"] is None
    assert document["security_updates"] == {"state": "unknown", "count": None, "source": ""}
    assert document["units"]["systemd"] is False
    assert document["listening"] == [] and document["mounts"] == []
    assert document["time_sync"] == {"synchronized": None, "offset_ms": None}
    assert document["kernel_log"]["readable"] is False
    assert document["kernel_log"]["oom_kills"] is None
    assert any("no package manager" in error for error in document["errors"])
    assert any("adjtimex" in error for error in document["errors"])


def test_security_updates_unknown_when_the_stamp_says_nothing_usable(tmp_path: Path) -> None:
    host = fixture_host(tmp_path)
    write(tmp_path, "var/lib/update-notifier/updates-available", "something else entirely\n")
    assert facts(host)["security_updates"]["state"] == "unknown"
    write(
        tmp_path,
        "var/lib/update-notifier/updates-available",
        "0 updates can be applied immediately.\n",
    )
    assert facts(host)["security_updates"] == {
        "state": "known",
        "count": 0,
        "source": str(tmp_path / "var/lib/update-notifier/updates-available"),
    }


def test_facts_on_this_host_are_bounded_json() -> None:
    output = default_builtins()["inspection_facts"](time.monotonic() + 60)
    assert len(output) < 8 * 1024 * 1024
    assert isinstance(read_facts({"facts": output.decode()}), HostFacts)
