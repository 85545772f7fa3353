"""Ingest rows: one group commit of agent batches in a fixed number of statements.

Called by ``SQLiteStore.store_batches`` (and so by the PostgreSQL store, which shares
its methods) inside one write transaction. Every step covers the whole group, so a
group of G batches costs about ten statements whatever G is — on PostgreSQL each
statement is one round trip (``executemany`` of an INSERT is one ``unnest``
statement there), where one statement per batch and step cost G times as many:

1. claim every (agent, sequence) with one multi-row ``INSERT ... ON CONFLICT DO
   NOTHING RETURNING``: the rows returned are the new batches; the others (stored
   before, or twice in this group) are duplicates and are never decoded;
2. decode the new batches;
3. ``agents.last_seen_ms`` for every agent of the group;
4. the latest values: per agent only the newest new batch (collection time, then
   sequence), and only if it is newer than the stored latest — read for the whole
   group at once. An agent's latest batch is one ``latest_batches`` row (series and
   failures as JSON text, values as a float64 array): where the agent sends the same
   series as in its stored latest batch only its values are updated, else the whole
   row is rewritten;
5. the metric history (``collector.store.history_rows.record_group_history``): one
   staging row per batch.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from collector.audit import canonical_json
from collector.errors import InvalidRequest, UnknownAgent
from collector.store.base import IncomingBatch, StoredFailure, StoredSample
from collector.store.chunks import chunks
from collector.store.history_rows import (
    HistoryInput,
    RecordOutcome,
    SeriesKey,
    record_group_history,
)
from collector.store.packed import FLOAT64, pack, unpack

__all__ = ["GroupResult", "LabelSet", "Layout", "check_sequence", "labels_json", "store_group"]

T = TypeVar("T")
_CLAIM_ROWS = 1000  # rows per claim statement (4 parameters each; SQLite allows 32,766)

_CLAIM = "INSERT INTO ingest_log (agent_id, sequence, kind, received_ms) VALUES "
_CLAIM_END = " ON CONFLICT (agent_id, sequence) DO NOTHING RETURNING agent_id, sequence"
_UPSERT_LATEST = (
    "INSERT INTO latest_batches (agent_id, sequence, collected_ms, series, sample_values, "
    "value_bytes, failures) VALUES (?, ?, ?, ?, '[]', ?, ?) ON CONFLICT (agent_id) DO UPDATE "
    "SET sequence = excluded.sequence, collected_ms = excluded.collected_ms, "
    "series = excluded.series, sample_values = '[]', value_bytes = excluded.value_bytes, "
    "failures = excluded.failures"
)
_UPDATE_VALUES = (
    "UPDATE latest_batches SET sequence = ?, collected_ms = ?, sample_values = '[]', "
    "value_bytes = ? WHERE agent_id = ?"
)
_LAST_SEEN = "UPDATE agents SET last_seen_ms = ? WHERE agent_id = ?"


@dataclass(frozen=True)
class GroupResult:
    """What one group did: per batch (in order) its decoded samples if it was new, None
    if a duplicate; per agent what the history did (to update the caller's cache)."""

    samples: list[Sequence[StoredSample] | None]
    history: Mapping[str, RecordOutcome]
    layouts: Mapping[str, Layout]  # latest batches written, per agent


@dataclass
class _New:
    """A newly claimed batch, decoded."""

    batch: IncomingBatch
    samples: Sequence[StoredSample]
    failures: Sequence[StoredFailure]
    keys: tuple[SeriesKey, ...]  # (name, labels JSON) per sample
    values: Sequence[float]  # per sample


def store_group(
    db: sqlite3.Connection,
    batches: Sequence[IncomingBatch],
    series_cache: Mapping[str, Mapping[SeriesKey, int]],
    layouts: Mapping[str, Layout],
    max_series: int,
) -> GroupResult:
    """Store ``batches`` (all or nothing: the caller's transaction). Raises
    InvalidRequest for a sequence out of range and UnknownAgent if an agent does not
    exist (for a group of one, naming it); the caller then retries batch by batch."""
    for batch in batches:
        check_sequence(batch.sequence)
    claimed = _claim(db, batches)
    new: list[_New] = []
    samples: list[Sequence[StoredSample] | None] = []
    for batch in batches:
        key = (batch.agent_id, batch.sequence)
        if key not in claimed:
            samples.append(None)
            continue
        claimed.discard(key)  # a second copy in this group is a duplicate
        decoded, failures = batch.decode()
        keys = _keys_of(decoded)
        values = getattr(decoded, "values", None) or [s.value for s in decoded]
        new.append(_New(batch, decoded, failures, keys, values))
        samples.append(decoded)
    if not new:
        return GroupResult(samples, {}, {})
    last_seen: dict[str, int] = {}
    for item in new:
        last_seen[item.batch.agent_id] = item.batch.received_ms
    db.executemany(_LAST_SEEN, [(ms, agent_id) for agent_id, ms in last_seen.items()])
    written = _replace_latest(db, new, layouts)
    history = record_group_history(
        db,
        [
            HistoryInput(
                i.batch.agent_id, i.batch.collected_ms, i.batch.received_ms, i.keys, i.values
            )
            for i in new
        ],
        max_series,
        series_cache,
    )
    return GroupResult(samples, history, written)


def check_sequence(sequence: int) -> None:
    """InvalidRequest unless ``sequence`` is positive (the stream checks the upper bound)."""
    if sequence < 1:
        raise InvalidRequest(f"sequence numbers start at 1, got {sequence}")


def _claim(db: sqlite3.Connection, batches: Sequence[IncomingBatch]) -> set[tuple[str, int]]:
    """Record every (agent, sequence) as stored; return those that were not before."""
    claimed: set[tuple[str, int]] = set()
    for chunk in chunks(batches, _CLAIM_ROWS):
        values = ", ".join(["(?, ?, 'batch', ?)"] * len(chunk))
        params = [p for b in chunk for p in (b.agent_id, b.sequence, b.received_ms)]
        try:
            rows = db.execute(_CLAIM + values + _CLAIM_END, params).fetchall()
        except sqlite3.IntegrityError as exc:  # foreign key: no such agent
            raise UnknownAgent(chunk[0].agent_id if len(chunk) == 1 else "in group") from exc
        claimed.update((str(agent_id), int(sequence)) for agent_id, sequence in rows)
    return claimed


def _replace_latest(
    db: sqlite3.Connection, new: Sequence[_New], layouts: Mapping[str, Layout]
) -> dict[str, Layout]:
    """Make each agent's newest batch its latest values, if newer than the stored ones.

    An agent whose stored latest batch is the one ``layouts`` remembers (same sequence,
    so no other writer replaced it since) and has the same series in the same order
    (the usual case: a host sends the same series every interval), without failures
    before or now, gets its values updated in place; the others are rewritten. Returns
    the layouts written (for the caller to remember once committed)."""
    newest: dict[str, _New] = {}
    for item in new:
        best = newest.get(item.batch.agent_id)
        if best is None or _order(item) > _order(best):
            newest[item.batch.agent_id] = item
    stored: dict[str, tuple[int, int]] = {}
    for chunk in chunks(list(newest)):
        rows = db.execute(
            "SELECT agent_id, collected_ms, sequence FROM latest_batches "
            f"WHERE agent_id IN ({_marks(len(chunk))})",
            chunk,
        ).fetchall()
        stored.update((str(a), (int(c), int(s))) for a, c, s in rows)
    changed = [
        item
        for agent_id, item in newest.items()
        if agent_id not in stored or _order(item) > stored[agent_id]
    ]
    if not changed:
        return {}
    written = {i.batch.agent_id: Layout.of(i) for i in changed}
    in_place = [
        i
        for i in changed
        if not i.failures
        and (known := layouts.get(i.batch.agent_id)) is not None
        and known.sequence == stored.get(i.batch.agent_id, (0, 0))[1]
        and known.same_series(written[i.batch.agent_id])
    ]
    updated = {i.batch.agent_id for i in in_place}
    if in_place:
        db.executemany(
            _UPDATE_VALUES,
            [
                (i.batch.sequence, i.batch.collected_ms, values_bytes(i.values), i.batch.agent_id)
                for i in in_place
            ],
        )
    rewrite = [i for i in changed if i.batch.agent_id not in updated]
    if rewrite:
        db.executemany(
            _UPSERT_LATEST,
            [
                (
                    i.batch.agent_id,
                    i.batch.sequence,
                    i.batch.collected_ms,
                    _series_json(i.keys),
                    values_bytes(i.values),
                    json.dumps([[f.check, f.error] for f in i.failures]),
                )
                for i in rewrite
            ],
        )
    return written


def values_bytes(values: Sequence[float]) -> bytes:
    """The values as a little-endian float64 array (``latest_batches.value_bytes``)."""
    return pack(FLOAT64, values)


def values_of(value_bytes: bytes | None, sample_values: str) -> Sequence[float]:
    """A latest row's values: ``value_bytes`` (from migration 0018 on), else the JSON of
    older rows (null for NaN, as migration 0017 wrote it)."""
    if value_bytes is not None:
        return unpack(FLOAT64, value_bytes)
    return [math.nan if v is None else float(v) for v in json.loads(sample_values)]


def _series_json(keys: Sequence[SeriesKey]) -> str:
    """``[[name, labels], ...]`` from names and canonical labels JSON, in order."""
    return "[" + ",".join(f"[{json.dumps(name)},{labels}]" for name, labels in keys) + "]"


_KEYS_BY_LAYOUT: dict[object, tuple[SeriesKey, ...]] = {}
_MAX_LAYOUTS = 50_000


def _keys_of(samples: Sequence[StoredSample]) -> tuple[SeriesKey, ...]:
    """Each sample's (name, canonical labels JSON). Samples a decoder marked with a
    ``layout`` (one object per distinct series list, see
    ``collector.server.batch_decode``) share the answer for that layout."""
    layout = getattr(samples, "layout", None)
    if layout is not None and (keys := _KEYS_BY_LAYOUT.get(layout)) is not None:
        return keys
    keys = tuple([(s.name, labels_json(s.labels)) for s in samples])
    if layout is not None:
        if len(_KEYS_BY_LAYOUT) >= _MAX_LAYOUTS:
            _KEYS_BY_LAYOUT.clear()
        _KEYS_BY_LAYOUT[layout] = keys
    return keys


@dataclass(frozen=True)
class Layout:
    """What an agent's stored latest batch holds, remembered to update it in place: its
    sequence, the hash of its series (names and labels, in order; str hashes are keyed
    per process, so an agent cannot aim at a collision) and whether it had failures."""

    sequence: int
    series_hash: int
    failures: bool

    @classmethod
    def of(cls, item: _New) -> Layout:
        series = hash(item.keys)
        return cls(item.batch.sequence, series, bool(item.failures))

    def same_series(self, other: Layout) -> bool:
        return not self.failures and self.series_hash == other.series_hash


def _order(item: _New) -> tuple[int, int]:
    return item.batch.collected_ms, item.batch.sequence


class LabelSet(dict[str, str]):
    """Labels that carry their canonical JSON (made once, by a decoder that remembers
    label sets); read-only by convention, like every sample's labels."""

    __slots__ = ("canonical_json",)

    def __init__(self, labels: Mapping[str, str]) -> None:
        super().__init__(labels)
        self.canonical_json = _labels_json_of(tuple(sorted(self.items())))


def labels_json(labels: Mapping[str, str]) -> str:
    """``canonical_json(labels)``, remembered: a host sends the same label sets in
    every batch, and encoding them was a third of the writer's time per batch."""
    if isinstance(labels, LabelSet):
        return labels.canonical_json
    return _labels_json_of(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=65_536)
def _labels_json_of(items: tuple[tuple[str, str], ...]) -> str:
    return canonical_json(dict(items))


def _marks(count: int) -> str:
    return ", ".join("?" * count)
