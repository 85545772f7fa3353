"""``inspection_facts``: one JSON document of structured host facts for the inspection.

The collector's inspection analysis (collector/inspections/facts.py) reads this
document to find faults and to compare two inspections (drift), so every value is
structured, not prose. Schema ``aftercare.inspection-facts/1`` (docs/inspection-report.md):

    os, kernel, hostname, uptime_s, boot_ms, reboot_required (true/false/null),
    packages {manager, items {name: version}, count, truncated},
    security_updates {state "known"|"unknown", count, source},
    units {systemd, enabled [...], failed [...]},
    listening [{proto, address, port, process}], mounts [{mountpoint, device,
    fstype, size_bytes, used_bytes, inodes, inodes_used} | {..., error}],
    time_sync {synchronized, offset_ms}, kernel_log {readable, since_s,
    oom_kills, io_errors, oom_kills_since_boot, detail},
    config_files {path: {sha256} | {error}}, errors [...]

A fact that cannot be read is ``null`` (or "unknown") with the reason in ``errors``;
the builtin fails only on bad arguments. Every list is bounded, so the output is too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent.playbook.builtins.common import (
    MARGIN,
    Host,
    bounded,
    duration_arg,
    read_text,
    remaining,
    run_command,
    table,
    uptime,
)
from agent.playbook.builtins.kernel import kernel_records
from agent.playbook.builtins.packages import PACKAGE_QUERIES, package_lines
from agent.playbook.builtins.services import UNIT_NAME, failed_unit_names
from agent.playbook.errors import BuiltinArgumentError

__all__ = ["SCHEMA", "config_paths_arg", "inspection_facts"]

SCHEMA = "aftercare.inspection-facts/1"
MAX_PACKAGES = 20000
MAX_UNITS = 2000
MAX_SOCKETS = 500
MAX_MOUNTS = 200
MAX_CONFIG_FILES = 50
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_ERRORS = 50
_CONFIG_PATH = re.compile(r"/[A-Za-z0-9._@+/-]{1,1023}")
_OOM_KILL = re.compile(r"Killed process \d+")
_IO_ERROR = re.compile(
    r"(?i)\bI/O error\b|critical (?:medium|target) error|blk_update_request: .*error"
)
_SECURITY = re.compile(r"(\d+) (?:of these )?updates? (?:is a|are|is) (?:standard )?security")
_NOTHING = re.compile(r"^0 (?:updates|packages) can be (?:applied|updated)", re.M)
_PSEUDO_FS = frozenset(
    [
        "proc",
        "sysfs",
        "tmpfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "securityfs",
        "pstore",
        "bpf",
        "debugfs",
        "tracefs",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "rpc_pipefs",
        "nsfs",
        "overlay",
        "squashfs",
        "efivarfs",
        "ramfs",
        "selinuxfs",
        "fuse.gvfsd-fuse",
        "fuse.portal",
    ]
)
_NETWORK_FS = frozenset(["nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "glusterfs", "ceph"])
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


def inspection_facts(
    host: Host, deadline: float, /, *, since: str | float = "92d", config_files: str = ""
) -> bytes:
    """The facts document (one line of JSON) for the inspection's analysis and drift."""
    window = duration_arg("since", since, 1, 400 * 86400)
    paths = config_paths_arg(config_files)
    errors: list[str] = []
    up = uptime(host)
    facts: dict[str, Any] = {
        "schema": SCHEMA,
        "hostname": _hostname(host),
        "os": _os_name(host),
        "kernel": (read_text(host.proc / "sys" / "kernel" / "osrelease") or "").strip() or None,
        "uptime_s": up,
        "boot_ms": int((time.time() - up) * 1000) if up is not None else None,
        "reboot_required": (host.run / "reboot-required").exists(),
        "packages": _packages_fact(host, deadline, errors),
        "security_updates": _security_updates(host),
        "units": _units(host, deadline, errors),
        "listening": _listening(host, deadline),
        "mounts": _mounts(host, deadline),
        "time_sync": _time_sync(host, errors),
        "kernel_log": _kernel_log(host, deadline, window, up),
        "config_files": {path: _checksum(path) for path in paths},
    }
    facts["errors"] = errors[:MAX_ERRORS]
    return (json.dumps(facts, sort_keys=True, ensure_ascii=False) + "\n").encode()


