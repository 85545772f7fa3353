"""Metric history rows (SQLite): the ingest-path bucket upsert, roll-up, retention, reads.

Called by ``SQLiteStore`` inside its transactions; the policy (resolutions, retention,
the series bound) lives in ``collector.history.policy``. The ingest path works on a
whole group commit at once: one upsert statement for every (series, bucket) of the
group, series ids from the caller's cache (one read for the hosts missing there), and
one insert for every new series of the group.
"""

from __future__ import annotations

import array
import json
import math
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from collector.store.chunks import chunks
from collector.store.packed import FLOAT64, INT64, pack, unpack

__all__ = [
    "HistoryInput",
    "RecordOutcome",
    "check_history_query",
    "fold_history",
    "read_history",
    "record_group_history",
    "roll_up_history",
]

SeriesKey = tuple[str, str]  # (name, canonical labels JSON)
FOLD_GRACE_MS = 30_000  # a bucket is folded this long after it ends (late batches)
FOLD_BY_ARRIVAL_MS = 10 * 60_000  # a staged row this old is folded whatever its bucket
_IDS, _VALUES = INT64, FLOAT64  # staged arrays: series ids, values (collector.store.packed)

_STAGE = (
    "INSERT INTO history_staging (agent_id, collected_ms, received_ms, series_ids, "
    "sample_values) VALUES (?, ?, ?, ?, ?)"
)
_STAGED_COLUMNS = "staging_id, agent_id, collected_ms, series_ids, sample_values"
_DUE_BY_BUCKET = (
    f"SELECT {_STAGED_COLUMNS} FROM history_staging WHERE agent_id >= ? AND collected_ms < ? "
    "ORDER BY agent_id, collected_ms LIMIT ?"
)
_DUE_BY_ARRIVAL = (
    f"SELECT {_STAGED_COLUMNS} FROM history_staging WHERE received_ms < ? "
    "ORDER BY received_ms LIMIT ?"
)
_UNSTAGE = "DELETE FROM history_staging WHERE staging_id IN (SELECT value FROM json_each(?))"

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
_DROP_EMPTY_SERIES = (  # not while its host has staged values (they may be its)
    "DELETE FROM history_series WHERE series_id IN (SELECT value FROM json_each(?)) "
    "AND NOT EXISTS (SELECT 1 FROM history_points AS p "
    "WHERE p.series_id = history_series.series_id) "
    "AND NOT EXISTS (SELECT 1 FROM history_staging AS s "
    "WHERE s.agent_id = history_series.agent_id)"
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
    staged = _staged_points(db, agent_id, since_ms, until_ms)
    result: list[HistorySeries] = []
    for sid, name, series_labels in series:
        if any(series_labels.get(k) != v for k, v in labels.items()):
            continue
        points = _points(db, sid, since_ms, until_ms)
        if sid in staged:  # values not folded yet: added to their stored buckets
            points = sorted(
                merge_points([*points, *staged[sid]], FINE),
                key=lambda p: (p.start_ms, p.resolution_ms),
            )
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
    """One new batch for ``record_group_history``: per sample its (name, canonical
    labels JSON) and its value."""

    agent_id: str
    collected_ms: int
    received_ms: int
    keys: Sequence[SeriesKey]
    values: Sequence[float]


def record_group_history(
    db: sqlite3.Connection,
    batches: Sequence[HistoryInput],
    max_series: int,
    cache: Mapping[str, Mapping[SeriesKey, int]],
) -> dict[str, RecordOutcome]:
    """Stage the finite samples of a group of batches for the history: one
    ``history_staging`` row per batch (series ids and values), folded into 5-minute
    buckets later (``fold_history``). Series ids come from ``cache`` (one read for the
    hosts missing there or sending series it lacks); the new series of every host are
    created by one insert. A host keeps at most ``max_series`` series; samples of
    further series are left out and reported. Returns, per host, the series created,
    those refused and every series id now known."""
    finite = [_finite(batch) for batch in batches]
    first_seen: dict[str, int] = {}
    series_ids: list[list[int] | None] = []  # per batch, from the cache when it knows all
    stale: set[str] = set()  # hosts sending series their cached ids lack: read them again
    for batch, (keys, _) in zip(batches, finite, strict=True):
        first_seen.setdefault(batch.agent_id, batch.received_ms)
        cached = cache.get(batch.agent_id)
        found = None if cached is None else [cached.get(key, 0) for key in keys]
        if found is not None and 0 in found:
            stale.add(batch.agent_id)
        series_ids.append(found)
    ids = {a: cache[a] for a in first_seen if a in cache and a not in stale}
    read = [a for a in first_seen if a not in ids]
    ids.update(_series_ids_of(db, read))
    created, refused = _create_series(db, batches, finite, ids, max_series, first_seen, read)
    staged = []
    refused_samples: dict[str, int] = {}
    for batch, (keys, values), found in zip(batches, finite, series_ids, strict=True):
        if found is None or batch.agent_id in stale:
            known = ids[batch.agent_id]
            found = [known.get(key, 0) for key in keys]
        if 0 in found:  # series refused at the bound: left out
            kept = [(sid, v) for sid, v in zip(found, values, strict=True) if sid]
            refused_samples[batch.agent_id] = (
                refused_samples.get(batch.agent_id, 0) + len(found) - len(kept)
            )
            found, values = [sid for sid, _ in kept], [v for _, v in kept]
        if found:
            staged.append(
                (
                    batch.agent_id,
                    batch.collected_ms,
                    batch.received_ms,
                    pack(_IDS, found),
                    pack(_VALUES, values),
                )
            )
    db.executemany(_STAGE, staged)
    return {
        agent_id: RecordOutcome(
            created.get(agent_id, {}),
            tuple(refused.get(agent_id, ())),
            refused_samples.get(agent_id, 0),
            ids[agent_id],
        )
        for agent_id in first_seen
    }


def _finite(batch: HistoryInput) -> tuple[Sequence[SeriesKey], Sequence[float]]:
    """The batch's keys and values without its NaN and infinite samples."""
    if math.isfinite(sum(batch.values)):  # the usual case: every value finite
        return batch.keys, batch.values
    kept = [(k, v) for k, v in zip(batch.keys, batch.values, strict=True) if math.isfinite(v)]
    return [k for k, _ in kept], [v for _, v in kept]


def _create_series(
    db: sqlite3.Connection,
    batches: Sequence[HistoryInput],
    finite: Sequence[tuple[Sequence[SeriesKey], Sequence[float]]],
    ids: dict[str, Mapping[SeriesKey, int]],
    max_series: int,
    first_seen: Mapping[str, int],
    hosts: Collection[str],
) -> tuple[dict[str, dict[SeriesKey, int]], dict[str, list[SeriesKey]]]:
    """Create, in one insert, the series that batches of ``hosts`` (those whose ids
    were read) send and their hosts lack (up to each host's bound); update ``ids``.
    Returns the series created and those refused, per host."""
    missing: dict[str, set[SeriesKey]] = {}
    wanted = set(hosts)
    for batch, (keys, _) in zip(batches, finite, strict=True):
        if batch.agent_id not in wanted:
            continue
        known = ids[batch.agent_id]
        lacking = {key for key in keys if key not in known}
        if lacking:
            missing.setdefault(batch.agent_id, set()).update(lacking)
    created: dict[str, dict[SeriesKey, int]] = {}
    refused: dict[str, list[SeriesKey]] = {}
    new_rows = []
    for agent_id, lacking_keys in missing.items():
        ordered = sorted(lacking_keys)
        room = max(0, max_series - len(ids[agent_id]))
        new_rows += [(agent_id, n, labels, first_seen[agent_id]) for n, labels in ordered[:room]]
        if ordered[room:]:
            refused[agent_id] = ordered[room:]
    if new_rows:
        db.executemany(
            "INSERT INTO history_series (agent_id, name, labels, created_ms) VALUES (?, ?, ?, ?)",
            new_rows,
        )
        grown = _series_ids_of(db, sorted({row[0] for row in new_rows}))
        for agent_id, name, labels, _ in new_rows:
            created.setdefault(agent_id, {})[(name, labels)] = grown[agent_id][(name, labels)]
        ids.update(grown)
    return created, refused


def fold_history(
    db: sqlite3.Connection, now_ms: int, from_agent: str, max_rows: int
) -> tuple[int, str | None]:
    """Fold up to ``max_rows`` due staged rows of agents from ``from_agent`` on (in
    agent order) into their 5-minute buckets, one upsert per (series, bucket), and
    delete them. Due: the row's bucket ended ``FOLD_GRACE_MS`` ago, or it arrived
    ``FOLD_BY_ARRIVAL_MS`` ago (a host whose clock is ahead). Returns how many rows
    were folded and the agent to go on from (None: nothing more is due)."""
    rows = db.execute(
        _DUE_BY_BUCKET, (from_agent, bucket_start(now_ms - FOLD_GRACE_MS, FINE), max_rows)
    ).fetchall()
    cursor = str(rows[-1][1]) if len(rows) == max_rows else None
    if cursor is None:
        taken = {row[0] for row in rows}
        late = db.execute(_DUE_BY_ARRIVAL, (now_ms - FOLD_BY_ARRIVAL_MS, max_rows)).fetchall()
        rows += [row for row in late if row[0] not in taken][: max_rows - len(rows)]
    if not rows:
        return 0, None
    sums = _bucket_sums(rows)
    alive = _live_series(db, sorted({str(row[1]) for row in rows}))
    db.executemany(
        _UPSERT_POINT,
        [
            (sid, FINE, start, int(p[0]), p[1], p[2], p[3])
            for (sid, start), p in sums.items()
            if sid in alive  # a series the roll-up dropped meanwhile is not brought back
        ],
    )
    staged_ids = sorted({int(row[0]) for row in rows})
    db.execute(_UNSTAGE, (json.dumps(staged_ids),))
    return len(staged_ids), cursor


def _bucket_sums(rows: Sequence[Sequence[Any]]) -> dict[tuple[int, int], list[float]]:
    """(series id, bucket start) -> [count, min, sum, max] of staged rows
    ``(id, agent, collected_ms, series_ids, values)``. Rows of one bucket with the same
    series (a host's batches) are summed a column at a time."""
    by_layout: dict[tuple[int, bytes], list[array.array[float]]] = {}
    for _, _, collected_ms, series_ids, values in rows:
        key = (bucket_start(int(collected_ms), FINE), bytes(series_ids))
        by_layout.setdefault(key, []).append(unpack(_VALUES, values))
    sums: dict[tuple[int, int], list[float]] = {}
    for (start, series_ids), value_rows in by_layout.items():
        ids = unpack(_IDS, series_ids)
        for sid, column in zip(ids, zip(*value_rows, strict=True), strict=True):
            point = sums.get((sid, start))
            if point is None:
                sums[(sid, start)] = [len(column), min(column), sum(column), max(column)]
            else:
                point[0] += len(column)
                point[1] = min(point[1], *column)
                point[2] += sum(column)
                point[3] = max(point[3], *column)
    return sums


def _live_series(db: sqlite3.Connection, agent_ids: Sequence[str]) -> set[int]:
    alive: set[int] = set()
    for chunk in chunks(agent_ids):
        rows = db.execute(
            f"SELECT series_id FROM history_series WHERE agent_id IN ({_marks(len(chunk))})",
            list(chunk),
        ).fetchall()
        alive.update(int(row[0]) for row in rows)
    return alive


def _staged_points(
    db: sqlite3.Connection, agent_id: str, since_ms: int, until_ms: int
) -> dict[int, list[HistoryPoint]]:
    """The host's staged values not folded yet, as 5-minute points per series id, for
    buckets starting in ``[since_ms, until_ms)``."""
    rows = db.execute(
        "SELECT collected_ms, series_ids, sample_values FROM history_staging "
        "WHERE agent_id = ? AND collected_ms >= ? AND collected_ms < ?",
        (agent_id, bucket_start(since_ms, FINE), until_ms),
    ).fetchall()
    sums: dict[int, dict[int, BucketSum]] = {}
    for collected_ms, series_ids, values in rows:
        start = bucket_start(int(collected_ms), FINE)
        if not since_ms <= start < until_ms:
            continue
        for sid, value in zip(unpack(_IDS, series_ids), unpack(_VALUES, values), strict=True):
            sums.setdefault(sid, {}).setdefault(start, BucketSum()).add(value)
    return {
        sid: [
            HistoryPoint(start, FINE, b.count, b.min, b.sum / b.count, b.max)
            for start, b in sorted(buckets.items())
        ]
        for sid, buckets in sums.items()
    }


def _series_ids_of(
    db: sqlite3.Connection, agent_ids: Sequence[str]
) -> dict[str, dict[SeriesKey, int]]:
    """Every series of each host in ``agent_ids`` (hosts without any map to {})."""
    found: dict[str, dict[SeriesKey, int]] = {agent_id: {} for agent_id in agent_ids}
    for chunk in chunks(agent_ids):
        rows = db.execute(
            "SELECT agent_id, series_id, name, labels FROM history_series "
            f"WHERE agent_id IN ({_marks(len(chunk))})",
            list(chunk),
        ).fetchall()
        for agent_id, sid, name, labels in rows:
            found[str(agent_id)][(str(name), str(labels))] = int(sid)
    return found


def _marks(count: int) -> str:
    return ", ".join("?" * count)
