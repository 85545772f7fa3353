"""Condense a host's latest samples into the health summary engineers scan first.

Pure domain logic over sample names from docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.store import StoredSample


@dataclass(frozen=True)
class HealthSummary:
    """CPU and memory use, and the fullest filesystem; ``has_data`` False when no samples yet."""

    has_data: bool = False
    cpu_usage_ratio: float = 0.0
    memory_used_ratio: float = 0.0
    worst_filesystem: str = ""
    worst_filesystem_used_ratio: float = 0.0


def summarize(samples: Iterable[StoredSample]) -> HealthSummary:
    """Total CPU use, memory use and the filesystem with the highest used ratio."""
    cpu = memory = worst_ratio = 0.0
    worst_mount = ""
    seen = False
    for sample in samples:
        seen = True
        if sample.name == "cpu_usage_ratio" and sample.labels.get("cpu") == "total":
            cpu = sample.value
        elif sample.name == "memory_used_ratio":
            memory = sample.value
        elif sample.name == "filesystem_used_ratio" and sample.value >= worst_ratio:
            worst_ratio, worst_mount = sample.value, sample.labels.get("mountpoint", "")
    return HealthSummary(seen, cpu, memory, worst_mount, worst_ratio)
