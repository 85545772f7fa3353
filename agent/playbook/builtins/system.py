"""Host-wide builtins: ``pressure_stall``, ``time_sync_status`` and ``system_summary``."""

from __future__ import annotations

import functools
import os
import socket
import time
from datetime import UTC, datetime

import psutil

from agent.playbook.builtins.common import (
    MARGIN,
    Host,
    bounded,
    command_text,
    human,
    lines_out,
    read_text,
    remaining,
    run_command,
    uptime,
)
from agent.playbook.errors import BuiltinError

# --- pressure -------------------------------------------------------------------------


def pressure_stall(host: Host, deadline: float, /) -> bytes:
    """Pressure stall information (cpu, memory, io, irq) and the load average."""
    lines = []
    for resource in ("cpu", "memory", "io", "irq"):
        text = read_text(host.proc / "pressure" / resource)
        if text is not None:
            lines += [f"{resource}:", *(f"  {line}" for line in text.splitlines())]
    if not lines:
        lines = ["pressure stall information not available (kernel without PSI, or psi=0)"]
    loadavg = read_text(host.proc / "loadavg")
    if loadavg is not None:
        lines.append("loadavg: " + loadavg.strip())
    return lines_out(lines)


# --- time -----------------------------------------------------------------------------

_TIME_DAEMONS = ("chronyd", "ntpd", "openntpd", "systemd-timesyncd", "ptp4l", "phc2sys")
_STATUS_FLAGS = {0x0001: "PLL", 0x0040: "UNSYNC", 0x0100: "PPSSIGNAL", 0x2000: "NANO"}
# daemon -> (program, arguments) that reports its view: stratum, reference, offset
_DAEMON_VIEWS = {
    "chronyd": ("chronyc", ("-n", "tracking")),
    "ntpd": ("ntpq", ("-pn",)),
    "systemd-timesyncd": ("timedatectl", ("timesync-status",)),
}


def time_sync_status(host: Host, deadline: float, /) -> bytes:
    """The kernel's clock discipline state (read-only adjtimex), the time daemons
    running, and the running daemon's own view (chronyc, ntpq or timedatectl)."""
    from agent.sampler.clock import STA_NANO, STA_UNSYNC, TIME_ERROR, Timex, libc_adjtimex

    adjtimex = host.adjtimex or libc_adjtimex()
    timex = Timex(modes=0)
    try:
        state = adjtimex(timex)
    except OSError as exc:
        raise BuiltinError(f"adjtimex failed: {exc.strerror or exc}") from exc
    synced = state != TIME_ERROR and not timex.status & STA_UNSYNC
    unit = 1e-9 if timex.status & STA_NANO else 1e-6
    flags = [name for bit, name in _STATUS_FLAGS.items() if timex.status & bit]
    running = sorted({p.info["name"] for p in psutil.process_iter(["name"])} & {*_TIME_DAEMONS})
    out = lines_out(
        [
            f"synchronized: {'yes' if synced else 'no'}",
            f"offset: {timex.offset * unit * 1000:.3f} ms",
            f"estimated error: {timex.esterror / 1000:.3f} ms",
            f"maximum error: {timex.maxerror / 1000:.3f} ms",
            f"status: 0x{timex.status:04x} {' '.join(flags)}".rstrip(),
            f"time daemons running: {', '.join(running) or 'none'}",
        ]
    )
    for daemon in running:
        program, options = _DAEMON_VIEWS.get(daemon, ("", ()))
        path = host.which(program) if program else None
        if path is not None and remaining(deadline) > 2 * MARGIN:
            out += f"$ {program} {' '.join(options)}\n".encode()
            out += command_text(run_command([path, *options], deadline - MARGIN), program)
    return out


# --- summary --------------------------------------------------------------------------

_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "glusterfs", "ceph")


def system_summary(host: Host, deadline: float, /) -> bytes:
    """OS, kernel, uptime and last boot, CPUs, memory, filesystems, virtualisation,
    and whether a reboot is pending."""
    uname = os.uname()
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    logical, physical = psutil.cpu_count() or "?", psutil.cpu_count(logical=False) or "?"
    lines = [
        f"hostname: {socket.gethostname()}",
        f"os: {_os_name(host)}",
        f"kernel: {uname.sysname} {uname.release} {uname.version} {uname.machine}",
        _uptime_line(host),
        f"virtualisation: {_virtualisation(host, deadline)}",
        f"reboot required: {_reboot_required(host)}",
        f"cpu: {logical} logical, {physical} physical; {_cpu_model(host)}",
        "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"memory: {human(memory.total)} total, {human(memory.available)} available",
        f"swap: {human(swap.total)} total, {human(swap.used)} used",
        "filesystems:",
        *_filesystems(deadline),
    ]
    return lines_out(lines)


def _os_name(host: Host) -> str:
    text = read_text(host.etc / "os-release") or ""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return values.get("PRETTY_NAME", values.get("NAME", "unknown")).strip().strip('"')


def _uptime_line(host: Host) -> str:
    seconds = uptime(host)
    if seconds is None:
        return "uptime: unknown"
    booted = datetime.fromtimestamp(time.time() - seconds, UTC)
    days, rest = divmod(int(seconds), 86400)
    return (
        f"uptime: {days}d {rest // 3600}h {rest % 3600 // 60}m (booted {booted:%Y-%m-%dT%H:%M:%SZ})"
    )


def _cpu_model(host: Host) -> str:
    for line in (read_text(host.proc / "cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()
    return "model unknown"


def _virtualisation(host: Host, deadline: float) -> str:
    detect = host.which("systemd-detect-virt")
    if detect is not None:
        result = run_command([detect], min(deadline - MARGIN, time.monotonic() + 5))
        answer = result.output.decode(errors="replace").strip()
        if answer:
            return answer
    for line in (read_text(host.proc / "cpuinfo") or "").splitlines():
        if line.startswith("flags") and " hypervisor" in line:
            return "virtual machine (hypervisor CPU flag)"
    return "none detected"


def _reboot_required(host: Host) -> str:
    marker = host.run / "reboot-required"
    if not marker.exists():
        return f"no indication ({marker} absent)"
    packages = (read_text(marker.with_name("reboot-required.pkgs")) or "").split()
    return "yes" + (f" (for {', '.join(packages[:20])})" if packages else "")


def _filesystems(deadline: float) -> list[str]:
    lines = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _NETWORK_FS:
            lines.append(f"  {part.mountpoint} ({part.fstype} from {part.device}): not measured")
            continue
        if remaining(deadline) < MARGIN:
            lines.append("  [time limit reached]")
            break
        measure = functools.partial(psutil.disk_usage, part.mountpoint)
        usage = bounded(measure, min(2.0, remaining(deadline)))
        if usage is None or isinstance(usage, BaseException):
            lines.append(f"  {part.mountpoint} ({part.fstype}): not measured")
            continue
        lines.append(
            f"  {part.mountpoint} ({part.fstype}): {human(usage.total)} total, "
            f"{human(usage.used)} used ({usage.percent:.0f}%)"
        )
    return lines
