"""HostHistory (what the inspection service reads) and the roll-up driver, on a real
store behind its writer thread."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.errors import InvalidRequest
from collector.history.policy import COARSE, DAY_MS, FINE, FINE_RETAIN_MS
from collector.history.query import HostHistory, roll_up
from collector.store import AgentRecord, SQLiteStore, StoredSample
from collector.store.writer import StoreThread

T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS  # midnight UTC


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StoreThread]:
    store = SQLiteStore(tmp_path / "h.db")
    store.add_agent(AgentRecord("a1", "acme", "web1", T0, "s1", T0 + DAY_MS))
    store.add_agent(AgentRecord("a2", "acme", "web2", T0, "s2", T0 + DAY_MS))
    thread = StoreThread(store)
    yield thread
    thread.close()


def feed(db: StoreThread, agent_id: str, hours: int) -> None:
    """One batch every 5 minutes for ``hours``: load = the hour number, fs per mount."""
    for sequence, minute in enumerate(range(0, hours * 60, 5), start=1):
        at = T0 + minute * 60_000
        samples = [
            StoredSample("load_average", {"period": "1m"}, float(minute // 60)),
            StoredSample("filesystem_used_ratio", {"mountpoint": "/"}, 0.5),
            StoredSample("filesystem_used_ratio", {"mountpoint": "/var"}, 0.7),
        ]
        assert db.store.store_batch(agent_id, sequence, at, at, samples, [])


def test_history_of_a_whole_host_by_name_in_hourly_buckets(db: StoreThread) -> None:
    feed(db, "a1", hours=3)
    feed(db, "a2", hours=1)
    history = asyncio.run(HostHistory(db).history("a1", T0, T0 + 90 * DAY_MS))
    assert sorted(history) == ["filesystem_used_ratio", "load_average"]
    assert [dict(s.labels) for s in history["filesystem_used_ratio"]] == [
        {"mountpoint": "/"},
        {"mountpoint": "/var"},
    ]
    [load] = history["load_average"]
    assert [(p.start_ms, p.resolution_ms, p.count, p.avg) for p in load.points] == [
        (T0 + h * COARSE, COARSE, 12, float(h)) for h in range(3)
    ]


def test_a_short_period_keeps_five_minute_buckets(db: StoreThread) -> None:
    feed(db, "a1", hours=1)
    history = asyncio.run(HostHistory(db).history("a1", T0, T0 + COARSE))
    assert {p.resolution_ms for p in history["load_average"][0].points} == {FINE}
    with pytest.raises(InvalidRequest):
        asyncio.run(HostHistory(db).history("a1", T0, T0))


def test_roll_up_walks_every_series_in_chunks(db: StoreThread) -> None:
    feed(db, "a1", hours=2)
    feed(db, "a2", hours=1)
    done = asyncio.run(roll_up(db, T0 + FINE_RETAIN_MS + 2 * COARSE, chunk=2))
    assert (done.rolled_up, done.dropped, done.series_dropped) == (3 * 24 + 3 * 12, 0, 0)
    assert done.next_series_id is None
    history = asyncio.run(HostHistory(db).history("a1", T0, T0 + 2 * COARSE))
    assert [p.resolution_ms for p in history["load_average"][0].points] == [COARSE, COARSE]
