"""Reading a host's metric history for the inspection analysis (injected into it),
and driving its roll-up from the collector's periodic prune.

One call returns every series of the host over a period, re-bucketed to a step that
keeps each series at most ``INSPECTION_MAX_POINTS`` buckets (a quarter: hourly), so the
answer is bounded by ``MAX_SERIES_PER_HOST`` x ``INSPECTION_MAX_POINTS`` points.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

from collector.history.model import HistorySeries
from collector.history.policy import auto_step
from collector.store.base import HistoryRollup
from collector.store.writer import StoreThread

__all__ = ["INSPECTION_MAX_POINTS", "HostHistory", "by_name", "fold", "roll_up"]

INSPECTION_MAX_POINTS = 2200  # 90 days of hours is 2160


class HostHistory:
    """The metric history of whole hosts, read on the store thread."""

    def __init__(self, db: StoreThread, max_points: int = INSPECTION_MAX_POINTS) -> None:
        self._db = db
        self._max_points = max_points

    async def history(
        self, agent_id: str, since_ms: int, until_ms: int
    ) -> Mapping[str, Sequence[HistorySeries]]:
        """Every series of the host with buckets in ``[since_ms, until_ms)``, by metric
        name (series of one name ordered by labels). Raises InvalidRequest for an
        empty period."""
        step = auto_step(since_ms, until_ms, self._max_points)
        series = await self._db.call(
            self._db.store.metric_history, agent_id, (), since_ms, until_ms, None, step
        )
        return by_name(series)


def by_name(series: Iterable[HistorySeries]) -> dict[str, list[HistorySeries]]:
    """Series grouped by metric name, keeping their order."""
    grouped: dict[str, list[HistorySeries]] = {}
    for one in series:
        grouped.setdefault(one.name, []).append(one)
    return grouped


async def fold(db: StoreThread, now_ms: int, chunk: int = 250) -> int:
    """Fold every due staged history row, ``chunk`` rows per store call, pausing after
    each call as long as it took: every agent's buckets end together, so a fleet's rows
    fall due at once, and the fold takes at most half of the thread it runs on (the
    store writer on SQLite, with group commits of agent batches in between; its own
    on PostgreSQL). How many were folded."""
    folded = 0
    after: str | None = ""
    while after is not None:
        started = time.monotonic()
        count, after = await db.fold_history(now_ms, after, chunk)
        folded += count
        if after is not None:
            await asyncio.sleep(time.monotonic() - started)
    return folded


async def roll_up(db: StoreThread, now_ms: int, chunk: int = 200) -> HistoryRollup:
    """Run the history's roll-up and retention over every series, ``chunk`` series per
    store call (other writes go in between); the totals (``next_series_id`` None)."""
    rolled = dropped = series = 0
    after: int | None = 0
    while after is not None:
        step = await db.call(db.store.roll_up_history, now_ms, after, chunk)
        rolled, dropped = rolled + step.rolled_up, dropped + step.dropped
        series += step.series_dropped
        after = step.next_series_id
    return HistoryRollup(None, rolled, dropped, series)
