"""Alert scopes: two replicas' ticket services on one store reconcile only their keys.

Real objects: two ``TicketService``s (two "replicas") over one SQLite file, each
behind its own ``StoreThread``; a fake clock; rule ``Alert``s as the engine makes them.
Replica A leads (heartbeats); host web-1 streams to B, then moves to A.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from collector.alert_scope import EvaluationScope, replica_scope
from collector.rules import Alert, HostRef, dedup_key
from collector.store import open_store
from collector.store.writer import StoreThread
from collector.tickets.config import TicketsConfig
from collector.tickets.model import Ticket
from collector.tickets.service import TicketService
from tests.fakes import FakeClock

T0 = 1_767_225_600_000
RECOVERY_MS = 30_000
SETTLE_MS = 60_000
WEB1 = HostRef("ag-00000000000000a1", "acme", "web-1")


class Quiet:
    """TicketMetrics that count nothing."""

    def ticket_opened(self, level: str, source: str) -> None: ...
    def sla_breached(self, clock: str, level: str) -> None: ...
    def notification(self, channel: str, ok: bool) -> None: ...
    def set_active_tickets(self, counts: Mapping[tuple[str, str], int]) -> None: ...


class Replica:
    def __init__(self, store: Path, clock: FakeClock[int]) -> None:
        self.db = StoreThread(open_store(store))
        self.clock = clock
        self.service = TicketService(
            self.db, TicketsConfig(), lambda _: None, Quiet(), clock, RECOVERY_MS
        )
        asyncio.run(self.service.start(SETTLE_MS))

    def alerts(self, scope: EvaluationScope, *alerts: Alert) -> None:
        asyncio.run(self.service.apply_alerts(list(alerts), self.clock.now, scope))

    def tickets(self) -> list[Ticket]:
        return self.db.store.list_tickets(None, None, None, 100)

    def kinds(self, ticket_id: int) -> list[str]:
        return [e.kind for e in self.db.store.ticket_events(ticket_id)]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Replica, Replica, FakeClock[int]]]:
    clock = FakeClock(T0)
    a, b = Replica(tmp_path, clock), Replica(tmp_path, clock)
    yield a, b, clock
    a.db.close()
    b.db.close()


def alert(rule: str = "cpu_busy", heartbeat: bool = False, host: HostRef = WEB1) -> Alert:
    return Alert(
        rule=rule,
        host=host,
        labels={},
        level=3,
        value=1.0,
        summary=f"{rule} on {host.hostname}",
        description="",
        playbook=None,
        active_since_ms=T0,
        dedup_key=dedup_key(host.agent_id, rule, {}),
        heartbeat=heartbeat,
    )


A_LEADS = EvaluationScope(frozenset(), heartbeats=True)  # A leads, holds no stream
B_HOLDS = EvaluationScope(frozenset({WEB1.agent_id}), heartbeats=False)
A_HOLDS_AND_LEADS = EvaluationScope(frozenset({WEB1.agent_id}), heartbeats=True)
B_HOLDS_NOTHING = EvaluationScope(frozenset(), heartbeats=False)


def test_the_replica_holding_the_stream_opens_and_the_others_leave_the_ticket_alone(
    pair: tuple[Replica, Replica, FakeClock[int]],
) -> None:
    a, b, clock = pair
    for step in range(10):  # well past the recovery delay and the settle time
        clock.now = T0 + step * 10_000
        b.alerts(B_HOLDS, alert())
        a.alerts(A_LEADS, alert())  # A's engine may hold a stale state: not A's key
    [ticket] = a.tickets()
    assert ticket.state == "open" and b.kinds(ticket.id) == ["opened"]

    clock.now += 1_000  # A's engine stops firing it: A still must not recover it
    for _ in range(10):
        clock.now += 10_000
        a.alerts(A_LEADS)
        b.alerts(B_HOLDS, alert())
    assert a.tickets()[0].state == "open"


def test_a_fault_fired_by_two_replicas_at_once_opens_one_ticket(
    pair: tuple[Replica, Replica, FakeClock[int]],
) -> None:
    a, b, clock = pair
    both = A_HOLDS_AND_LEADS  # the moment a host reconnects, both may think they hold it
    a.alerts(both, alert())
    b.alerts(B_HOLDS, alert())
    clock.now += 5_000
    b.alerts(B_HOLDS, alert())
    a.alerts(both, alert())
    [ticket] = a.tickets()  # the second replica to fire adds evidence, not a ticket
    assert a.kinds(ticket.id) == ["opened", "refired"]


def test_a_host_that_moves_is_adopted_with_the_settle_time_then_recovers_once(
    pair: tuple[Replica, Replica, FakeClock[int]],
) -> None:
    a, b, clock = pair
    a.alerts(A_LEADS)  # A's scope is known before the host arrives
    b.alerts(B_HOLDS, alert())
    [ticket] = b.tickets()

    clock.now += 10_000  # web-1 reconnects to A; A's engine has not fired yet
    b.alerts(B_HOLDS_NOTHING)
    a.alerts(A_HOLDS_AND_LEADS)
    for offset in range(10_000, SETTLE_MS, 10_000):
        clock.now += 10_000
        a.alerts(A_HOLDS_AND_LEADS)
        b.alerts(B_HOLDS_NOTHING)
        assert a.tickets()[0].state == "open", f"{offset} ms after the move"

    clock.now += 10_000  # settled and still absent: recovered after the delay, once
    a.alerts(A_HOLDS_AND_LEADS)
    clock.now += RECOVERY_MS
    a.alerts(A_HOLDS_AND_LEADS)
    b.alerts(B_HOLDS_NOTHING)
    assert a.tickets()[0].state == "recovered"
    assert a.kinds(ticket.id) == ["opened", "recovered"]


def test_an_adopted_fault_that_still_fires_adds_nothing(
    pair: tuple[Replica, Replica, FakeClock[int]],
) -> None:
    a, b, clock = pair
    a.alerts(A_LEADS)
    b.alerts(B_HOLDS, alert())
    clock.now += 10_000
    b.alerts(B_HOLDS_NOTHING)
    for _ in range(20):
        clock.now += 10_000
        a.alerts(A_HOLDS_AND_LEADS, alert())
    [ticket] = a.tickets()
    assert a.kinds(ticket.id) == ["opened"]


def test_heartbeats_belong_to_the_leader_only(
    pair: tuple[Replica, Replica, FakeClock[int]],
) -> None:
    a, b, clock = pair
    silent = alert("host_unreachable", heartbeat=True)
    b.alerts(B_HOLDS, silent)  # B holds the stream but is no leader: not its key
    assert b.tickets() == []
    a.alerts(A_LEADS, silent)
    [ticket] = a.tickets()
    assert ticket.source == "heartbeat"
    for _ in range(10):  # B never recovers it either
        clock.now += 10_000
        b.alerts(B_HOLDS)
    assert a.tickets()[0].state == "open"


def test_a_new_leader_adopts_the_heartbeat_tickets(
    pair: tuple[Replica, Replica, FakeClock[int]],
) -> None:
    a, b, clock = pair
    b.alerts(B_HOLDS_NOTHING)
    a.alerts(A_LEADS, alert("host_unreachable", heartbeat=True))
    [ticket] = a.tickets()
    clock.now += 5_000  # A dies; B leads and sees the host again: recovered once
    b.alerts(EvaluationScope(frozenset(), heartbeats=True))
    clock.now += SETTLE_MS
    b.alerts(EvaluationScope(frozenset(), heartbeats=True))
    clock.now += RECOVERY_MS
    b.alerts(EvaluationScope(frozenset(), heartbeats=True))
    assert b.kinds(ticket.id) == ["opened", "recovered"]


def test_replica_scope_covers_held_hosts_and_heartbeats_when_leading() -> None:
    held = {"ag-1"}
    scope = replica_scope(["ag-1", "ag-2"], held.__contains__, leading=False)
    assert scope.covers("ag-1", heartbeat=False)
    assert not scope.covers("ag-2", heartbeat=False)
    assert not scope.covers("ag-1", heartbeat=True)
    assert not scope.covers(None, heartbeat=False)
    leader = replica_scope(["ag-1", "ag-2"], held.__contains__, leading=True)
    assert leader.covers("ag-2", heartbeat=True)
    gained: Any = leader.gained(scope)
    assert gained == EvaluationScope(frozenset(), heartbeats=True)
