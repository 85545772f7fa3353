"""Memory, swap and OOM-kill figures from /proc/meminfo and /proc/vmstat.

``memory_used_ratio`` is 1 - MemAvailable / MemTotal: the share of memory the kernel
could not hand to a new workload without swapping. Kernels older than 3.14 lack
MemAvailable; there MemFree + Buffers + Cached stands in. Swap traffic counts pages
(pswpin/pswpout) converted to bytes with the page size. ``oom_kills_total`` is only
reported where the kernel exposes ``oom_kill`` (4.13 and later).
"""

from __future__ import annotations

import os

from agent.sampler.model import Sample, ratio
from agent.sampler.procfs import PROC, ProcFile, parse_table, table_keys

_KIB = 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_MEMINFO = table_keys(
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree",
    separator=":",
)  # fmt: skip
_VMSTAT = table_keys("pswpin", "pswpout", "oom_kill")


def _available_kib(meminfo: dict[str, int]) -> int:
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    return meminfo.get("MemFree", 0) + meminfo.get("Buffers", 0) + meminfo.get("Cached", 0)


class MemoryCheck:
    """Reads /proc/meminfo and /proc/vmstat each cycle."""

    def __init__(self, *, proc: str = PROC) -> None:
        self._meminfo = ProcFile(f"{proc}/meminfo")
        self._vmstat = ProcFile(f"{proc}/vmstat")

    def __call__(self) -> list[Sample]:
        """Memory and swap gauges, swap traffic and OOM-kill counters."""
        meminfo = parse_table(self._meminfo.read(), _MEMINFO)
        vmstat = parse_table(self._vmstat.read(), _VMSTAT)
        total = meminfo["MemTotal"] * _KIB
        available = _available_kib(meminfo) * _KIB
        swap_total = meminfo.get("SwapTotal", 0) * _KIB
        swap_used = swap_total - meminfo.get("SwapFree", 0) * _KIB
        samples = [
            Sample("memory_total_bytes", {}, float(total)),
            Sample("memory_available_bytes", {}, float(available)),
            Sample("memory_used_ratio", {}, 1.0 - ratio(available, total) if total else 0.0),
            Sample("swap_total_bytes", {}, float(swap_total)),
            Sample("swap_used_bytes", {}, float(swap_used)),
            Sample("swap_used_ratio", {}, ratio(swap_used, swap_total)),
            Sample("swap_in_bytes_total", {}, float(vmstat.get("pswpin", 0) * _PAGE_SIZE)),
            Sample("swap_out_bytes_total", {}, float(vmstat.get("pswpout", 0) * _PAGE_SIZE)),
        ]
        if "oom_kill" in vmstat:
            samples.append(Sample("oom_kills_total", {}, float(vmstat["oom_kill"])))
        return samples
