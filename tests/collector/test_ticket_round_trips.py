"""SLA ticks and ticket lists cost O(1) store round trips, not one per open ticket.

The store's connection is wrapped to count the SQL statements it runs; the same tick or
list over 5 and over 500 open tickets must run the same number.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.store import SQLiteStore
from collector.tickets.model import NewEvent, NewTicket
from tests.collector.test_ticket_service import ENGINEER, ESCALATING, T0, Rig, run


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[[str], Rig]]:
    """Escalating ticket services over their own stores; closed afterwards."""
    opened: list[Rig] = []

    def make(name: str) -> Rig:
        opened.append(Rig(tmp_path / name, ESCALATING))
        return opened[-1]

    yield make
    for rig in opened:
        rig.close()


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


def open_tickets(rig: Rig, count: int) -> CountingConnection:
    store = rig.db.store
    assert isinstance(store, SQLiteStore)
    for n in range(count):
        store.create_ticket(
            NewTicket(customer="acme", title=f"disk {n} slow", level="3", source="engineer"),
            NewEvent(at_ms=T0, actor="user:erin", kind="opened"),
        )
    counting = CountingConnection(store._conn)  # type: ignore[arg-type]
    store._conn = counting  # type: ignore[assignment]
    return counting


def statements_per_tick(rig: Rig, count: int) -> tuple[int, int]:
    counting = open_tickets(rig, count)
    rig.tick(T0 + 1000)  # nothing due yet: pure reads
    tick = counting.statements
    views = run(rig.service.list_tickets(ENGINEER, [], None, None))
    assert len(views) == count
    return tick, counting.statements - tick


def test_a_tick_and_a_list_cost_the_same_for_5_and_500_tickets(
    make_rig: Callable[[str], Rig],
) -> None:
    small = statements_per_tick(make_rig("small"), 5)
    large = statements_per_tick(make_rig("large"), 500)
    assert large == small
    assert small[0] <= 8 and small[1] <= 8, small


def test_a_tick_still_sees_each_tickets_own_timeline(make_rig: Callable[[str], Rig]) -> None:
    """Batched reads give each ticket its own events: a breach is recorded on the
    breached ticket only, once."""
    rig = make_rig("one")
    open_tickets(rig, 3)
    rig.tick(T0 + 11 * 60_000)  # past the 10 min response target of all three
    rig.tick(T0 + 12 * 60_000)
    for ticket in rig.tickets():
        breaches = [e for e in rig.events(ticket.id) if e.kind == "escalation"]
        breach_events = [e for e in breaches if e.details.get("type") == "breach"]
        assert len(breach_events) == 1, (ticket.id, breaches)
        assert all(e.ticket_id == ticket.id for e in rig.events(ticket.id))