def config_paths_arg(value: object) -> list[str]:
    """Comma-separated absolute paths of safe characters, no ``..``, at most 50."""
    if not isinstance(value, str):
        raise BuiltinArgumentError(f"config_files must be a string, got {value!r}")
    if not value.strip():
        return []
    paths = [part.strip() for part in value.split(",")]
    if len(paths) > MAX_CONFIG_FILES:
        raise BuiltinArgumentError(f"config_files: at most {MAX_CONFIG_FILES} paths")
    for path in paths:
        if not _CONFIG_PATH.fullmatch(path) or ".." in path.split("/"):
            raise BuiltinArgumentError(
                "config_files must be comma-separated absolute paths of letters, digits "
                f"and ._@+/- without '..', got {path!r}"
            )
    return sorted(set(paths))


# --- identity ---------------------------------------------------------------------------


def _hostname(host: Host) -> str:
    name = (read_text(host.proc / "sys" / "kernel" / "hostname") or "").strip()
    return name or socket.gethostname()


def _os_name(host: Host) -> str | None:
    text = read_text(host.etc / "os-release") or ""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    name = values.get("PRETTY_NAME", values.get("NAME", "")).strip().strip('"')
    return name or None


# --- packages ---------------------------------------------------------------------------


def _packages_fact(host: Host, deadline: float, errors: list[str]) -> dict[str, Any] | None:
    for program, options in PACKAGE_QUERIES:
        path = host.which(program)
        if path is None:
            continue
        result = run_command([path, *options], deadline - MARGIN)
        if result.returncode != 0:
            errors.append(f"{program}: exit status {result.returncode}")
        items: dict[str, str] = {}
        for line in package_lines(program, result.output.decode("utf-8", "replace")):
            name, version = _name_version(program, line)
            if name in items and items[name] != version:  # another architecture's build
                name = f"{name}:{line.split(' ')[2]}" if line.count(" ") >= 2 else ""
            if name and len(items) < MAX_PACKAGES:
                items[name] = version
        return {
            "manager": program.removesuffix("-query"),
            "items": items,
            "count": len(items),
            "truncated": result.truncated or len(items) >= MAX_PACKAGES,
        }
    errors.append("no package manager found (dpkg, rpm, apk, pacman)")
    return None


def _name_version(program: str, line: str) -> tuple[str, str]:
    """(name, version) of one ``package_lines`` line."""
    if program in ("dpkg-query", "rpm"):
        fields = line.split(" ")
        return (fields[0], fields[1]) if len(fields) >= 2 else ("", "")
    if program == "pacman":
        name, _, version = line.partition(" ")
        return name, version
    # apk info -v: name-version-rN, the version starts at the last "-" followed by a digit
    match = re.fullmatch(r"(.+?)-(\d[^-]*-r\d+)", line)
    return (match.group(1), match.group(2)) if match else (line, "")


def _security_updates(host: Host) -> dict[str, Any]:
    """apt's update-notifier stamp where present; "unknown" everywhere else."""
    stamp = host.var_lib / "update-notifier" / "updates-available"
    text = read_text(stamp)
    if text is None:
        return {"state": "unknown", "count": None, "source": ""}
    match = _SECURITY.search(text)
    if match is not None:
        count = int(match.group(1))
    elif _NOTHING.search(text) or not text.strip():
        count = 0
    else:
        return {"state": "unknown", "count": None, "source": str(stamp)}
    return {"state": "known", "count": count, "source": str(stamp)}


# --- units ------------------------------------------------------------------------------


