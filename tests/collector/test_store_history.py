"""The Store contract for the metric history: every backend passes it unchanged."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.errors import InvalidRequest
from collector.history.model import HistoryPoint, HistorySeries
from collector.history.policy import (
    COARSE,
    COARSE_RETAIN_MS,
    DAY_MS,
    FINE,
    FINE_RETAIN_MS,
    MAX_SERIES_PER_HOST,
)
from collector.metrics import CollectorMetrics
from collector.store import AgentRecord, SQLiteStore, Store, StoredSample
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000 - 1_700_000_000_000 % COARSE  # a whole hour
MIN = 60_000


def agent(store: Store, agent_id: str = "a1") -> str:
    store.add_agent(
        AgentRecord(
            agent_id=agent_id,
            customer="acme",
            hostname=f"host-{agent_id}",
            enrolled_ms=T0,
            cert_serial=f"serial-{agent_id}",
            cert_not_after_ms=T0 + DAY_MS,
        )
    )
    return agent_id


class Feeder:
    """Stores batches with increasing sequences, as an agent would send them."""

    def __init__(self, store: Store, agent_id: str) -> None:
        self.store, self.agent_id, self.sequence = store, agent_id, 0

    def batch(self, at_ms: int, *samples: StoredSample) -> None:
        self.sequence += 1
        assert self.store.store_batch(self.agent_id, self.sequence, at_ms, at_ms, samples, [])


def cpu(value: float, **labels: str) -> StoredSample:
    return StoredSample("cpu", labels or {"core": "0"}, value)


def points(series: list[HistorySeries]) -> list[tuple[int, int, int, float, float, float]]:
    assert len(series) == 1
    return [(p.start_ms, p.resolution_ms, p.count, p.min, p.avg, p.max) for p in series[0].points]


def test_samples_fold_into_five_minute_buckets(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0 + 10_000, cpu(1.0))
    feed.batch(T0 + 4 * MIN, cpu(3.0))
    feed.batch(T0 + 5 * MIN, cpu(10.0))
    got = store.metric_history("a1", ["cpu"], T0, T0 + COARSE)
    assert points(got) == [(T0, FINE, 2, 1.0, 2.0, 3.0), (T0 + FINE, FINE, 1, 10.0, 10.0, 10.0)]
    assert got[0].labels == {"core": "0"}


def test_late_and_out_of_order_samples_land_in_their_bucket(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0 + 7 * MIN, cpu(5.0))
    feed.batch(T0 + 1 * MIN, cpu(2.0))  # collected earlier, arrives later
    feed.batch(T0 + 6 * MIN, cpu(9.0))
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + COARSE)) == [
        (T0, FINE, 1, 2.0, 2.0, 2.0),
        (T0 + FINE, FINE, 2, 5.0, 7.0, 9.0),
    ]


def test_nan_and_infinite_samples_are_not_counted(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, cpu(math.nan), cpu(4.0, core="1"))
    feed.batch(T0 + MIN, cpu(2.0), cpu(math.inf, core="1"))
    feed.batch(T0 + 2 * MIN, StoredSample("only_nan", {}, math.nan))
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + FINE, {"core": "0"})) == [
        (T0, FINE, 1, 2.0, 2.0, 2.0)
    ]
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + FINE, {"core": "1"})) == [
        (T0, FINE, 1, 4.0, 4.0, 4.0)
    ]
    assert store.metric_history("a1", ["only_nan"], T0, T0 + FINE) == []


def test_duplicate_batches_are_counted_once(store: Store) -> None:
    agent(store)
    assert store.store_batch("a1", 1, T0, T0, [cpu(1.0)], [])
    assert not store.store_batch("a1", 1, T0, T0, [cpu(1.0)], [])
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + FINE))[0][2] == 1


def test_filters_by_name_labels_period_and_host(store: Store) -> None:
    feed = Feeder(store, agent(store))
    other = Feeder(store, agent(store, "a2"))
    feed.batch(T0, cpu(1.0), cpu(2.0, core="1"), StoredSample("mem", {}, 7.0))
    feed.batch(T0 + COARSE, cpu(3.0))
    other.batch(T0, cpu(99.0))
    every = store.metric_history("a1", [], T0, T0 + 2 * COARSE)
    assert [(s.name, dict(s.labels)) for s in every] == [
        ("cpu", {"core": "0"}),
        ("cpu", {"core": "1"}),
        ("mem", {}),
    ]
    only = store.metric_history("a1", ["cpu"], T0, T0 + COARSE, {"core": "0"})
    assert points(only) == [(T0, FINE, 1, 1.0, 1.0, 1.0)]
    assert store.metric_history("a1", ["cpu"], T0, T0 + COARSE, {"core": "9"}) == []
    assert points(store.metric_history("a2", ["cpu"], T0, T0 + 2 * COARSE))[0][3] == 99.0


def test_step_rebuckets_with_count_weighted_average(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, cpu(1.0))
    feed.batch(T0 + MIN, cpu(2.0))
    feed.batch(T0 + 30 * MIN, cpu(6.0))
    got = store.metric_history("a1", ["cpu"], T0, T0 + COARSE, step_ms=COARSE)
    assert points(got) == [(T0, COARSE, 3, 1.0, 3.0, 6.0)]


def test_bad_queries_are_refused(store: Store) -> None:
    agent(store)
    with pytest.raises(InvalidRequest, match="empty"):
        store.metric_history("a1", [], T0, T0)
    with pytest.raises(InvalidRequest, match="step"):
        store.metric_history("a1", [], T0, T0 + DAY_MS, step_ms=7)
    with pytest.raises(InvalidRequest, match="coarser step"):
        store.metric_history("a1", [], T0, T0 + 400 * DAY_MS)


def roll_up_all(store: Store, now_ms: int, chunk: int = 1000) -> tuple[int, int, int]:
    totals = [0, 0, 0]
    after: int | None = 0
    while after is not None:
        step = store.roll_up_history(now_ms, after, chunk)
        totals = [
            totals[0] + step.rolled_up,
            totals[1] + step.dropped,
            totals[2] + step.series_dropped,
        ]
        after = step.next_series_id
    return totals[0], totals[1], totals[2]


def test_roll_up_at_the_fine_retention_boundary(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, cpu(1.0))
    feed.batch(T0 + 10 * MIN, cpu(5.0))
    feed.batch(T0 + COARSE, cpu(7.0))  # the next hour: not yet old enough
    now = T0 + FINE_RETAIN_MS + COARSE  # the first hour is exactly at the cutoff
    assert roll_up_all(store, now - 1) == (0, 0, 0)
    assert roll_up_all(store, now) == (2, 0, 0)
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + 2 * COARSE)) == [
        (T0, COARSE, 2, 1.0, 3.0, 5.0),
        (T0 + COARSE, FINE, 1, 7.0, 7.0, 7.0),
    ]


def test_late_sample_for_a_rolled_up_hour_merges(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, cpu(1.0))
    now = T0 + FINE_RETAIN_MS + COARSE
    roll_up_all(store, now)
    feed.batch(T0 + 20 * MIN, cpu(3.0))  # late, for the hour already rolled up
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + COARSE)) == [
        (T0, COARSE, 2, 1.0, 2.0, 3.0)
    ]
    assert roll_up_all(store, now) == (1, 0, 0)
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + COARSE)) == [
        (T0, COARSE, 2, 1.0, 2.0, 3.0)
    ]


def test_coarse_retention_drops_old_hours_and_empty_series(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, cpu(1.0))
    feed.batch(T0 + COARSE, cpu(2.0))
    roll_up_all(store, T0 + FINE_RETAIN_MS + 2 * COARSE)
    assert roll_up_all(store, T0 + COARSE_RETAIN_MS + COARSE) == (0, 1, 0)
    assert len(points(store.metric_history("a1", ["cpu"], T0, T0 + 2 * COARSE))) == 1
    assert roll_up_all(store, T0 + COARSE_RETAIN_MS + 2 * COARSE) == (0, 1, 1)
    assert store.metric_history("a1", ["cpu"], T0, T0 + 2 * COARSE) == []


def test_roll_up_walks_series_in_chunks(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, *(cpu(float(i), core=str(i)) for i in range(5)))
    first = store.roll_up_history(T0 + FINE_RETAIN_MS + COARSE, 0, 2)
    assert first.rolled_up == 2 and first.next_series_id is not None
    assert roll_up_all(store, T0 + FINE_RETAIN_MS + COARSE, chunk=2) == (3, 0, 0)


def test_series_bound_refuses_new_series_counted_and_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, *(cpu(1.0, core=f"{i:04}") for i in range(MAX_SERIES_PER_HOST)))
    with caplog.at_level(logging.WARNING):
        feed.batch(T0 + MIN, cpu(2.0, core="0000"), cpu(5.0, core="new1"), cpu(5.0, core="new2"))
    assert store.history_refusals() == {"a1": 2}
    assert "at its bound" in caplog.text
    assert store.metric_history("a1", ["cpu"], T0, T0 + FINE, {"core": "new1"}) == []
    assert points(store.metric_history("a1", ["cpu"], T0, T0 + FINE, {"core": "0000"}))[0][2] == 2
    # the batch itself is stored whole: latest values keep every sample
    latest = store.latest("a1")
    assert latest is not None and len(latest.samples) == 3


def test_history_survives_reopening(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    Feeder(store, agent(store)).batch(T0, cpu(4.0))
    store.close()
    again = store_backend.open()
    assert points(again.metric_history("a1", ["cpu"], T0, T0 + FINE)) == [
        (T0, FINE, 1, 4.0, 4.0, 4.0)
    ]


def test_points_are_history_points(store: Store) -> None:
    Feeder(store, agent(store)).batch(T0, cpu(4.0))
    got = store.metric_history("a1", ["cpu"], T0, T0 + FINE)
    assert got == [HistorySeries("cpu", {"core": "0"}, [HistoryPoint(T0, FINE, 1, 4.0, 4.0, 4.0)])]


def test_refusals_are_exposed_on_metrics(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bound.db", history_max_series=1)
    try:
        feed = Feeder(store, agent(store))
        feed.batch(T0, cpu(1.0, core="0"), cpu(2.0, core="1"), cpu(3.0, core="2"))
        registry = CollectorRegistry()
        CollectorMetrics(registry, store.history_refusals)
        text = generate_latest(registry).decode()
        assert 'aftercare_history_refused_samples_total{agent_id="a1"} 2.0' in text
    finally:
        store.close()


def test_a_finer_step_never_splits_a_rolled_up_hour(store: Store) -> None:
    feed = Feeder(store, agent(store))
    feed.batch(T0, cpu(1.0))
    feed.batch(T0 + 30 * MIN, cpu(3.0))
    feed.batch(T0 + COARSE + 10 * MIN, cpu(5.0))
    roll_up_all(store, T0 + FINE_RETAIN_MS + COARSE)  # only the first hour rolls up
    got = store.metric_history("a1", ["cpu"], T0, T0 + 2 * COARSE, step_ms=FINE)
    assert points(got) == [
        (T0, COARSE, 2, 1.0, 2.0, 3.0),
        (T0 + COARSE + 2 * FINE, FINE, 1, 5.0, 5.0, 5.0),
    ]
