"""Records of the metric history (pure; times are unix milliseconds).

A ``HistoryPoint`` summarises every sample of one series that fell in the bucket
``[start_ms, start_ms + resolution_ms)``: how many, their min, mean and max. Buckets
of a series never overlap; ``HistorySeries.points`` are in ascending ``start_ms``.
Coarser resolutions replace finer ones as data ages (docs/metric-history.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["HistoryPoint", "HistorySeries"]


@dataclass(frozen=True)
class HistoryPoint:
    """One bucket of one series."""

    start_ms: int
    resolution_ms: int
    count: int
    min: float
    avg: float
    max: float


@dataclass(frozen=True)
class HistorySeries:
    """One metric name with one label set, over a period."""

    name: str
    labels: Mapping[str, str]
    points: Sequence[HistoryPoint]
