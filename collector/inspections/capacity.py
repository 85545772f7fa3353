"""Capacity over the inspection period, from the host's metric history (pure).

For memory (``memory_used_ratio``), load (``load_average{period="5m"}``) and each
filesystem (``filesystem_used_ratio{mountpoint}``): the p95 of the bucket averages
and the max of the bucket maxima over the period. For filesystems also the growth
per day by a least-squares line through the bucket averages, and the date that
line reaches 100 % (``predicted_full_ms``; None when usage is flat or shrinking, or
when the history spans less than a day).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collector.history.model import HistoryPoint, HistorySeries

__all__ = ["DAY_MS", "CapacityTrend", "capacity_trends"]

DAY_MS = 86_400_000
_MIN_FIT_SPAN_MS = DAY_MS
_HORIZON_MS = 10 * 365 * DAY_MS  # a "full" date further away than this is not predicted


@dataclass(frozen=True)
class CapacityTrend:
    """One series' figures over the period; ratios are 0..1, load is the raw average."""

    resource: str  # "memory" | "load" | "filesystem"
    subject: str  # the mountpoint for a filesystem, "" otherwise
    points: int
    p95: float
    max: float
    last: float
    growth_per_day: float | None = None  # filesystems: ratio per day (fitted)
    predicted_full_ms: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "resource": self.resource,
            "subject": self.subject,
            "points": self.points,
            "p95": round(self.p95, 4),
            "max": round(self.max, 4),
            "last": round(self.last, 4),
            "growth_per_day": None
            if self.growth_per_day is None
            else round(self.growth_per_day, 6),
            "predicted_full_ms": self.predicted_full_ms,
        }


def capacity_trends(history: Mapping[str, Sequence[HistorySeries]]) -> list[CapacityTrend]:
    """Memory, load and filesystem trends of one host, in that order (see module doc)."""
    trends: list[CapacityTrend] = []
    for series in history.get("memory_used_ratio", ()):
        trends.extend(_trend("memory", "", series, fit=False))
    for series in history.get("load_average", ()):
        if series.labels.get("period", "5m") == "5m":
            trends.extend(_trend("load", "", series, fit=False))
    filesystems = sorted(
        history.get("filesystem_used_ratio", ()), key=lambda s: s.labels.get("mountpoint", "")
    )
    for series in filesystems:
        trends.extend(_trend("filesystem", series.labels.get("mountpoint", "?"), series, fit=True))
    return trends


def _trend(resource: str, subject: str, series: HistorySeries, *, fit: bool) -> list[CapacityTrend]:
    points = series.points
    if not points:
        return []
    averages = [p.avg for p in points]
    growth, predicted = _fit_full(points, averages) if fit else (None, None)
    last = averages[-1]
    averages.sort()
    return [
        CapacityTrend(
            resource=resource,
            subject=subject,
            points=len(points),
            p95=averages[max(0, math.ceil(0.95 * len(averages)) - 1)],
            max=max([p.max for p in points]),
            last=last,
            growth_per_day=growth,
            predicted_full_ms=predicted,
        )
    ]


def _fit_full(
    points: Sequence[HistoryPoint], averages: list[float]
) -> tuple[float | None, int | None]:
    """(growth per day, when the fitted line reaches 1.0) by least squares."""
    first, last = points[0].start_ms, points[-1].start_ms
    if last - first < _MIN_FIT_SPAN_MS:
        return None, None
    n = len(points)
    xs = [p.start_ms - first for p in points]  # integers: the sums below are exact
    sum_x, sum_y = sum(xs), math.fsum(averages)
    spread_x = n * sum(map(operator.mul, xs, xs)) - sum_x * sum_x  # n^2 * variance
    if spread_x == 0:
        return None, None
    cross = n * math.fsum(map(operator.mul, xs, averages)) - sum_x * sum_y
    slope_per_ms = cross / spread_x
    slope = slope_per_ms * DAY_MS
    if slope <= 0:
        return slope, None
    fitted_now = sum_y / n + slope_per_ms * (xs[-1] - sum_x / n)
    days_left = max(0.0, (1.0 - fitted_now) / slope)
    full_ms = last + int(days_left * DAY_MS)
    return slope, (full_ms if full_ms - last <= _HORIZON_MS else None)
