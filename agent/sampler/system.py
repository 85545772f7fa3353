"""Kernel-wide scalar gauges: load average, CPU count, uptime, file descriptor table.

Each function is one check. They read a single small file or a clock, so they are
cheap enough to run every cycle.
"""

from __future__ import annotations

import os
import time

from agent.sampler.model import Sample, gauge, ratio
from agent.sampler.procfs import PROC, read_text


def load(*, proc: str = PROC) -> list[Sample]:
    """``load_average{period}`` for 1m/5m/15m from /proc/loadavg, and ``cpu_count``.

    ``cpu_count`` is the number of online logical CPUs, the scale for load averages.
    """
    one, five, fifteen = read_text(f"{proc}/loadavg").split()[:3]
    return [
        gauge("load_average", float(one), period="1m"),
        gauge("load_average", float(five), period="5m"),
        gauge("load_average", float(fifteen), period="15m"),
        gauge("cpu_cores", os.cpu_count() or 0),
    ]


def uptime() -> list[Sample]:
    """``uptime_seconds`` (CLOCK_BOOTTIME, counts suspend) and ``boot_time_seconds``.

    Boot time is derived as wall clock minus uptime, exactly as the kernel derives
    ``btime`` in /proc/stat, without reading a file.
    """
    up = time.clock_gettime(time.CLOCK_BOOTTIME)
    return [gauge("uptime_seconds", up), gauge("boot_time_seconds", time.time() - up)]


def file_descriptors(*, proc: str = PROC) -> list[Sample]:
    """Allocated file handles and the system limit from /proc/sys/fs/file-nr."""
    allocated, _unused, limit = (int(v) for v in read_text(f"{proc}/sys/fs/file-nr").split())
    return [
        gauge("file_descriptors_allocated", allocated),
        gauge("file_descriptors_limit", limit),
        gauge("file_descriptors_used_ratio", ratio(allocated, limit)),
    ]
