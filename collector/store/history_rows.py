"""Metric history rows (SQLite): the ingest-path bucket upsert, roll-up, retention, reads.

Called by ``SQLiteStore`` inside its transactions; the policy (resolutions, retention,
the series bound) lives in ``collector.history.policy``. The ingest path works on a
whole group commit at once: one upsert statement for every (series, bucket) of the
group, series ids from the caller's cache (one read for the hosts missing there), and
one insert for every new series of the group.
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
    bucket_start,
    coarse_cutoff,
    fine_cutoff,
    merge_points,
)
from collector.store.base import HistoryRollup

__all__ = [
    "HistoryInput",
    "RecordOutcome",
    "check_history_query",
    "read_history",
    "record_group_history",
    "roll_up_history",
]

SeriesKey = tuple[str, str]  # (name, canonical labels JSON)
_IN_LIST = 500  # agent ids per IN (...) list

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
    known: Mapping[SeriesKey, int]  # every series id of the host after this write


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


@dataclass(frozen=True)
class HistoryInput:
    """One new batch for ``record_group_history``: its samples as (name, canonical
    labels JSON, value)."""

    agent_id: str
    collected_ms: int
    received_ms: int
    samples: Sequence[tuple[str, str, float]]


def record_group_history(
    db: sqlite3.Connection,
    batches: Sequence[HistoryInput],
    max_series: int,
    cache: Mapping[str, Mapping[SeriesKey, int]],
) -> dict[str, RecordOutcome]:
    """Fold the finite samples of a group of batches into their series' 5-minute
    buckets (each at its batch's collection time), in a fixed number of statements:
    samples of one series falling in one bucket are summed first (one upsert per series
    and bucket), series ids come from ``cache`` (one read for the hosts missing there or
    sending series it lacks), and the new series of every host are created by one
    insert. A host keeps at most ``max_series`` series; samples of further series are
    left out and reported. Returns, per host, the series created, those refused and
    every series id now known."""
    points: dict[str, dict[tuple[SeriesKey, int], list[float]]] = {}  # [n, min, sum, max]
    first_seen: dict[str, int] = {}
    stale: set[str] = set()  # hosts sending series their cached ids lack: read them again
    for batch in batches:
        start = bucket_start(batch.collected_ms, FINE)
        per_host = points.setdefault(batch.agent_id, {})
        first_seen.setdefault(batch.agent_id, batch.received_ms)
        cached = cache.get(batch.agent_id)
        for name, labels, value in batch.samples:
            if not math.isfinite(value):
                continue
            series = (name, labels)
            if cached is not None and series not in cached:
                stale.add(batch.agent_id)
            key = (series, start)
            point = per_host.get(key)
            if point is None:  # the usual case: one sample per series and bucket
                per_host[key] = [1, value, value, value]
            else:
                point[0] += 1
                point[1] = min(point[1], value)
                point[2] += value
                point[3] = max(point[3], value)
    ids = {a: cache[a] for a in points if a in cache and a not in stale}
    ids.update(_series_ids_of(db, [a for a in points if a not in ids]))
    created: dict[str, dict[SeriesKey, int]] = {}
    refused: dict[str, list[SeriesKey]] = {}
    new_rows = []
    for agent_id, per_host in points.items():
        if agent_id in ids and agent_id not in stale and agent_id in cache:
            continue  # every series known (checked above)
        known = ids[agent_id]
        missing = sorted({key for key, _ in per_host if key not in known})
        if not missing:
            continue
        room = max(0, max_series - len(known))
        new_rows += [(agent_id, n, labels, first_seen[agent_id]) for n, labels in missing[:room]]
        if missing[room:]:
            refused[agent_id] = missing[room:]
    if new_rows:
        db.executemany(
            "INSERT INTO history_series (agent_id, name, labels, created_ms) VALUES (?, ?, ?, ?)",
            new_rows,
        )
        grown = _series_ids_of(db, sorted({row[0] for row in new_rows}))
        for agent_id, name, labels, _ in new_rows:
            created.setdefault(agent_id, {})[(name, labels)] = grown[agent_id][(name, labels)]
        ids.update(grown)
    db.executemany(
        _UPSERT_POINT,
        [
            (known[key], FINE, start, int(p[0]), p[1], p[2], p[3])
            for agent_id, per_host in points.items()
            if (known := ids[agent_id]) is not None
            for (key, start), p in per_host.items()
            if key in known
        ],
    )
    return {
        agent_id: RecordOutcome(
            created.get(agent_id, {}),
            tuple(refused.get(agent_id, ())),
            _count_of(points[agent_id], refused.get(agent_id, ())),
            ids[agent_id],
        )
        for agent_id in points
    }


def _count_of(
    points: Mapping[tuple[SeriesKey, int], list[float]], keys: Sequence[SeriesKey]
) -> int:
    """How many samples of ``points`` belong to the series ``keys``."""
    if not keys:
        return 0
    wanted = set(keys)
    return sum(int(p[0]) for (key, _), p in points.items() if key in wanted)


def _series_ids_of(
    db: sqlite3.Connection, agent_ids: Sequence[str]
) -> dict[str, dict[SeriesKey, int]]:
    """Every series of each host in ``agent_ids`` (hosts without any map to {})."""
    found: dict[str, dict[SeriesKey, int]] = {agent_id: {} for agent_id in agent_ids}
    for start in range(0, len(agent_ids), _IN_LIST):
        chunk = agent_ids[start : start + _IN_LIST]
        rows = db.execute(
            "SELECT agent_id, series_id, name, labels FROM history_series "
            f"WHERE agent_id IN ({', '.join('?' * len(chunk))})",
            list(chunk),
        ).fetchall()
        for agent_id, sid, name, labels in rows:
            found[str(agent_id)][(str(name), str(labels))] = int(sid)
    return found
