"""Memory, swap and OOM-kill figures from /proc/meminfo and /proc/vmstat.

``memory_used_ratio`` is 1 - MemAvailable / MemTotal: the share of memory the kernel
could not hand to a new workload without swapping. Kernels older than 3.14 lack
MemAvailable; there MemFree + Buffers + Cached stands in. Swap traffic counts pages
(pswpin/pswpout) converted to bytes with the page size. ``oom_kills_total`` is only
reported where the kernel exposes ``oom_kill`` (4.13 and later).
"""

from __future__ import annotations

import os

from agent.sampler.model import Sample, gauge, ratio
from agent.sampler.procfs import PROC, read_table, table_pattern

_KIB = 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_MEMINFO = table_pattern(
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree"
)
_VMSTAT = table_pattern("pswpin", "pswpout", "oom_kill")


def _available_kib(meminfo: dict[str, int]) -> int:
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    return meminfo.get("MemFree", 0) + meminfo.get("Buffers", 0) + meminfo.get("Cached", 0)


def memory(*, proc: str = PROC) -> list[Sample]:
    """Memory and swap gauges, swap traffic and OOM-kill counters."""
    meminfo = read_table(f"{proc}/meminfo", _MEMINFO)
    vmstat = read_table(f"{proc}/vmstat", _VMSTAT)
    total = meminfo["MemTotal"] * _KIB
    available = _available_kib(meminfo) * _KIB
    swap_total = meminfo.get("SwapTotal", 0) * _KIB
    swap_used = swap_total - meminfo.get("SwapFree", 0) * _KIB
    samples = [
        gauge("memory_total_bytes", total),
        gauge("memory_available_bytes", available),
        gauge("memory_used_ratio", 1.0 - ratio(available, total) if total else 0.0),
        gauge("swap_total_bytes", swap_total),
        gauge("swap_used_bytes", swap_used),
        gauge("swap_used_ratio", ratio(swap_used, swap_total)),
        gauge("swap_in_bytes_total", vmstat.get("pswpin", 0) * _PAGE_SIZE),
        gauge("swap_out_bytes_total", vmstat.get("pswpout", 0) * _PAGE_SIZE),
    ]
    if "oom_kill" in vmstat:
        samples.append(gauge("oom_kills_total", vmstat["oom_kill"]))
    return samples
