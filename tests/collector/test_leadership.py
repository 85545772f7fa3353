"""Leader election over leases in a real SQLite store, with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.errors import InvalidRequest
from collector.leadership import Leadership
from collector.store.sqlite import SQLiteStore
from tests.fakes import FakeClock


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "leases.db")


def pair(store: SQLiteStore, clock: FakeClock[int]) -> tuple[Leadership, Leadership]:
    return Leadership(store, "a", 3000, clock), Leadership(store, "b", 3000, clock)


def test_only_one_replica_leads(store: SQLiteStore) -> None:
    clock = FakeClock(1_000_000)
    a, b = pair(store, clock)
    assert a.check() is True
    assert b.check() is False
    assert (a.leads(), b.leads()) == (True, False)


def test_leader_keeps_the_lease_by_renewing(store: SQLiteStore) -> None:
    clock = FakeClock(1_000_000)
    a, b = pair(store, clock)
    for _ in range(10):
        assert a.check() is True
        clock.now += 2000  # one interval, less than the 3 s lease
        assert b.check() is False


def test_dead_leader_hands_over_after_its_lease_expires(store: SQLiteStore) -> None:
    clock = FakeClock(1_000_000)
    a, b = pair(store, clock)
    assert a.check()
    clock.now += 2999
    assert b.check() is False  # not yet expired
    clock.now += 1
    assert b.check() is True  # a stopped renewing: b takes over
    assert a.check() is False  # a comes back: it does not lead again
    assert not a.leads()


def test_resign_hands_over_at_once(store: SQLiteStore) -> None:
    clock = FakeClock(1_000_000)
    a, b = pair(store, clock)
    assert a.check()
    a.resign()
    assert b.check() is True


def test_leases_are_independent(store: SQLiteStore) -> None:
    clock = FakeClock(1_000_000)
    a, b = pair(store, clock)
    assert a.check("evaluation")
    assert b.check("inspections")
    assert b.check("evaluation") is False


def test_release_by_a_non_holder_changes_nothing(store: SQLiteStore) -> None:
    clock = FakeClock(1_000_000)
    a, b = pair(store, clock)
    assert a.check()
    store.release_lease("evaluation", "b")
    assert b.check() is False


def test_bad_claims_are_refused(store: SQLiteStore) -> None:
    with pytest.raises(InvalidRequest, match="name and a holder"):
        store.claim_lease("", "a", 0, 1000)
    with pytest.raises(InvalidRequest, match="positive"):
        store.claim_lease("evaluation", "a", 0, 0)
    with pytest.raises(ValueError, match="positive"):
        Leadership(store, "a", 0, FakeClock(1_000_000))
