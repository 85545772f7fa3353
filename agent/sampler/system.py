"""Kernel-wide scalar gauges: load average, uptime, file descriptor table.

Each is one check reading a single small file or a clock, cheap enough to run every
cycle. (``cpu_cores``, the scale for load averages, comes with the CPU check: it
counts the CPUs /proc/stat lists.)
"""

from __future__ import annotations

import time

from agent.sampler.model import Sample, ratio
from agent.sampler.procfs import PROC, ProcFile


class LoadCheck:
    """``load_average{period}`` for 1m/5m/15m from /proc/loadavg."""

    def __init__(self, *, proc: str = PROC) -> None:
        self._loadavg = ProcFile(f"{proc}/loadavg")

    def __call__(self) -> list[Sample]:
        """The three load averages."""
        one, five, fifteen = self._loadavg.read().split()[:3]
        return [
            Sample("load_average", {"period": "1m"}, float(one)),
            Sample("load_average", {"period": "5m"}, float(five)),
            Sample("load_average", {"period": "15m"}, float(fifteen)),
        ]


class FileDescriptorCheck:
    """Allocated file handles and the system limit from /proc/sys/fs/file-nr."""

    def __init__(self, *, proc: str = PROC) -> None:
        self._file_nr = ProcFile(f"{proc}/sys/fs/file-nr")

    def __call__(self) -> list[Sample]:
        """``file_descriptors_allocated``, ``_limit`` and ``_used_ratio``."""
        allocated, _unused, limit = map(int, self._file_nr.read().split())
        return [
            Sample("file_descriptors_allocated", {}, float(allocated)),
            Sample("file_descriptors_limit", {}, float(limit)),
            Sample("file_descriptors_used_ratio", {}, ratio(allocated, limit)),
        ]


def uptime() -> list[Sample]:
    """``uptime_seconds`` (CLOCK_BOOTTIME, counts suspend) and ``boot_time_seconds``.

    Boot time is derived as wall clock minus uptime, exactly as the kernel derives
    ``btime`` in /proc/stat, without reading a file.
    """
    up = time.clock_gettime(time.CLOCK_BOOTTIME)
    return [
        Sample("uptime_seconds", {}, up),
        Sample("boot_time_seconds", {}, time.time() - up),
    ]
