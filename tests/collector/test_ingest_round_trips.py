"""A group commit costs a fixed number of statements, whatever its size, and the
latest values updated in place are the right ones.

The store's connection is wrapped to count the SQL statements it runs (on PostgreSQL
each is one round trip): a group of 5 and a group of 60 batches must run the same
number, for first batches (series created) and steady ones alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collector.store import IncomingBatch, SQLiteStore, Store, StoredFailure, StoredSample
from tests.collector.test_store_contract import T0, make_agent, sample

SERIES = 20


class CountingConnection:
    """A sqlite3.Connection that counts execute/executemany calls."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.statements = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.statements += 1
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.statements += 1
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def samples(sequence: int, series: int = SERIES) -> list[StoredSample]:
    return [sample("disk_free", sequence * 100.0 + n, mount=f"/m{n}") for n in range(series)]


def incoming(
    agent_id: str,
    sequence: int,
    values: Sequence[StoredSample] | None = None,
    failures: Sequence[StoredFailure] = (),
) -> IncomingBatch:
    at = T0 + sequence * 15_000
    decoded = list(values if values is not None else samples(sequence))
    return IncomingBatch(agent_id, sequence, at, at + 5, lambda: (decoded, list(failures)))


def counting_store(path: Path, agents: int) -> tuple[SQLiteStore, CountingConnection]:
    store = SQLiteStore(path)
    for n in range(agents):
        store.add_agent(make_agent(f"a{n}", hostname=f"web{n}"))
    counting = CountingConnection(store._conn)  # type: ignore[arg-type]
    store._conn = counting  # type: ignore[assignment]
    return store, counting


def statements_per_group(path: Path, agents: int) -> list[int]:
    """Statements of the first group (series created) and of two steady groups."""
    store, counting = counting_store(path, agents)
    counts = []
    for sequence in (1, 2, 3):
        before = counting.statements
        outcomes = store.store_batches([incoming(f"a{n}", sequence) for n in range(agents)])
        assert all(o.stored for o in outcomes)
        counts.append(counting.statements - before)
    store.close()
    return counts


def test_a_group_of_5_and_of_60_batches_cost_the_same_statements(tmp_path: Path) -> None:
    small = statements_per_group(tmp_path / "small.db", 5)
    large = statements_per_group(tmp_path / "large.db", 60)
    assert large == small
    assert small[1] <= 10, small  # the old code ran 6 per batch plus one per new series


def test_values_updated_in_place_are_the_new_ones(store: Store) -> None:
    store.add_agent(make_agent("a1"))
    for sequence in (1, 2, 3):
        assert store.store_batches([incoming("a1", sequence)])[0].stored
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 3
    assert latest.samples == samples(3)


def test_a_host_sending_other_series_gets_them_rewritten(store: Store) -> None:
    store.add_agent(make_agent("a1"))
    store.store_batches([incoming("a1", 1)])
    store.store_batches([incoming("a1", 2)])
    fewer = [sample("load1", 0.5), *samples(3, series=3)]
    store.store_batches([incoming("a1", 3, fewer)])
    latest = store.latest("a1")
    assert latest is not None and latest.samples == fewer
    failed = [StoredFailure("disks", "timed out")]
    store.store_batches([incoming("a1", 4, samples(4, series=3), failed)])
    store.store_batches([incoming("a1", 5, samples(5, series=3))])  # failures gone again
    latest = store.latest("a1")
    assert latest is not None and latest.failures == []
    assert latest.samples == samples(5, series=3)


def test_an_older_batch_does_not_replace_the_latest(store: Store) -> None:
    store.add_agent(make_agent("a1"))
    store.store_batches([incoming("a1", 5)])
    store.store_batches([incoming("a1", 4), incoming("a1", 3)])  # late, from the spool
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 5 and latest.samples == samples(5)


def test_another_writer_in_between_is_noticed(tmp_path: Path) -> None:
    """Two stores on one database (two replicas; here two SQLite handles): when the
    other wrote an agent's latest batch with other series, this one must not update
    its remembered layout in place."""
    path = tmp_path / "shared.db"
    ours, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        ours.add_agent(make_agent("a1"))
        ours.store_batches([incoming("a1", 1)])
        ours.store_batches([incoming("a1", 2)])  # ours now remembers 20 disk series
        other = [sample("load1", 9.0), *samples(3)[:-1]]  # same count, other series
        theirs.store_batches([incoming("a1", 3, other)])
        ours.store_batches([incoming("a1", 4)])
        latest = theirs.latest("a1")
        assert latest is not None and latest.sequence == 4
        assert latest.samples == samples(4)
    finally:
        ours.close()
        theirs.close()
