"""Hardware builtins: ``sensors`` (hwmon via psutil and /sys) and ``smart_health`` (smartctl)."""

from __future__ import annotations

import re

import psutil

from agent.playbook.builtins.common import (
    MARGIN,
    Host,
    command_text,
    lines_out,
    pattern_arg,
    read_text,
    remaining,
    run_command,
)

_DEVICE = r"/dev/[A-Za-z0-9_][A-Za-z0-9/_.:-]{0,63}"
_DEVICE_TYPE = r"[A-Za-z0-9,_+-]{1,32}"
_MAX_DEVICES = 32


def sensors(host: Host, deadline: float, /) -> bytes:
    """Temperatures (with thresholds), fan speeds, voltages and battery."""
    lines = []
    for chip, readings in sorted(psutil.sensors_temperatures().items()):
        for reading in readings:
            limits = ""
            if reading.high and reading.critical:
                limits = f" (high {reading.high:.0f}, critical {reading.critical:.0f})"
            label = reading.label or chip
            lines.append(f"temperature {chip}/{label}: {reading.current:.1f} C{limits}")
    for chip, fans in sorted(psutil.sensors_fans().items()):
        lines += [f"fan {chip}/{fan.label or chip}: {fan.current} RPM" for fan in fans]
    lines += _voltages(host)
    battery = psutil.sensors_battery()
    if battery is not None:
        plugged = "on AC" if battery.power_plugged else "on battery"
        lines.append(f"battery: {battery.percent:.0f}% {plugged}")
    return lines_out(lines or ["no hardware sensors exposed by the kernel"])


def _voltages(host: Host) -> list[str]:
    """``in*_input`` (millivolts) of each hwmon chip, with labels where the chip has them."""
    lines = []
    for chip in sorted((host.sys / "class" / "hwmon").glob("hwmon*")):
        name = (read_text(chip / "name") or chip.name).strip()
        for sensor in sorted(chip.glob("in*_input")):
            value = (read_text(sensor) or "").strip()
            if not value.lstrip("-").isdigit():
                continue
            label_file = sensor.with_name(sensor.name.replace("_input", "_label"))
            label = (read_text(label_file) or sensor.name.removesuffix("_input")).strip()
            lines.append(f"voltage {name}/{label}: {int(value) / 1000:.3f} V")
    return lines


def smart_health(host: Host, deadline: float, /, *, device: str = "") -> bytes:
    """SMART health, identity and attributes of ``device``, or of every disk smartctl finds."""
    if device:
        pattern_arg("device", device, _DEVICE, "a device path such as /dev/sda")
    smartctl = host.which("smartctl")
    if smartctl is None:
        return b"smartctl is not installed (package smartmontools); SMART health not checked\n"
    devices: list[tuple[str, str | None]] = [(device, None)]
    if not device:
        scan = run_command([smartctl, "--scan"], deadline - MARGIN, limit=64 * 1024)
        devices = [*_scanned(scan.output.decode(errors="replace"))][:_MAX_DEVICES]
        if not devices:
            return b"smartctl found no devices\n" + command_text(scan, "smartctl --scan")
    out = b""
    for path, kind in devices:
        if remaining(deadline) < 1:
            return out + b"[time limit reached]\n"
        out += (f"=== {path} ({kind})\n" if kind else f"=== {path}\n").encode()
        argv = [smartctl, "-H", "-i", "-A", *(["-d", kind] if kind else []), path]
        out += command_text(run_command(argv, deadline - MARGIN, limit=64 * 1024), "smartctl")
    return out


def _scanned(scan: str) -> list[tuple[str, str | None]]:
    """``(device, type)`` from ``smartctl --scan`` lines such as ``/dev/sda -d sat # ...``."""
    devices: list[tuple[str, str | None]] = []
    for line in scan.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 3 or fields[1] != "-d":
            continue
        if re.fullmatch(_DEVICE, fields[0]) and re.fullmatch(_DEVICE_TYPE, fields[2]):
            devices.append((fields[0], fields[2]))
    return devices
