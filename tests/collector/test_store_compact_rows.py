"""Migration 0017 on both backends: an agent's latest batch is one row, and the metric
history stages each batch as one row that the fold sums into buckets — with nothing
lost and no answer changed by when the fold runs."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from collector.history.policy import COARSE, FINE, FINE_RETAIN_MS
from collector.store import AgentRecord, Store, StoredFailure, StoredSample
from collector.store import postgres as postgres_backend
from collector.store import sqlite as sqlite_backend
from collector.store.dump import dump_tables
from collector.store.migrate import load_migrations
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000 - 1_700_000_000_000 % COARSE  # a whole hour
MIN = 60_000


def add_agent(store: Store, agent_id: str = "a1") -> str:
    store.add_agent(AgentRecord(agent_id, "acme", f"host-{agent_id}", T0, "s", T0 + 10**10))
    return agent_id


def cpu(value: float, core: str = "0") -> StoredSample:
    return StoredSample("cpu", {"core": core}, value)


def staged_rows(backend: StoreBackend) -> int:
    return int(backend.query_raw("SELECT COUNT(*) FROM history_staging")[0][0])


def answer(store: Store, step: int | None = None) -> list[tuple[Any, ...]]:
    series = store.metric_history("a1", [], T0 - COARSE, T0 + 3 * COARSE, step_ms=step)
    return [
        (s.name, dict(s.labels), p.start_ms, p.resolution_ms, p.count, p.min, p.avg, p.max)
        for s in series
        for p in s.points
    ]


# -- latest batch ------------------------------------------------------------------------


def test_latest_keeps_values_in_place_and_follows_a_new_layout(store: Store) -> None:
    add_agent(store)
    first = [cpu(1.0), StoredSample("load1", {}, math.inf), StoredSample("x", {"k": "v"}, 2.0)]
    assert store.store_batch("a1", 1, T0, T0, first, [])
    again = [cpu(3.0), StoredSample("load1", {}, -math.inf), StoredSample("x", {"k": "v"}, 4.0)]
    assert store.store_batch("a1", 2, T0 + MIN, T0 + MIN, again, [])  # same series: in place
    latest = store.latest("a1")
    assert latest is not None and (latest.sequence, latest.collected_ms) == (2, T0 + MIN)
    assert latest.samples == again
    nan = [StoredSample("other", {"a": 'quo"te\n'}, math.nan)]
    failures = [StoredFailure("smart", "smartctl not installed")]
    assert store.store_batch("a1", 3, T0 + 2 * MIN, T0 + 2 * MIN, nan, failures)  # new layout
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 3
    ((name, labels, value),) = latest.samples
    assert (name, labels) == ("other", {"a": 'quo"te\n'}) and math.isnan(value)
    assert latest.failures == failures
    assert store.store_batch("a1", 4, T0 + 3 * MIN, T0 + 3 * MIN, nan, [])  # failures gone
    latest = store.latest("a1")
    assert latest is not None and latest.failures == [] and latest.sequence == 4


def test_an_older_batch_never_replaces_the_latest(store: Store) -> None:
    add_agent(store)
    assert store.store_batch("a1", 2, T0 + MIN, T0, [cpu(2.0)], [])
    assert store.store_batch("a1", 1, T0, T0, [cpu(1.0)], [])  # sent late (store-and-forward)
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 2 and latest.samples == [cpu(2.0)]


# -- history staging and fold ------------------------------------------------------------


def feed(store: Store) -> None:
    """Two buckets of two series, a NaN (never counted) and one value an hour later."""
    for n, at in enumerate((T0, T0 + MIN, T0 + 4 * MIN, T0 + 6 * MIN, T0 + COARSE), start=1):
        samples = [cpu(float(n)), cpu(10.0 * n, core="1"), StoredSample("nan", {}, math.nan)]
        assert store.store_batch("a1", n, at, at, samples, [])


def test_reads_give_the_same_answer_before_and_after_the_fold(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.open()
    add_agent(store)
    feed(store)
    assert staged_rows(store_backend) == 5  # one row per batch
    before = [answer(store), answer(store, COARSE)]
    assert ("cpu", {"core": "0"}, T0, FINE, 3, 1.0, 2.0, 3.0) in before[0]
    assert not [row for row in before[0] if row[0] == "nan"]
    folded, after = store.fold_history(T0 + COARSE + FINE + MIN)  # every bucket has ended
    assert (folded, after) == (5, None)
    assert staged_rows(store_backend) == 0
    assert [answer(store), answer(store, COARSE)] == before
    assert store.fold_history(T0 + 2 * COARSE) == (0, None)


def test_the_fold_takes_only_ended_buckets_and_goes_on_in_chunks(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.open()
    for agent_id in ("a1", "a2", "a3"):
        add_agent(store, agent_id)
        for n in range(1, 4):
            assert store.store_batch(agent_id, n, T0 + n * MIN, T0 + n * MIN, [cpu(n)], [])
    assert store.store_batch("a1", 4, T0 + 5 * MIN, T0 + 5 * MIN, [cpu(9.0)], [])
    now = T0 + 5 * MIN + 40_000  # the first bucket ended 40 s ago, the second is open
    assert store.fold_history(now, "", 4) == (4, "a2")  # a1's three, one of a2's
    assert store.fold_history(now, "a2", 4) == (4, "a3")  # a2's other two, two of a3's
    assert store.fold_history(now, "a3", 4) == (1, None)
    assert staged_rows(store_backend) == 1  # a1's open bucket waits
    assert store.fold_history(T0 + 5 * MIN + 29_000) == (0, None)  # within the grace


def test_a_host_whose_clock_is_ahead_is_folded_by_arrival(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    add_agent(store)
    ahead = T0 + 365 * 24 * COARSE
    assert store.store_batch("a1", 1, ahead, T0, [cpu(5.0)], [])  # received at T0
    assert store.fold_history(T0 + 9 * MIN) == (0, None)
    assert store.fold_history(T0 + 10 * MIN + 1) == (1, None)
    (series,) = store.metric_history("a1", ["cpu"], ahead - FINE, ahead + FINE)
    assert [(p.start_ms, p.count, p.avg) for p in series.points] == [(ahead - ahead % FINE, 1, 5.0)]


def test_staged_values_survive_a_restart(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    add_agent(store)
    feed(store)
    before = answer(store)
    store.close()
    reopened = store_backend.open()
    assert answer(reopened) == before
    reopened.fold_history(T0 + 2 * COARSE)
    assert answer(reopened) == before


def test_the_roll_up_folds_first_and_never_drops_a_series_with_staged_values(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.open()
    add_agent(store)
    feed(store)
    now = T0 + FINE_RETAIN_MS + 2 * COARSE
    step = store.roll_up_history(now)
    assert step.rolled_up > 0 and staged_rows(store_backend) == 0
    assert store.store_batch("a1", 9, now, now, [cpu(1.0, core="new")], [])
    store.roll_up_history(now + 1)  # the new series has only a staged value: kept
    (series,) = store.metric_history("a1", ["cpu"], now - FINE, now + FINE, {"core": "new"})
    assert [p.count for p in series.points] == [1]


# -- migration and dump ------------------------------------------------------------------


def test_migration_0017_keeps_every_agents_latest_batch(
    store_backend: StoreBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sqlite_backend if store_backend.dialect == "sqlite" else postgres_backend
    everything = load_migrations(store_backend.dialect)
    monkeypatch.setattr(module, "load_migrations", lambda _: everything[:16])
    old = store_backend.open()
    add_agent(old)
    old.close()
    for sql, params in (
        (
            "INSERT INTO latest_batches (agent_id, sequence, collected_ms) VALUES (?, ?, ?)",
            ("a1", 7, T0),
        ),
        (
            "INSERT INTO latest_samples (agent_id, position, name, labels, value) "
            "VALUES (?, ?, ?, ?, ?)",
            ("a1", 1, "load1", "{}", None),
        ),
        (
            "INSERT INTO latest_samples (agent_id, position, name, labels, value) "
            "VALUES (?, ?, ?, ?, ?)",
            ("a1", 0, "cpu", '{"core":"0"}', 0.25),
        ),
        (
            "INSERT INTO latest_failures (agent_id, position, check_name, error) "
            "VALUES (?, ?, ?, ?)",
            ("a1", 0, "smart", "not installed"),
        ),
    ):
        store_backend.execute_raw(sql, params)
    monkeypatch.setattr(module, "load_migrations", lambda _: everything)
    store = store_backend.open()
    latest = store.latest("a1")
    assert latest is not None and (latest.sequence, latest.collected_ms) == (7, T0)
    assert latest.samples[0] == cpu(0.25)
    assert latest.samples[1][:2] == ("load1", {}) and math.isnan(latest.samples[1].value)
    assert latest.failures == [StoredFailure("smart", "not installed")]
    assert store.store_batch("a1", 8, T0 + MIN, T0 + MIN, [cpu(0.5)], [])
    latest = store.latest("a1")
    assert latest is not None and latest.samples == [cpu(0.5)] and latest.failures == []


def test_migration_0018_reads_json_values_until_the_next_batch_writes_an_array(
    store_backend: StoreBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sqlite_backend if store_backend.dialect == "sqlite" else postgres_backend
    everything = load_migrations(store_backend.dialect)
    monkeypatch.setattr(module, "load_migrations", lambda _: everything[:17])
    old = store_backend.open()
    add_agent(old)
    old.close()
    store_backend.execute_raw(  # a latest row as 0017 wrote it: values as JSON text
        "INSERT INTO latest_batches (agent_id, sequence, collected_ms, series, sample_values, "
        "failures) VALUES (?, ?, ?, ?, ?, ?)",
        ("a1", 7, T0, '[["cpu",{"core":"0"}],["cpu",{"core":"1"}]]', "[0.25, Infinity]", "[]"),
    )
    monkeypatch.setattr(module, "load_migrations", lambda _: everything)
    store = store_backend.open()
    latest = store.latest("a1")
    assert latest is not None and latest.samples == [cpu(0.25), cpu(math.inf, core="1")]
    assert store.store_batch("a1", 8, T0 + MIN, T0 + MIN, [cpu(0.5), cpu(math.nan, "1")], [])
    assert store.store_batch("a1", 9, T0 + 2 * MIN, T0 + 2 * MIN, [cpu(-0.0), cpu(7.5, "1")], [])
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 9
    assert [s.value for s in latest.samples] == [0.0, 7.5]
    assert math.copysign(1, latest.samples[0].value) == -1  # the array keeps every bit
    [(raw,)] = store_backend.query_raw(
        "SELECT value_bytes FROM latest_batches WHERE agent_id = ?", ("a1",)
    )
    assert bytes(raw) == struct.pack("<2d", -0.0, 7.5)


def test_the_dump_has_no_dropped_table_and_the_staging_table() -> None:
    tables = dump_tables()
    assert "latest_samples" not in tables and "latest_failures" not in tables
    assert tables.index("history_staging") > tables.index("agents")
