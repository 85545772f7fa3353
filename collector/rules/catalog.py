"""What the agent sends: every metric name of docs/metrics.md with its label names.

The loader uses it to check rule files: a matcher or template on a label the metric
does not have is an error; a metric name missing here is only a warning (a newer agent
may send it). ``tests/collector/test_rules_loader.py`` keeps this table in step with
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["KNOWN_METRICS", "is_counter"]

_FILESYSTEM = frozenset({"mountpoint", "device", "fstype"})
_NONE: frozenset[str] = frozenset()

KNOWN_METRICS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        # CPU and load
        "cpu_usage_ratio": frozenset({"cpu"}),
        "cpu_mode_ratio": frozenset({"cpu", "mode"}),
        "load_average": frozenset({"period"}),
        "cpu_cores": _NONE,
        # memory and swap
        "memory_total_bytes": _NONE,
        "memory_available_bytes": _NONE,
        "memory_used_ratio": _NONE,
        "swap_total_bytes": _NONE,
        "swap_used_bytes": _NONE,
        "swap_used_ratio": _NONE,
        "swap_in_bytes_total": _NONE,
        "swap_out_bytes_total": _NONE,
        "oom_kills_total": _NONE,
        # filesystems
        "filesystem_size_bytes": _FILESYSTEM,
        "filesystem_free_bytes": _FILESYSTEM,
        "filesystem_used_ratio": _FILESYSTEM,
        "filesystem_inodes_total": _FILESYSTEM,
        "filesystem_inodes_free": _FILESYSTEM,
        "filesystem_inodes_used_ratio": _FILESYSTEM,
        "filesystem_readonly": _FILESYSTEM,
        # disk I/O
        "disk_reads_total": frozenset({"device"}),
        "disk_read_bytes_total": frozenset({"device"}),
        "disk_writes_total": frozenset({"device"}),
        "disk_written_bytes_total": frozenset({"device"}),
        "disk_io_time_seconds_total": frozenset({"device"}),
        # network
        "network_receive_bytes_total": frozenset({"interface"}),
        "network_transmit_bytes_total": frozenset({"interface"}),
        "network_receive_packets_total": frozenset({"interface"}),
        "network_transmit_packets_total": frozenset({"interface"}),
        "network_receive_errors_total": frozenset({"interface"}),
        "network_transmit_errors_total": frozenset({"interface"}),
        "network_receive_drops_total": frozenset({"interface"}),
        "network_transmit_drops_total": frozenset({"interface"}),
        # processes, file descriptors, uptime
        "processes_total": _NONE,
        "processes_zombie": _NONE,
        "file_descriptors_allocated": _NONE,
        "file_descriptors_limit": _NONE,
        "file_descriptors_used_ratio": _NONE,
        "boot_time_seconds": _NONE,
        "uptime_seconds": _NONE,
        # temperatures
        "temperature_celsius": frozenset({"sensor", "label"}),
        # systemd
        "systemd_units_failed": _NONE,
        "systemd_unit_failed": frozenset({"unit"}),
        # clock synchronisation
        "clock_synchronized": _NONE,
        "clock_offset_seconds": _NONE,
        "clock_max_error_seconds": _NONE,
        "clock_estimated_error_seconds": _NONE,
        # the agent itself
        "agent_check_duration_seconds": frozenset({"check"}),
    }
)


def is_counter(metric: str) -> bool:
    """Whether ``metric`` is a cumulative counter (Prometheus naming: ``_total``)."""
    return metric.endswith("_total") and metric != "processes_total"
