"""The builtin step functions a playbook may name, and the arguments each accepts.

A ``builtin`` step calls a read-only function implemented by the agent. This module
is the contract between the playbook format and the agent: the loader refuses a
function that is not in ``BUILTIN_FUNCTIONS`` and an argument name that is not in
``BUILTIN_ARGS[function]``; the agent implements exactly these names. Argument
values are strings or integers (a ``{{ param }}`` placeholder is replaced by the
parameter's typed value). Every argument is optional; the agent picks the default
documented here. docs/playbooks.md carries the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["BUILTINS", "BUILTIN_ARGS", "BUILTIN_FUNCTIONS", "BuiltinSpec"]


@dataclass(frozen=True)
class BuiltinSpec:
    """What a builtin function does, and each argument it accepts (name -> meaning)."""

    description: str
    args: Mapping[str, str]


def _spec(description: str, **args: str) -> BuiltinSpec:
    return BuiltinSpec(description, MappingProxyType(args))


_LIMIT = "int: at most this many entries (default 20)"
_SINCE = 'duration string: how far back to look (e.g. "24h"; default "24h")'

BUILTINS: Mapping[str, BuiltinSpec] = MappingProxyType(
    {
        "top_processes": _spec(
            "Processes ranked by CPU use or resident memory (pid, user, command, cpu%, rss).",
            by='"cpu" or "memory" (default "cpu")',
            limit=_LIMIT,
            interval='duration string: CPU sampling interval (default "1s")',
        ),
        "largest_directories": _spec(
            "Largest directories under a path, sizes summed like du, not crossing "
            "filesystem boundaries.",
            path='absolute path to scan (default "/")',
            depth="int: how many levels below path to report (default 3)",
            limit=_LIMIT,
        ),
        "deleted_open_files": _spec(
            "Files deleted but still held open (their space is freed only when the "
            "process closes them), largest first, with the holding process.",
            limit=_LIMIT,
        ),
        "listening_sockets": _spec(
            "TCP and UDP sockets in LISTEN state with address, port and owning process.",
            limit="int: at most this many sockets (default 200)",
        ),
        "kernel_errors": _spec(
            "Kernel log messages at error level or worse.",
            since=_SINCE,
            limit="int: at most this many messages, newest kept (default 200)",
            kind='"all" or "hardware" (machine checks, EDAC, I/O, thermal; default "all")',
        ),
        "failed_units": _spec(
            "systemd units in the failed state, with result, since when, and exit status.",
        ),
        "unit_journal": _spec(
            "Recent journal lines of one systemd unit; an empty unit means every unit "
            "that is currently failed.",
            unit="systemd unit name, or empty for every failed unit",
            lines="int: lines per unit, newest kept (default 100)",
            since=_SINCE,
        ),
        "pressure_stall": _spec(
            "Pressure stall information (/proc/pressure: cpu, memory, io; avg10/60/300 "
            "and total stall time).",
        ),
        "dns_resolve": _spec(
            "Resolve a host name through the system resolver (A and AAAA), with timing "
            "and the configured name servers.",
            name="host name to resolve",
            timeout='duration string (default "5s")',
        ),
        "gateway_reachability": _spec(
            "Default gateways (IPv4 and IPv6) and whether each answers (ICMP echo, or "
            "the neighbour table state where ICMP is not permitted).",
            count="int: probes per gateway (default 3)",
            timeout='duration string: per probe (default "1s")',
        ),
        "time_sync_status": _spec(
            "Clock synchronisation: which daemon, synchronised or not, offset, stratum, "
            "reference source.",
        ),
        "sensors": _spec(
            "Temperatures, fan speeds and voltages from hwmon and thermal zones, with "
            "their critical thresholds.",
        ),
        "smart_health": _spec(
            "SMART overall health and key attributes (reallocated, pending, media "
            "errors, wear) of each disk, via smartctl where installed.",
            device="a device path such as /dev/sda (default: every disk)",
        ),
        "package_inventory": _spec(
            "Installed packages (name, version, architecture) from the dpkg or rpm "
            "database, and the most recent installs and upgrades.",
            recent="int: how many recent package changes to list (default 50)",
        ),
        "system_summary": _spec(
            "Host identity and shape: OS release, kernel, uptime and last boot, CPUs, "
            "memory, filesystems, virtualisation, reboot required.",
        ),
        "oom_history": _spec(
            "Processes the out-of-memory killer ended (from the kernel log): when, "
            "victim, its memory, the cgroup.",
            since='duration string (default "7d")',
            limit=_LIMIT,
        ),
        "inspection_facts": _spec(
            "One JSON document of structured facts for the inspection's analysis and "
            "drift: OS, kernel, uptime, reboot required, packages and pending security "
            "updates, enabled and failed units, listening ports, filesystems, time sync, "
            "OOM kills and kernel I/O errors since `since`, checksums of config files.",
            since='duration string: how far back to count kernel events (default "92d")',
            config_files="comma-separated absolute paths whose sha256 is reported (default none)",
        ),
    }
)

BUILTIN_FUNCTIONS: frozenset[str] = frozenset(BUILTINS)
BUILTIN_ARGS: Mapping[str, frozenset[str]] = MappingProxyType(
    {name: frozenset(spec.args) for name, spec in BUILTINS.items()}
)