def _units(host: Host, deadline: float, errors: list[str]) -> dict[str, Any]:
    systemctl = host.which("systemctl")
    if systemctl is None or not host.systemd_running():
        return {"systemd": False, "enabled": [], "failed": []}
    argv = [systemctl, "list-unit-files", "--state=enabled", "--no-legend", "--plain"]
    listing = run_command([*argv, "--no-pager"], deadline - MARGIN)
    if listing.returncode != 0:
        errors.append(f"systemctl list-unit-files: exit status {listing.returncode}")
    enabled = sorted(
        {
            fields[0]
            for line in listing.output.decode(errors="replace").splitlines()
            if (fields := line.split()) and re.fullmatch(UNIT_NAME, fields[0])
        }
    )
    failed, result = failed_unit_names(systemctl, deadline)
    if result.returncode != 0:
        errors.append(f"systemctl list-units: exit status {result.returncode}")
    return {"systemd": True, "enabled": enabled[:MAX_UNITS], "failed": sorted(failed)[:MAX_UNITS]}


# --- sockets ----------------------------------------------------------------------------


def _listening(host: Host, deadline: float) -> list[dict[str, Any]]:
    """Listening TCP and bound, unconnected UDP sockets from /proc/net, with their process."""
    found: dict[str, tuple[str, str, int]] = {}  # inode -> (proto, address, port)
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        wanted = _TCP_LISTEN if proto.startswith("tcp") else _UDP_UNCONNECTED
        for fields in table(host.proc / "net" / proto, skip_header=True):
            if len(fields) < 10 or fields[3] != wanted:
                continue
            decoded = _endpoint(fields[1])
            if decoded is not None:
                found.setdefault(fields[9], (proto, *decoded))
    owners = _socket_owners(host, set(found), deadline)
    rows = {(p, a, port, owners.get(inode, "?")) for inode, (p, a, port) in found.items()}
    ordered = sorted(rows, key=lambda row: (row[2], row[0], row[1], row[3]))
    return [
        {"proto": p, "address": a, "port": port, "process": name}
        for p, a, port, name in ordered[:MAX_SOCKETS]
    ]


def _endpoint(text: str) -> tuple[str, int] | None:
    address, _, port = text.partition(":")
    try:
        raw = bytes.fromhex(address)
        number = int(port, 16)
    except ValueError:
        return None
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(address, 16))), number
    if len(raw) == 16:
        words = (struct.pack("<I", int(address[i : i + 8], 16)) for i in range(0, 32, 8))
        return socket.inet_ntop(socket.AF_INET6, b"".join(words)), number
    return None


def _socket_owners(host: Host, inodes: set[str], deadline: float) -> dict[str, str]:
    """Socket inode -> the name of a process holding it (as far as we may look)."""
    owners: dict[str, str] = {}
    if not inodes:
        return owners
    for pid in _pids(host):
        if len(owners) == len(inodes) or remaining(deadline) < 2 * MARGIN:
            break
        fd_dir = host.proc / pid / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except OSError:
                continue
            inode = target[8:-1] if target.startswith("socket:[") else ""
            if inode in inodes and inode not in owners:
                comm = read_text(host.proc / pid / "comm")
                owners[inode] = comm.strip() if comm else "?"
    return owners


def _pids(host: Host) -> Iterator[str]:
    try:
        entries = os.listdir(host.proc)
    except OSError:
        return iter(())
    return iter(sorted((e for e in entries if e.isdigit()), key=int))


# --- filesystems ------------------------------------------------------------------------


