"""Metric history rows (SQLite): the ingest-path bucket upsert, roll-up, retention, reads.

Called by ``SQLiteStore`` inside its transactions; the policy (resolutions, retention,
the series bound) lives in ``collector.history.policy``. The ingest path costs one
indexed read of the host's series ids plus one upsert per distinct series in the batch.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from collector.errors import InvalidRequest
from collector.history.model import HistoryPoint, HistorySeries
from collector.history.policy import (
    COARSE,
    FINE,
    MAX_POINTS_PER_SERIES,
    STEPS,
    BucketSum,
    bucket_start,
    coarse_cutoff,
    fine_cutoff,
    merge_points,
)
from collector.store.base import HistoryRollup

__all__ = [
    "check_history_query",
    "read_history",
    "record_history",
    "roll_up_history",
    "series_ids",
]

SeriesKey = tuple[str, str]  # (name, canonical labels JSON)

_UPDATE_BUCKET = (
    "ON CONFLICT (series_id, resolution_ms, start_ms) DO UPDATE SET "
    "sample_count = sample_count + excluded.sample_count, "
    "min_value = MIN(min_value, excluded.min_value), "
    "sum_value = sum_value + excluded.sum_value, "
    "max_value = MAX(max_value, excluded.max_value)"
)
_UPSERT_POINT = (
    "INSERT INTO history_points (series_id, resolution_ms, start_ms, sample_count, "
    "min_value, sum_value, max_value) VALUES (?, ?, ?, ?, ?, ?, ?) " + _UPDATE_BUCKET
)
_CHUNK_SERIES = (
    "SELECT series_id FROM history_series WHERE series_id > ? ORDER BY series_id LIMIT ?"
)
_ROLL_UP = (
    "INSERT INTO history_points (series_id, resolution_ms, start_ms, sample_count, "
    "min_value, sum_value, max_value) "
    f"SELECT series_id, {COARSE}, (start_ms / {COARSE}) * {COARSE}, SUM(sample_count), "
    "MIN(min_value), SUM(sum_value), MAX(max_value) FROM history_points "
    f"WHERE series_id IN (SELECT value FROM json_each(?)) AND resolution_ms = {FINE} "
    f"AND start_ms < ? GROUP BY series_id, start_ms / {COARSE} " + _UPDATE_BUCKET
)
_DROP_FINE = (
    "DELETE FROM history_points WHERE series_id IN (SELECT value FROM json_each(?)) "
    f"AND resolution_ms = {FINE} AND start_ms < ?"
)
_DROP_COARSE = (
    "DELETE FROM history_points WHERE series_id IN (SELECT value FROM json_each(?)) "
    f"AND resolution_ms = {COARSE} AND start_ms < ?"
)
_DROP_EMPTY_SERIES = (
    "DELETE FROM history_series WHERE series_id IN (SELECT value FROM json_each(?)) "
    "AND NOT EXISTS (SELECT 1 FROM history_points AS p "
    "WHERE p.series_id = history_series.series_id)"
)


@dataclass(frozen=True)
class RecordOutcome:
    """What one batch did to the history: the series it created (to cache their ids) and
    those it could not store (host at its bound)."""

    created: Mapping[SeriesKey, int]
    refused_series: tuple[SeriesKey, ...]
    refused_samples: int


def record_history(
    db: sqlite3.Connection,
    agent_id: str,
    collected_ms: int,
    received_ms: int,
    samples: Sequence[tuple[str, str, float]],
    max_series: int,
    known: Mapping[SeriesKey, int] | None = None,
) -> RecordOutcome:
    """Fold the batch's finite samples — (name, canonical labels JSON, value) — into
    their series' 5-minute buckets (at the batch's collection time). ``known`` are the
    host's series ids if the caller has them (else they are read). New series are
    created while the host has fewer than ``max_series``; samples of series beyond the
    bound are left out and reported."""
    sums = _bucket_sums(samples)
    if not sums:
        return RecordOutcome({}, (), 0)
    ids = dict(known) if known is not None else series_ids(db, agent_id)
    missing = sorted(key for key in sums if key not in ids)
    if missing and known is not None:
        ids = series_ids(db, agent_id)  # the cache may be behind: count from the table
        missing = sorted(key for key in sums if key not in ids)
    room = max(0, max_series - len(ids))
    created: dict[SeriesKey, int] = {}
    for name, labels in missing[:room]:
        cursor = db.execute(
            "INSERT INTO history_series (agent_id, name, labels, created_ms) VALUES (?, ?, ?, ?)",
            (agent_id, name, labels, received_ms),
        )
        created[(name, labels)] = ids[(name, labels)] = int(cursor.lastrowid or 0)
    start = bucket_start(collected_ms, FINE)
    db.executemany(
        _UPSERT_POINT,
        [
            (ids[key], FINE, start, s.count, s.min, s.sum, s.max)
            for key, s in sums.items()
            if key in ids
        ],
    )
    refused = tuple(missing[room:])
    return RecordOutcome(created, refused, sum(sums[key].count for key in refused))


def series_ids(db: sqlite3.Connection, agent_id: str) -> dict[SeriesKey, int]:
    """Every series of the host: (name, labels JSON) -> series id."""
    rows = db.execute(
        "SELECT series_id, name, labels FROM history_series WHERE agent_id = ?", (agent_id,)
    ).fetchall()
    return {(name, labels): int(sid) for sid, name, labels in rows}


def roll_up_history(
    db: sqlite3.Connection, now_ms: int, after_series_id: int, max_series: int
) -> HistoryRollup:
    """Roll up and expire the buckets of the next ``max_series`` series after
    ``after_series_id``; drop series left without buckets."""
    chunk = [
        int(row[0]) for row in db.execute(_CHUNK_SERIES, (after_series_id, max_series)).fetchall()
    ]
    if not chunk:
        return HistoryRollup(next_series_id=None, rolled_up=0, dropped=0, series_dropped=0)
    ids = json.dumps(chunk)
    fine_before = fine_cutoff(now_ms)
    db.execute(_ROLL_UP, (ids, fine_before))
    rolled = db.execute(_DROP_FINE, (ids, fine_before)).rowcount
    dropped = db.execute(_DROP_COARSE, (ids, coarse_cutoff(now_ms))).rowcount
    series_dropped = db.execute(_DROP_EMPTY_SERIES, (ids,)).rowcount
    return HistoryRollup(
        next_series_id=chunk[-1] if len(chunk) == max_series else None,
        rolled_up=rolled,
        dropped=dropped,
        series_dropped=series_dropped,
    )


def check_history_query(since_ms: int, until_ms: int, step_ms: int | None) -> None:
    """InvalidRequest for an empty period, an unknown step or too many points."""
    if until_ms <= since_ms:
        raise InvalidRequest(f"history period is empty: until {until_ms} <= since {since_ms}")
    if step_ms is not None and step_ms not in STEPS:
        allowed = ", ".join(f"{s // 60_000}m" for s in STEPS)
        raise InvalidRequest(f"history step {step_ms} ms is not one of {allowed}")
    step = step_ms or FINE
    if (until_ms - since_ms) // step > MAX_POINTS_PER_SERIES:
        raise InvalidRequest(
            f"history period holds more than {MAX_POINTS_PER_SERIES} buckets of "
            f"{step // 60_000} minutes per series; ask for a coarser step or a shorter period"
        )


def read_history(
    db: sqlite3.Connection,
    agent_id: str,
    names: Collection[str],
    labels: Mapping[str, str],
    since_ms: int,
    until_ms: int,
    step_ms: int | None,
) -> list[HistorySeries]:
    """The host's series named in ``names`` (all if empty) whose labels include
    ``labels``, with buckets starting in ``[since_ms, until_ms)``, ordered by name and
    labels. ``step_ms`` re-buckets (a rolled-up hour is never split into smaller
    steps); None returns the stored buckets."""
    series = [
        (int(sid), name, json.loads(text))
        for sid, name, text in db.execute(
            "SELECT series_id, name, labels FROM history_series WHERE agent_id = ? "
            "ORDER BY name, labels",
            (agent_id,),
        ).fetchall()
        if (not names or name in names)
    ]
    result: list[HistorySeries] = []
    for sid, name, series_labels in series:
        if any(series_labels.get(k) != v for k, v in labels.items()):
            continue
        points = _points(db, sid, since_ms, until_ms)
        points = _fold_late(points)
        if step_ms:
            points = list(merge_points(points, step_ms))
        result.append(HistorySeries(name, series_labels, points))
    return result


def _points(
    db: sqlite3.Connection, series_id: int, since_ms: int, until_ms: int
) -> list[HistoryPoint]:
    rows = db.execute(
        "SELECT start_ms, resolution_ms, sample_count, min_value, sum_value, max_value "
        "FROM history_points WHERE series_id = ? AND resolution_ms IN (?, ?) "
        "AND start_ms >= ? AND start_ms < ? ORDER BY start_ms, resolution_ms",
        (series_id, FINE, COARSE, since_ms, until_ms),
    ).fetchall()
    return [
        HistoryPoint(int(start), int(res), int(count), low, total / count, high)
        for start, res, count, low, total, high in rows
    ]


def _fold_late(points: list[HistoryPoint]) -> list[HistoryPoint]:
    """Stored buckets without overlap: a 5-minute bucket that arrived late for an hour
    already rolled up (the next roll-up merges it) is folded into that hour here."""
    hours = {p.start_ms for p in points if p.resolution_ms == COARSE}
    late = [
        p for p in points if p.resolution_ms == FINE and bucket_start(p.start_ms, COARSE) in hours
    ]
    if not late:
        return points
    merged = {
        p.start_ms: p
        for p in merge_points([p for p in points if p.resolution_ms == COARSE] + late, COARSE)
    }
    kept = [p for p in points if p.resolution_ms == FINE and p not in late]
    return sorted([*kept, *merged.values()], key=lambda p: p.start_ms)


def _bucket_sums(samples: Sequence[tuple[str, str, float]]) -> dict[SeriesKey, BucketSum]:
    sums: dict[SeriesKey, BucketSum] = {}
    for name, labels, value in samples:
        if not math.isfinite(value):
            continue
        key = (name, labels)
        bucket = sums.get(key)
        if bucket is None:  # the usual case: one sample per series and batch
            sums[key] = BucketSum(1, value, value, value)
        else:
            bucket.add(value)
    return sums
