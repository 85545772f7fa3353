"""PostgreSQL folds the metric history beside the writer: on its own connection, under a
lock of its own. A write transaction in progress (a long ingest commit, another replica's
writer) does not hold the fold up; the roll-up waits for a fold in progress; and two
replicas folding at once count every value once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from collector.history.policy import COARSE, FINE
from collector.store import AgentRecord, PostgresStore, StoredSample
from collector.store.postgres import FOLD_LOCK_KEY, WRITE_LOCK_KEY
from tests.pg_cluster import PgCluster

T0 = 1_700_000_000_000 - 1_700_000_000_000 % COARSE
MIN = 60_000
AFTER_THE_BUCKET = T0 + FINE + MIN  # T0's bucket ended a minute ago: due
WAIT = 30.0  # seconds a call that should go through may take on a loaded machine


@pytest.fixture
def database(pg_cluster: PgCluster) -> str:
    return pg_cluster.new_database()


def open_store(url: str, hosts: int = 0, batches: int = 0) -> PostgresStore:
    """A store on ``url`` with ``hosts`` hosts that each sent ``batches`` batches of
    one sample (value = the batch's number) in T0's bucket."""
    store = PostgresStore(url)
    for n in range(hosts):
        agent_id = f"a{n:03d}"
        store.add_agent(AgentRecord(agent_id, "acme", f"h{n}", T0, "s", T0 + 10**10))
        for b in range(1, batches + 1):
            sample = StoredSample("load1", {}, float(b))
            assert store.store_batch(agent_id, b, T0 + b * 1000, T0 + b * 1000, [sample], [])
    return store


@contextmanager
def lock_held(url: str, key: int) -> Iterator[None]:
    """Another session holding the advisory lock ``key`` in an open transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def test_the_fold_goes_on_while_a_write_transaction_holds_the_writer(database: str) -> None:
    store = open_store(database, hosts=3, batches=2)
    try:
        with lock_held(database, WRITE_LOCK_KEY):
            writer, _ = in_thread(lambda: store.store_batch("a000", 9, T0, T0, [], []))
            folder, folded = in_thread(lambda: store.fold_history(AFTER_THE_BUCKET))
            folder.join(WAIT)
            assert folded == [(6, None)]  # every host's two rows, while the writer waits
            writer.join(0.5)
            assert writer.is_alive()  # the writer does wait for the write lock
        writer.join(WAIT)
        assert not writer.is_alive()
        (series,) = store.metric_history("a001", ["load1"], T0, T0 + FINE)
        assert [(p.count, p.min, p.max) for p in series.points] == [(2, 1.0, 2.0)]
    finally:
        store.close()


def test_the_roll_up_waits_for_a_fold_in_progress(database: str) -> None:
    store = open_store(database, hosts=1, batches=1)
    try:
        with lock_held(database, FOLD_LOCK_KEY):
            roll_up, done = in_thread(lambda: store.roll_up_history(T0 + 3 * COARSE, 1, 10))
            roll_up.join(0.5)
            assert roll_up.is_alive() and not done
        roll_up.join(WAIT)
        assert done and done[0].next_series_id is None
    finally:
        store.close()


def test_two_replicas_folding_at_once_count_every_value_once(database: str) -> None:
    hosts, batches = 30, 4
    first = open_store(database, hosts=hosts, batches=batches)
    second = PostgresStore(database)
    try:
        start = threading.Barrier(2)

        def fold_all(store: PostgresStore) -> int:
            start.wait()
            total, after = 0, ""
            while after is not None:
                count, after = store.fold_history(AFTER_THE_BUCKET, after, 7)
                total += count
            return total

        runs = [in_thread(lambda store=store: fold_all(store)) for store in (first, second)]
        for thread, _ in runs:
            thread.join(WAIT)
        assert sum(result[0] for _, result in runs) == hosts * batches
        for n in range(hosts):
            (series,) = first.metric_history(f"a{n:03d}", ["load1"], T0, T0 + FINE)
            (point,) = series.points
            assert (point.count, point.avg) == (batches, 2.5), f"a{n:03d}"
    finally:
        first.close()
        second.close()
