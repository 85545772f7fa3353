"""The host facts of an inspection, read defensively from the "facts" step's JSON output.

The agent's ``inspection_facts`` builtin prints one JSON document (schema
``aftercare.inspection-facts/1``, docs/inspection-report.md). ``read_facts`` finds
it in the step's text and turns it into ``HostFacts``; anything it cannot use
(missing step, truncated or malformed JSON, a value of the wrong type) becomes
``None`` for that value, or ``FactsUnavailable`` with the reason for the whole
document - never an exception. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FACTS_SCHEMA",
    "FACTS_STEP",
    "FactsUnavailable",
    "HostFacts",
    "Listener",
    "Mount",
    "read_facts",
]

FACTS_SCHEMA = "aftercare.inspection-facts/1"
FACTS_STEP = "facts"
_MAX_ITEMS = 20000


@dataclass(frozen=True)
class Mount:
    """A mounted filesystem; sizes are None when it was not measured (``error`` says why)."""

    mountpoint: str
    device: str
    fstype: str
    size_bytes: int | None = None
    used_bytes: int | None = None
    inodes: int | None = None
    inodes_used: int | None = None
    error: str = ""

    @property
    def used_ratio(self) -> float | None:
        if not self.size_bytes or self.used_bytes is None:
            return None
        return self.used_bytes / self.size_bytes

    @property
    def inodes_ratio(self) -> float | None:
        if not self.inodes or self.inodes_used is None:
            return None
        return self.inodes_used / self.inodes


@dataclass(frozen=True)
class Listener:
    """A listening socket."""

    proto: str
    address: str
    port: int
    process: str

    def label(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto} {host}:{self.port} ({self.process})"


@dataclass(frozen=True)
class HostFacts:
    """What the facts document said; ``None`` is "not known"."""

    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    uptime_s: float | None = None
    boot_ms: int | None = None
    reboot_required: bool | None = None
    package_manager: str | None = None
    packages: Mapping[str, str] | None = None
    security_updates: int | None = None  # None: the package manager does not say
    systemd: bool = False
    enabled_units: tuple[str, ...] = ()
    failed_units: tuple[str, ...] = ()
    listening: tuple[Listener, ...] = ()
    mounts: tuple[Mount, ...] = ()
    time_synchronized: bool | None = None
    time_offset_ms: float | None = None
    kernel_log_readable: bool = False
    kernel_log_detail: str = ""
    oom_kills: int | None = None
    io_errors: int | None = None
    config_files: Mapping[str, str] = field(default_factory=dict)  # path -> sha256 or "error: …"
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class FactsUnavailable:
    """No usable facts document; ``reason`` says why, for the report."""

    reason: str


def read_facts(step_outputs: Mapping[str, str] | None) -> HostFacts | FactsUnavailable:
    """The facts of one inspection run from its step outputs (see module docstring)."""
    if step_outputs is None:
        return FactsUnavailable("no inspection run")
    text = step_outputs.get(FACTS_STEP)
    if text is None:
        return FactsUnavailable(f'the run has no "{FACTS_STEP}" step output')
    document = _first_document(text)
    if document is None:
        return FactsUnavailable(f'the "{FACTS_STEP}" output is not a JSON document (cut short?)')
    if document.get("schema") != FACTS_SCHEMA:
        return FactsUnavailable(f"unknown facts schema {str(document.get('schema'))[:60]!r}")
    return _facts(document)


def _first_document(text: str) -> dict[str, Any] | None:
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def _facts(doc: Mapping[str, Any]) -> HostFacts:
    packages = _dict(doc.get("packages"))
    security = _dict(doc.get("security_updates"))
    units = _dict(doc.get("units"))
    time_sync = _dict(doc.get("time_sync"))
    kernel_log = _dict(doc.get("kernel_log"))
    items = _dict(packages.get("items"))
    return HostFacts(
        hostname=_str(doc.get("hostname")),
        os=_str(doc.get("os")),
        kernel=_str(doc.get("kernel")),
        uptime_s=_number(doc.get("uptime_s")),
        boot_ms=_int(doc.get("boot_ms")),
        reboot_required=_bool(doc.get("reboot_required")),
        package_manager=_str(packages.get("manager")),
        packages=(
            {str(k): str(v) for k, v in list(items.items())[:_MAX_ITEMS]}
            if "items" in packages
            else None
        ),
        security_updates=_int(security.get("count")) if security.get("state") == "known" else None,
        systemd=_bool(units.get("systemd")) is True,
        enabled_units=_strings(units.get("enabled")),
        failed_units=_strings(units.get("failed")),
        listening=tuple(filter(None, map(_listener, _list(doc.get("listening"))))),
        mounts=tuple(filter(None, map(_mount, _list(doc.get("mounts"))))),
        time_synchronized=_bool(time_sync.get("synchronized")),
        time_offset_ms=_number(time_sync.get("offset_ms")),
        kernel_log_readable=_bool(kernel_log.get("readable")) is True,
        kernel_log_detail=_str(kernel_log.get("detail")) or "",
        oom_kills=_int(kernel_log.get("oom_kills")),
        io_errors=_int(kernel_log.get("io_errors")),
        config_files=_checksums(doc.get("config_files")),
        errors=_strings(doc.get("errors")),
    )


def _listener(value: object) -> Listener | None:
    entry = _dict(value)
    port = _int(entry.get("port"))
    proto, address = _str(entry.get("proto")), _str(entry.get("address"))
    if port is None or proto is None or address is None:
        return None
    return Listener(proto, address, port, _str(entry.get("process")) or "?")


def _mount(value: object) -> Mount | None:
    entry = _dict(value)
    mountpoint = _str(entry.get("mountpoint"))
    if mountpoint is None:
        return None
    return Mount(
        mountpoint=mountpoint,
        device=_str(entry.get("device")) or "?",
        fstype=_str(entry.get("fstype")) or "?",
        size_bytes=_int(entry.get("size_bytes")),
        used_bytes=_int(entry.get("used_bytes")),
        inodes=_int(entry.get("inodes")),
        inodes_used=_int(entry.get("inodes_used")),
        error=_str(entry.get("error")) or "",
    )


def _checksums(value: object) -> dict[str, str]:
    result = {}
    for path, entry in _dict(value).items():
        fields = _dict(entry)
        digest, error = _str(fields.get("sha256")), _str(fields.get("error"))
        result[str(path)] = digest if digest else f"error: {error or 'unknown'}"
    return result


# --- typed getters: a value of the wrong type is "not known" ---------------------------


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value[:_MAX_ITEMS] if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(item for item in _list(value) if isinstance(item, str))


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
