"""Resolutions, retention and bounds of the metric history, and the pure bucket maths.

The store writes every finite sample into its series' 5-minute bucket (``FINE``) in the
same transaction as the batch it came in; the periodic prune rolls 5-minute buckets
older than ``FINE_RETAIN_MS`` up into 1-hour buckets (``COARSE``) and drops 1-hour
buckets older than ``COARSE_RETAIN_MS``. A host keeps at most ``MAX_SERIES_PER_HOST``
series; samples of further series are refused (counted and logged), never stored
partially. See docs/metric-history.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.history.model import HistoryPoint

__all__ = [
    "COARSE",
    "COARSE_RETAIN_MS",
    "DAY_MS",
    "FINE",
    "FINE_RETAIN_MS",
    "MAX_POINTS_PER_SERIES",
    "MAX_SERIES_PER_HOST",
    "STEPS",
    "BucketSum",
    "auto_step",
    "bucket_start",
    "coarse_cutoff",
    "fine_cutoff",
    "merge_points",
]

DAY_MS = 86_400_000
FINE = 300_000  # 5 minutes
COARSE = 3_600_000  # 1 hour
FINE_RETAIN_MS = 400 * DAY_MS
COARSE_RETAIN_MS = 1827 * DAY_MS  # 5 years (with leap days)
MAX_SERIES_PER_HOST = 500
MAX_POINTS_PER_SERIES = 10_000  # per query answer: ask for a coarser step beyond it
# Steps a reader may ask for (whole multiples of the stored resolutions).
STEPS: tuple[int, ...] = (FINE, 3 * FINE, COARSE, 6 * COARSE, DAY_MS)


def bucket_start(at_ms: int, resolution_ms: int) -> int:
    """Start of the bucket of ``resolution_ms`` holding ``at_ms``."""
    return (at_ms // resolution_ms) * resolution_ms


def fine_cutoff(now_ms: int) -> int:
    """5-minute buckets starting before this (a whole hour) are rolled up into hours."""
    return bucket_start(now_ms - FINE_RETAIN_MS, COARSE)


def coarse_cutoff(now_ms: int) -> int:
    """1-hour buckets starting before this are dropped."""
    return bucket_start(now_ms - COARSE_RETAIN_MS, COARSE)


def auto_step(since_ms: int, until_ms: int, max_points: int = 1000) -> int:
    """The finest step in ``STEPS`` giving at most ``max_points`` buckets over the period."""
    span = max(until_ms - since_ms, 0)
    for step in STEPS:
        if span // step <= max_points:
            return step
    return STEPS[-1]


@dataclass
class BucketSum:
    """Running count/min/sum/max of one bucket (what the store keeps; avg = sum/count)."""

    count: int = 0
    min: float = math.inf
    sum: float = 0.0
    max: float = -math.inf

    def add(self, value: float) -> bool:
        """Add one sample; non-finite values (NaN, ±inf) are ignored. True if added."""
        if not math.isfinite(value):
            return False
        self.count += 1
        self.min = min(self.min, value)
        self.sum += value
        self.max = max(self.max, value)
        return True

    def merge(self, count: int, low: float, total: float, high: float) -> None:
        """Fold in another bucket's figures."""
        self.count += count
        self.min = min(self.min, low)
        self.sum += total
        self.max = max(self.max, high)


def merge_points(points: Iterable[HistoryPoint], step_ms: int) -> Sequence[HistoryPoint]:
    """Re-bucket non-overlapping ``points`` into buckets of ``step_ms``, ascending, with
    the count-weighted average. A point coarser than ``step_ms`` (old data already
    rolled up) keeps its own resolution: it is never split."""
    sums: dict[tuple[int, int], BucketSum] = {}
    for point in points:
        size = max(step_ms, point.resolution_ms)
        key = (bucket_start(point.start_ms, size), size)
        sums.setdefault(key, BucketSum()).merge(
            point.count, point.min, point.avg * point.count, point.max
        )
    return [
        HistoryPoint(start, size, s.count, s.min, s.sum / s.count, s.max)
        for (start, size), s in sorted(sums.items())
        if s.count
    ]