def _mounts(host: Host, deadline: float) -> list[dict[str, Any]]:
    seen: set[str] = set()
    mounts: list[dict[str, Any]] = []
    for fields in table(host.proc / "mounts"):
        if len(fields) < 3 or len(mounts) >= MAX_MOUNTS:
            continue
        device, mountpoint, fstype = (_unescape(f) for f in fields[:3])
        if fstype in _PSEUDO_FS or mountpoint in seen:
            continue
        seen.add(mountpoint)
        entry: dict[str, Any] = {"mountpoint": mountpoint, "device": device, "fstype": fstype}
        if fstype in _NETWORK_FS:
            entry["error"] = "network filesystem: not measured"
        elif remaining(deadline) < 2 * MARGIN:
            entry["error"] = "time limit reached"
        else:
            entry.update(_usage(functools.partial(os.statvfs, mountpoint)))
        mounts.append(entry)
    return mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _usage(measure: Callable[[], os.statvfs_result]) -> dict[str, Any]:
    result = bounded(measure, 2.0)
    if result is None:
        return {"error": "statvfs did not answer within 2s"}
    if isinstance(result, BaseException):
        return {"error": f"statvfs failed: {result}"}
    size = result.f_blocks * result.f_frsize
    return {
        "size_bytes": size,
        "used_bytes": size - result.f_bfree * result.f_frsize,
        "inodes": result.f_files,
        "inodes_used": result.f_files - result.f_ffree,
    }


# --- time, kernel log -------------------------------------------------------------------


def _time_sync(host: Host, errors: list[str]) -> dict[str, Any]:
    from agent.sampler.clock import STA_NANO, STA_UNSYNC, TIME_ERROR, Timex, libc_adjtimex

    adjtimex = host.adjtimex or libc_adjtimex()
    timex = Timex(modes=0)
    try:
        state = adjtimex(timex)
    except OSError as exc:
        errors.append(f"adjtimex failed: {exc.strerror or exc}")
        return {"synchronized": None, "offset_ms": None}
    unit = 1e-9 if timex.status & STA_NANO else 1e-6
    return {
        "synchronized": state != TIME_ERROR and not timex.status & STA_UNSYNC,
        "offset_ms": round(timex.offset * unit * 1000, 3),
    }


def _kernel_log(host: Host, deadline: float, window: float, up: float | None) -> dict[str, Any]:
    counter = next(
        (int(f[1]) for f in table(host.proc / "vmstat") if len(f) == 2 and f[0] == "oom_kill"),
        None,
    )
    fact: dict[str, Any] = {
        "readable": False,
        "since_s": window,
        "oom_kills": None,
        "io_errors": None,
        "oom_kills_since_boot": counter,
        "detail": "",
    }
    cutoff = (up - window) if up is not None else None
    oom = io = 0
    try:
        for record in kernel_records(host, deadline - MARGIN):
            if cutoff is not None and record.seconds < cutoff:
                continue
            oom += bool(_OOM_KILL.search(record.text))
            io += bool(_IO_ERROR.search(record.text))
    except OSError as exc:
        fact["detail"] = f"{host.kmsg}: {exc.strerror or exc}"
        return fact
    if cutoff is None:
        fact["detail"] = "uptime unknown: the whole kernel log was counted"
    fact.update(readable=True, oom_kills=oom, io_errors=io)
    return fact


# --- configuration files ----------------------------------------------------------------


def _checksum(path: str) -> dict[str, str]:
    """``{"sha256": hex}`` of a regular, world-readable file, or ``{"error": why}``.

    Only files every local user may read are hashed: the checksum of a private file
    (a key, a password file) could confirm a guess of its content, and the paths
    come from the collector.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return {"error": exc.strerror or str(exc)}
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return {"error": "not a regular file"}
        if not info.st_mode & stat.S_IROTH:
            return {"error": "not world-readable: no checksum of a private file is reported"}
        if info.st_size > MAX_CONFIG_BYTES:
            return {"error": f"larger than {MAX_CONFIG_BYTES} bytes"}
        digest = hashlib.sha256()
        with os.fdopen(os.dup(fd), "rb") as file:
            for chunk in iter(lambda: file.read(65536), b""):
                digest.update(chunk)
        return {"sha256": digest.hexdigest()}
    except OSError as exc:
        return {"error": exc.strerror or str(exc)}
    finally:
        os.close(fd)
