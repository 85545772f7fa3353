"""TicketService: the glue between alerts, the store, the SLA clocks and the notifiers.

Real objects throughout: a real SQLite store (``open_store``) behind the single-writer
``StoreThread``, a fake clock (a mutable int), an in-test deliverer that records every
``Notification`` (and can be told to fail with ``DeliveryError``) and a small metrics
object with counters in dicts. Every service call runs in its own ``asyncio.run``,
as the collector's evaluation loop would call it once per cycle.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from collector.alertmanager import AlertmanagerPayload, parse_payload
from collector.audit import verify_chain
from collector.auth import Principal
from collector.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from collector.notify import DeliveryError
from collector.rules import Alert, HostRef, dedup_key
from collector.store import open_store
from collector.store.writer import StoreThread
from collector.tickets.config import TicketsConfig
from collector.tickets.customer_notices import CustomerNoticePolicy
from collector.tickets.escalation import (
    EscalationPolicy,
    EscalationStep,
    Notification,
    Recipient,
    Trigger,
)
from collector.tickets.model import Ticket, TicketEvent
from collector.tickets.service import (
    RETRY_FAILED_DELIVERY_MS,
    ManualTicket,
    TicketActionRequest,
    TicketService,
    TicketView,
)
from collector.tickets.sla import DAY_MS, HOUR_MS, MINUTE_MS, LevelTargets, SlaPolicy
from tests.fakes import FakeClock

T = TypeVar("T")

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECOND_MS = 1000
RECOVERY_MS = 30 * SECOND_MS

ENGINEER = Principal("erin", "engineer")
ALICE = Principal("alice", "customer", "acme")  # a customer user of acme
MALLORY = Principal("mallory", "customer", "globex")  # a customer user of another customer

WEB1 = HostRef("ag-00000000000000a1", "acme", "web-1")
HOOK = Recipient("webhook", "http://127.0.0.1:9/hooks/secret-path")
ONCALL = Recipient("email", "oncall@vendor.example")
# Level 3: response 10 min (warning at 5 min), resolution 1 h.
SLA = SlaPolicy(
    levels={"3": LevelTargets(10 * MINUTE_MS, HOUR_MS, 10 * MINUTE_MS)}, warning_fraction=0.5
)
LADDER = EscalationPolicy(
    steps=(
        EscalationStep(Trigger("warning"), (HOOK,), frozenset({"response"})),
        EscalationStep(Trigger("breach"), (HOOK, ONCALL), frozenset({"response"})),
    )
)
ESCALATING = TicketsConfig(sla=SLA, escalation=LADDER)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# -- real collaborators ------------------------------------------------------------------


@dataclass
class Deliverer:
    """Records every delivery attempt; raises DeliveryError for channels in ``failing``."""

    failing: set[str] = field(default_factory=set)
    attempts: list[Notification] = field(default_factory=list)
    delivered: list[Notification] = field(default_factory=list)

    def __call__(self, notification: Notification) -> None:
        self.attempts.append(notification)
        if notification.channel in self.failing:
            raise DeliveryError(
                "connection refused",
                channel=notification.channel,
                target=notification.target_label,
                retryable=True,
            )
        self.delivered.append(notification)


@dataclass
class Metrics:
    """The TicketMetrics protocol with plain counters."""

    opened: Counter[tuple[str, str]] = field(default_factory=Counter)
    breaches: Counter[tuple[str, str]] = field(default_factory=Counter)
    notifications: Counter[tuple[str, bool]] = field(default_factory=Counter)
    active: dict[tuple[str, str], int] = field(default_factory=dict)

    def ticket_opened(self, level: str, source: str) -> None:
        self.opened[(level, source)] += 1

    def sla_breached(self, clock: str, level: str) -> None:
        self.breaches[(clock, level)] += 1

    def notification(self, channel: str, ok: bool) -> None:
        self.notifications[(channel, ok)] += 1

    def set_active_tickets(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.active = dict(counts)


class Rig:
    """One collector's ticket service over the store in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        config: TicketsConfig | None = None,
        clock: FakeClock[int] | None = None,
        deliverer: Deliverer | None = None,
        public_url: str = "",
    ) -> None:
        self.clock = clock or FakeClock(T0)
        self.deliverer = deliverer or Deliverer()
        self.metrics = Metrics()
        self.db = StoreThread(open_store(data_dir))
        self.service = TicketService(
            self.db,
            config or TicketsConfig(),
            self.deliverer,
            self.metrics,
            self.clock,
            recovery_delay_ms=RECOVERY_MS,
            public_url=public_url,
        )

    def close(self) -> None:
        self.db.close()

    # helpers: each advances the fake clock to ``at`` first

    def alerts(self, at: int, *alerts: Alert) -> None:
        self.clock.now = at
        run(self.service.apply_alerts(list(alerts), at))

    def tick(self, at: int) -> None:
        self.clock.now = at
        run(self.service.tick(at))

    def act(
        self, who: Principal, ticket_id: int, action: str, at: int | None = None, **args: str
    ) -> Ticket:
        if at is not None:
            self.clock.now = at
        request = TicketActionRequest(action, **args)
        return run(self.service.act(who, ticket_id, request))

    def resolve(self, ticket_id: int, at: int) -> Ticket:
        return self.act(
            ENGINEER,
            ticket_id,
            "resolve",
            at,
            cause="log rotation disabled",
            actions="rotated and compressed /data/logs",
            prevention="logrotate re-enabled",
        )

    def view(self, ticket_id: int, who: Principal = ENGINEER) -> TicketView:
        return run(self.service.get(who, ticket_id))

    def tickets(self, who: Principal = ENGINEER) -> list[Ticket]:
        return [v.ticket for v in run(self.service.list_tickets(who, [], None, None))]

    def events(self, ticket_id: int) -> list[TicketEvent]:
        return list(self.view(ticket_id).events)

    def kinds(self, ticket_id: int) -> list[str]:
        return [e.kind for e in self.events(ticket_id)]

    def create(self, who: Principal, title: str, level: str = "3", customer: str = "") -> int:
        return run(self.service.create(who, ManualTicket(title, "", level, customer)))


MakeRig = Callable[..., Rig]


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    """Rigs opened by a test; all closed afterwards."""
    opened: list[Rig] = []
    yield opened
    for rig in opened:
        rig.close()


@pytest.fixture
def make_rig(tmp_path: Path, rigs: list[Rig]) -> MakeRig:
    def make(config: TicketsConfig | None = None, name: str = "store", **kwargs: Any) -> Rig:
        rig = Rig(tmp_path / name, config, **kwargs)
        rigs.append(rig)
        return rig

    return make


def disk_alert(value: float = 0.95, mountpoint: str = "/data", host: HostRef = WEB1) -> Alert:
    labels = {"mountpoint": mountpoint, "device": "/dev/sdb1", "fstype": "ext4"}
    return Alert(
        rule="filesystem_almost_full",
        host=host,
        labels=labels,
        level=3,
        value=value,
        summary=f"Filesystem {mountpoint} on {host.hostname} is {value:.0%} full",
        description="Free some space.",
        playbook=None,
        active_since_ms=T0,
        dedup_key=dedup_key(host.agent_id, "filesystem_almost_full", labels),
    )


def notifications(rig: Rig, ticket_id: int) -> list[TicketEvent]:
    return [e for e in rig.events(ticket_id) if e.kind == "notification"]


# -- rule alerts ---------------------------------------------------------------------------


def test_a_new_alert_opens_one_ticket_with_its_evidence(make_rig: MakeRig) -> None:
    rig = make_rig()
    alert = disk_alert()
    rig.alerts(T0, alert)
    [ticket] = rig.tickets()
    assert (ticket.state, ticket.level, ticket.source) == ("open", "3", "rule")
    assert (ticket.customer, ticket.hostname, ticket.agent_id) == ("acme", "web-1", WEB1.agent_id)
    assert ticket.rule == "filesystem_almost_full" and ticket.dedup_key == alert.dedup_key
    assert ticket.title == "Filesystem /data on web-1 is 95% full"
    [opened] = rig.events(ticket.id)
    assert (opened.kind, opened.actor, opened.at_ms) == (
        "opened",
        "rule:filesystem_almost_full",
        T0,
    )
    assert opened.details["value"] == 0.95
    assert opened.details["labels"] == dict(alert.labels)
    assert rig.metrics.opened == {("3", "rule"): 1}

    for cycle in range(1, 20):  # the fault keeps firing: nothing new
        rig.alerts(T0 + cycle * 5 * SECOND_MS, disk_alert(value=0.95 + cycle / 1000))
    assert [t.id for t in rig.tickets()] == [ticket.id]
    assert rig.kinds(ticket.id) == ["opened"]
    assert rig.metrics.opened == {("3", "rule"): 1}


def test_each_series_of_a_rule_is_its_own_ticket(make_rig: MakeRig) -> None:
    rig = make_rig()
    other_host = HostRef("ag-00000000000000b2", "globex", "db-1")
    rig.alerts(T0, disk_alert(), disk_alert(mountpoint="/var"), disk_alert(host=other_host))
    tickets = rig.tickets()
    assert len(tickets) == 3
    assert sorted(t.customer for t in tickets) == ["acme", "acme", "globex"]
    assert len({t.dedup_key for t in tickets}) == 3


def test_an_alert_storm_opens_its_tickets_in_few_store_calls(make_rig: MakeRig) -> None:
    """250 hosts of a site go silent together: two tickets' worth of store calls per
    100 tickets (one read, one transaction each), not two per alert."""
    rig = make_rig()
    calls: list[str] = []
    rig.db.observe = lambda call, seconds: calls.append(call)
    hosts = [HostRef(f"ag-{n:016x}", "acme", f"web-{n}") for n in range(250)]
    rig.alerts(T0, *(disk_alert(host=host) for host in hosts))
    assert calls == ["find_tickets_by_dedup"] + ["create_tickets"] * 3
    assert sorted(t.hostname for t in rig.tickets()) == sorted(h.hostname for h in hosts)
    assert rig.metrics.opened == {("3", "rule"): 250}
    rig.alerts(T0 + 5 * SECOND_MS, *(disk_alert(host=host) for host in hosts))
    assert len(rig.tickets()) == 250  # still firing: nothing new


def test_a_storm_racing_another_opener_still_gives_one_ticket_per_fault(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica opens one of the faults' tickets between the grouped read and
    the grouped insert (a stale read here): the group is refused whole (Conflict),
    nothing of it is stored (the conflicting fault comes last, after four inserts),
    and each fault is then taken one by one."""
    rig = make_rig()
    hosts = [HostRef(f"ag-{n:016x}", "acme", f"web-{n}") for n in range(5)]
    rig.alerts(T0, disk_alert(host=hosts[0]))
    monkeypatch.setattr(rig.db.store, "find_tickets_by_dedup", lambda keys: {})
    rig.service._firing.clear()  # as after a restart: the first fault's ticket is stored
    rig.alerts(T0 + SECOND_MS, *(disk_alert(host=host) for host in reversed(hosts)))
    tickets = rig.tickets()
    assert sorted(t.hostname for t in tickets) == [h.hostname for h in hosts]
    assert rig.metrics.opened == {("3", "rule"): 5}


def test_recovery_needs_the_recovery_delay_and_a_return_refires(make_rig: MakeRig) -> None:
    rig = make_rig()
    alert = disk_alert()
    rig.alerts(T0, alert)
    [ticket] = rig.tickets()

    # absent for less than the delay, then back: a missed sample, not a recovery
    rig.alerts(T0 + 5_000)
    rig.alerts(T0 + 25_000)
    rig.alerts(T0 + 30_000, alert)
    assert rig.view(ticket.id).ticket.state == "open"
    assert rig.kinds(ticket.id) == ["opened"], "a blip adds nothing"

    # the absence timer starts afresh after the return
    rig.alerts(T0 + 40_000)
    rig.alerts(T0 + 69_999)
    assert rig.view(ticket.id).ticket.state == "open"
    rig.alerts(T0 + 70_000)  # absent for the whole delay
    assert rig.view(ticket.id).ticket.state == "recovered"
    recovered = rig.events(ticket.id)[-1]
    assert (recovered.kind, recovered.at_ms, recovered.actor) == ("recovered", T0 + 70_000, "rule")

    rig.alerts(T0 + 80_000)  # stays recovered, no second event
    assert rig.kinds(ticket.id) == ["opened", "recovered"]

    rig.alerts(T0 + 90_000, disk_alert(value=0.97))
    back = rig.view(ticket.id)
    assert back.ticket.state == "open"
    assert [e.kind for e in back.events] == ["opened", "recovered", "refired"]
    assert back.events[-1].details["value"] == 0.97
    assert len(rig.tickets()) == 1


def test_an_acknowledged_ticket_that_recovers_and_refires_is_acknowledged_again(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    rig.act(ENGINEER, ticket.id, "acknowledge", T0 + 60_000)
    rig.alerts(T0 + 70_000)
    rig.alerts(T0 + 100_000)
    assert rig.view(ticket.id).ticket.state == "recovered"
    rig.alerts(T0 + 110_000, disk_alert())
    assert rig.view(ticket.id).ticket.state == "acknowledged"


def _close_loop(rig: Rig, ticket_id: int, at: int) -> int:
    """Recover (alert absent), resolve and confirm: the ticket is closed at the result."""
    rig.alerts(at)
    rig.alerts(at + RECOVERY_MS)
    assert rig.view(ticket_id).ticket.state == "recovered"
    rig.resolve(ticket_id, at + RECOVERY_MS + 60_000)
    closed_at = at + RECOVERY_MS + 120_000
    closed = rig.act(ALICE, ticket_id, "confirm", closed_at)
    assert (closed.state, closed.close_reason) == ("closed", "confirmed")
    return closed_at


def test_recurrence_within_the_reopen_window_reopens_the_same_ticket(make_rig: MakeRig) -> None:
    rig = make_rig(TicketsConfig(reopen_window_ms=DAY_MS))
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    closed_at = _close_loop(rig, ticket.id, T0 + 10_000)
    history = rig.kinds(ticket.id)

    again = closed_at + DAY_MS  # the last moment of the window
    rig.alerts(again, disk_alert(value=0.99))
    [reopened] = rig.tickets()
    assert reopened.id == ticket.id
    assert (reopened.state, reopened.reopen_count) == ("reopened", 1)
    assert reopened.closed_ms is None and reopened.close_reason is None
    view = rig.view(ticket.id)
    assert [e.kind for e in view.events] == [*history, "refired", "reopened"]
    assert view.events[-1].details["reason"] == "recurrence"
    assert view.events[-2].details["value"] == 0.99
    assert rig.metrics.opened == {("3", "rule"): 1}, "a re-opening is not a new ticket"


def test_recurrence_after_the_reopen_window_opens_a_new_ticket(make_rig: MakeRig) -> None:
    rig = make_rig(TicketsConfig(reopen_window_ms=DAY_MS))
    rig.alerts(T0, disk_alert())
    [old] = rig.tickets()
    closed_at = _close_loop(rig, old.id, T0 + 10_000)
    history = rig.kinds(old.id)

    rig.alerts(closed_at + DAY_MS + 1, disk_alert())
    new, previous = rig.tickets()  # newest first
    assert previous.id == old.id and new.id != old.id
    assert (new.state, new.reopen_count, new.dedup_key) == ("open", 0, old.dedup_key)
    assert (previous.state, previous.reopen_count) == ("closed", 0)
    assert rig.kinds(old.id) == history, "the closed ticket is left alone"
    assert rig.kinds(new.id) == ["opened"]
    assert rig.metrics.opened == {("3", "rule"): 2}


# -- restart safety ------------------------------------------------------------------------


def test_restored_tickets_are_not_recovered_while_the_rules_settle(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    first = Rig(tmp_path / "store")
    rigs.append(first)
    first.alerts(T0, disk_alert())
    [ticket] = first.tickets()
    first.close()
    rigs.remove(first)

    restart = T0 + 120_000
    second = Rig(tmp_path / "store", clock=FakeClock(restart))
    rigs.append(second)
    settle = 2 * RECOVERY_MS  # longer than the recovery delay: the settle period must count
    run(second.service.start(settle))
    for offset in (1_000, 5_000, RECOVERY_MS + 1_000, settle - 1):
        second.alerts(restart + offset)  # the engine has not fired again yet
        assert second.view(ticket.id).ticket.state == "open", f"{offset} ms after the start"

    # settled, and the alert is still absent: recovered after the usual delay
    second.alerts(restart + settle)
    second.alerts(restart + settle + RECOVERY_MS - 1)
    assert second.view(ticket.id).ticket.state == "open"
    second.alerts(restart + settle + RECOVERY_MS)
    assert second.view(ticket.id).ticket.state == "recovered"
    assert second.kinds(ticket.id) == ["opened", "recovered"]


def test_a_restart_with_the_alert_still_firing_adds_nothing(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    first = Rig(tmp_path / "store")
    rigs.append(first)
    first.alerts(T0, disk_alert())
    [ticket] = first.tickets()
    first.close()
    rigs.remove(first)

    restart = T0 + 120_000
    second = Rig(tmp_path / "store", clock=FakeClock(restart))
    rigs.append(second)
    run(second.service.start(20_000))
    second.alerts(restart + 1_000)  # the rule's `for` has not passed yet
    for offset in range(5_000, 200_000, 5_000):
        second.alerts(restart + offset, disk_alert())
    assert [t.id for t in second.tickets()] == [ticket.id]
    assert second.kinds(ticket.id) == ["opened"]
    assert second.metrics.opened == {}


def test_a_restored_alert_seen_again_then_gone_recovers_without_waiting_for_the_settle(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    first = Rig(tmp_path / "store")
    rigs.append(first)
    first.alerts(T0, disk_alert())
    [ticket] = first.tickets()
    first.close()
    rigs.remove(first)

    restart = T0 + 120_000
    second = Rig(tmp_path / "store", clock=FakeClock(restart))
    rigs.append(second)
    run(second.service.start(10 * MINUTE_MS))
    second.alerts(restart + 5_000, disk_alert())  # re-evaluated: no longer "restored"
    second.alerts(restart + 10_000)
    second.alerts(restart + 10_000 + RECOVERY_MS)
    assert second.view(ticket.id).ticket.state == "recovered"


def test_a_resolved_ticket_whose_alert_still_fires_fares_the_same_across_a_restart(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    def scenario(name: str, restart: bool) -> Ticket:
        rig = Rig(tmp_path / name)
        rigs.append(rig)
        rig.alerts(T0, disk_alert())
        [ticket] = rig.tickets()
        rig.resolve(ticket.id, T0 + 60_000)  # the engineer's fix did not hold
        if restart:
            rig.close()
            rigs.remove(rig)
            rig = Rig(tmp_path / name, clock=FakeClock(T0 + 70_000))
            rigs.append(rig)
            run(rig.service.start(20_000))
        for offset in range(65_000, 200_000, 5_000):
            rig.alerts(T0 + offset, disk_alert())
        return rig.view(ticket.id).ticket

    running = scenario("running", restart=False)
    restarted = scenario("restarted", restart=True)
    assert (restarted.state, restarted.reopen_count) == (running.state, running.reopen_count)
    assert (running.state, running.reopen_count) == ("reopened", 1), "the fault is not silent"


# -- no fault goes silent ------------------------------------------------------------------


def _restarted(tmp_path: Path, rigs: list[Rig], rig: Rig, name: str, at: int) -> Rig:
    rig.close()
    rigs.remove(rig)
    again = Rig(tmp_path / name, clock=FakeClock(at))
    rigs.append(again)
    run(again.service.start(20_000))
    return again


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("window_ms", [DAY_MS, 0])
def test_a_ticket_closed_while_its_fault_still_fires_reopens_or_a_new_one_opens(
    tmp_path: Path, rigs: list[Rig], restart: bool, window_ms: int
) -> None:
    name = f"store-{restart}-{window_ms}"
    rig = Rig(tmp_path / name, TicketsConfig(reopen_window_ms=window_ms))
    rigs.append(rig)
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    rig.resolve(ticket.id, T0 + 5_000)
    rig.act(ALICE, ticket.id, "confirm", T0 + 6_000)  # closed, fault never cleared
    assert rig.view(ticket.id).ticket.state == "closed"
    if restart:
        rig = _restarted(tmp_path, rigs, rig, name, T0 + 7_000)
        rig.service.config = TicketsConfig(reopen_window_ms=window_ms)
    for offset in range(10_000, 120_000, 5_000):
        rig.alerts(T0 + offset, disk_alert())
    tickets = rig.tickets()
    active = [t for t in tickets if t.state in ("open", "reopened")]
    assert len(active) == 1, f"exactly one active ticket for the fault: {tickets}"
    if window_ms:
        assert active[0].id == ticket.id and active[0].reopen_count == 1
    else:
        assert active[0].id != ticket.id


@pytest.mark.parametrize("restart", [False, True])
def test_a_fault_that_clears_briefly_and_returns_after_a_close_reopens(
    tmp_path: Path, rigs: list[Rig], restart: bool
) -> None:
    name = f"brief-{restart}"
    rig = Rig(tmp_path / name, TicketsConfig(reopen_window_ms=DAY_MS))
    rigs.append(rig)
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    rig.alerts(T0 + 5_000)  # clears ...
    rig.resolve(ticket.id, T0 + 6_000)
    rig.act(ALICE, ticket.id, "confirm", T0 + 7_000)
    if restart:
        rig = _restarted(tmp_path, rigs, rig, name, T0 + 8_000)
        rig.service.config = TicketsConfig(reopen_window_ms=DAY_MS)
    rig.alerts(T0 + 10_000, disk_alert())  # ... and returns inside the recovery delay
    for offset in range(15_000, 120_000, 5_000):
        rig.alerts(T0 + offset, disk_alert())
    reopened = rig.view(ticket.id).ticket
    assert (reopened.state, reopened.reopen_count) == ("reopened", 1)
    assert [t.id for t in rig.tickets()] == [ticket.id]


def test_a_fix_that_clears_the_fault_within_the_recovery_delay_stays_resolved(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    rig.resolve(ticket.id, T0 + 5_000)
    rig.alerts(T0 + 5_000 + RECOVERY_MS - 1, disk_alert())  # the last sample before the fix
    for offset in range(RECOVERY_MS + 10_000, RECOVERY_MS + 100_000, 5_000):
        rig.alerts(T0 + offset)
    assert rig.view(ticket.id).ticket.state == "resolved"


# -- clocks: escalation, breaches, auto-confirm, pauses -------------------------------------


def test_warning_then_breach_notified_exactly_once_across_ticks_and_a_restart(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    rig = Rig(tmp_path / "store", ESCALATING)
    rigs.append(rig)
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()

    for at in range(T0, T0 + 5 * MINUTE_MS, 30_000):  # before the warning fraction
        rig.tick(at)
    assert rig.deliverer.attempts == []
    assert rig.metrics.active == {("3", "open"): 1}

    for at in range(T0 + 5 * MINUTE_MS, T0 + 10 * MINUTE_MS + 1, 10_000):
        rig.tick(at)
    [warning] = rig.deliverer.delivered
    assert (warning.channel, warning.target, warning.step) == ("webhook", HOOK.target, 0)
    assert warning.payload["event"] == "sla_warning"
    assert warning.payload["ticket"]["id"] == ticket.id
    assert rig.metrics.breaches == {}, "not breached at exactly the target"

    for at in range(T0 + 10 * MINUTE_MS + 1, T0 + 20 * MINUTE_MS, 10_000):
        rig.tick(at)
    assert [(n.step, n.channel) for n in rig.deliverer.delivered] == [
        (0, "webhook"),
        (1, "webhook"),
        (1, "email"),
    ]
    assert rig.deliverer.delivered[2].target == "oncall@vendor.example"
    assert rig.deliverer.delivered[1].payload["event"] == "sla_breach"
    assert rig.metrics.breaches == {("response", "3"): 1}
    assert rig.metrics.notifications == {("webhook", True): 2, ("email", True): 1}

    notes = notifications(rig, ticket.id)
    assert [n.details["key"] for n in notes] == [n.key for n in rig.deliverer.delivered]
    assert all(n.details["delivered"] for n in notes)
    assert HOOK.target not in json.dumps([dict(n.details) for n in notes]), "URL secret kept out"
    [escalation] = [e for e in rig.events(ticket.id) if e.kind == "escalation"]
    assert escalation.details["clock"] == "response" and escalation.details["type"] == "breach"
    assert escalation.at_ms == T0 + 10 * MINUTE_MS, "recorded at the moment it breached"

    rig.close()
    rigs.remove(rig)
    restarted = Rig(tmp_path / "store", ESCALATING, clock=FakeClock(T0 + 20 * MINUTE_MS))
    rigs.append(restarted)
    run(restarted.service.start(20_000))
    for at in range(T0 + 20 * MINUTE_MS, T0 + 30 * MINUTE_MS, 30_000):
        restarted.alerts(at, disk_alert())
        restarted.tick(at)
    assert restarted.deliverer.attempts == [], "nothing is sent twice after a restart"
    assert restarted.metrics.breaches == {}, "a breach is counted once"
    assert len(notifications(restarted, ticket.id)) == 3
    assert restarted.kinds(ticket.id).count("escalation") == 1


def test_a_ticket_whose_customer_was_contacted_does_not_escalate(make_rig: MakeRig) -> None:
    rig = make_rig(ESCALATING)
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    saved = rig.act(
        ENGINEER, ticket.id, "contact", T0 + 4 * MINUTE_MS, via="phone", text="called Li Wei"
    )
    assert saved.state == "acknowledged"
    for at in range(T0, T0 + 50 * MINUTE_MS, MINUTE_MS):
        rig.tick(at)
    assert rig.deliverer.attempts == [] and rig.metrics.breaches == {}
    view = run(rig.service.get(ENGINEER, ticket.id))
    assert view.sla.response.state == "met"
    assert view.sla.response.stopped_ms == T0 + 4 * MINUTE_MS


def test_an_acknowledged_ticket_still_escalates_until_the_customer_is_contacted(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(ESCALATING)
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    rig.act(ENGINEER, ticket.id, "acknowledge", T0 + 4 * MINUTE_MS)
    for at in range(T0, T0 + 50 * MINUTE_MS, MINUTE_MS):
        rig.tick(at)
    assert rig.deliverer.attempts != []
    assert rig.metrics.breaches != {}


def test_customers_cannot_record_a_contact(make_rig: MakeRig) -> None:
    rig = make_rig(ESCALATING)
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    with pytest.raises(PermissionDenied):
        rig.act(ALICE, ticket.id, "contact", T0 + MINUTE_MS, via="phone", text="me")


def test_a_failed_delivery_is_recorded_once_and_retried_after_the_retry_period(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(ESCALATING)
    rig.deliverer.failing.add("webhook")
    ticket_id = rig.create(ENGINEER, "printer on fire", customer="acme")
    warn_at = T0 + 5 * MINUTE_MS

    rig.tick(warn_at)
    assert len(rig.deliverer.attempts) == 1 and rig.deliverer.delivered == []
    [failed] = notifications(rig, ticket_id)
    assert failed.details["delivered"] is False
    assert "connection refused" in failed.details["error"]
    assert "key" not in failed.details, "a failed notification is not 'sent'"

    for offset in (1_000, 10_000, RETRY_FAILED_DELIVERY_MS - 1):
        rig.tick(warn_at + offset)
    assert len(rig.deliverer.attempts) == 1, "no retry before the retry period"

    rig.tick(warn_at + RETRY_FAILED_DELIVERY_MS)  # retried, fails again: not recorded again
    assert len(rig.deliverer.attempts) == 2
    assert len(notifications(rig, ticket_id)) == 1

    rig.deliverer.failing.clear()
    rig.tick(warn_at + 2 * RETRY_FAILED_DELIVERY_MS - 1)
    assert len(rig.deliverer.attempts) == 2, "the period counts from the latest failure"
    rig.tick(warn_at + 2 * RETRY_FAILED_DELIVERY_MS)
    assert len(rig.deliverer.delivered) == 1
    first, second = notifications(rig, ticket_id)
    assert first.details["delivered"] is False
    assert second.details["delivered"] is True
    assert second.details["key"] == rig.deliverer.delivered[0].key
    assert second.at_ms == warn_at + 2 * RETRY_FAILED_DELIVERY_MS

    for offset in range(1, 10):
        rig.tick(warn_at + 2 * RETRY_FAILED_DELIVERY_MS + offset * 10_000)
    assert len(rig.deliverer.attempts) == 3, "delivered: never again"
    assert rig.metrics.notifications == {("webhook", False): 2, ("webhook", True): 1}


def test_a_failing_channel_does_not_hold_back_the_others(make_rig: MakeRig) -> None:
    rig = make_rig(ESCALATING)
    rig.deliverer.failing.add("email")
    ticket_id = rig.create(ENGINEER, "printer on fire", customer="acme")
    rig.tick(T0 + 11 * MINUTE_MS)  # warning and breach at once
    assert [(n.step, n.channel) for n in rig.deliverer.delivered] == [
        (0, "webhook"),
        (1, "webhook"),
    ]
    delivered = [n.details["delivered"] for n in notifications(rig, ticket_id)]
    assert sorted(delivered) == [False, True, True]


def test_a_resolved_ticket_is_auto_confirmed_after_the_period(make_rig: MakeRig) -> None:
    rig = make_rig(TicketsConfig(auto_confirm_ms=DAY_MS))
    ticket_id = rig.create(ENGINEER, "slow backups", customer="acme")
    rig.act(ENGINEER, ticket_id, "acknowledge", T0 + MINUTE_MS)
    resolved_at = T0 + HOUR_MS
    rig.resolve(ticket_id, resolved_at)

    rig.tick(resolved_at + DAY_MS - 1)
    assert rig.view(ticket_id).ticket.state == "resolved"
    rig.tick(resolved_at + DAY_MS)
    view = rig.view(ticket_id)
    assert (view.ticket.state, view.ticket.close_reason) == ("closed", "auto-confirmed")
    assert view.ticket.closed_ms == resolved_at + DAY_MS
    closed = view.events[-1]
    assert (closed.kind, closed.actor, closed.details["reason"]) == (
        "closed",
        "system",
        "auto-confirmed",
    )
    rig.tick(resolved_at + 2 * DAY_MS)
    assert rig.kinds(ticket_id).count("closed") == 1


def test_a_confirmed_ticket_is_closed_as_confirmed_not_auto_confirmed(make_rig: MakeRig) -> None:
    rig = make_rig(TicketsConfig(auto_confirm_ms=DAY_MS))
    ticket_id = rig.create(ALICE, "slow backups")
    rig.resolve(ticket_id, T0 + HOUR_MS)
    rig.act(ALICE, ticket_id, "confirm", T0 + 2 * HOUR_MS)
    rig.tick(T0 + 3 * DAY_MS)
    view = rig.view(ticket_id)
    assert (view.ticket.close_reason, view.ticket.closed_ms) == ("confirmed", T0 + 2 * HOUR_MS)


def test_waiting_on_the_customer_pauses_the_sla(make_rig: MakeRig) -> None:
    rig = make_rig(ESCALATING)
    ticket_id = rig.create(ENGINEER, "upgrade advice", customer="acme")
    response = rig.view(ticket_id).sla.response
    assert (response.due_ms, response.state) == (T0 + 10 * MINUTE_MS, "running")

    rig.act(ENGINEER, ticket_id, "wait", T0 + 2 * MINUTE_MS, text="need the maintenance window")
    rig.clock.now = T0 + 6 * MINUTE_MS
    paused = rig.view(ticket_id).sla.response
    assert paused.state == "paused" and paused.elapsed_ms == 2 * MINUTE_MS
    for at in range(T0 + 2 * MINUTE_MS, T0 + 7 * MINUTE_MS, 30_000):
        rig.tick(at)
    assert rig.deliverer.attempts == [], "a paused clock does not reach its warning"

    rig.act(ALICE, ticket_id, "resume", T0 + 7 * MINUTE_MS)  # the customer answered
    resumed = rig.view(ticket_id).sla
    assert resumed.response.due_ms == T0 + 15 * MINUTE_MS, "due later by the 5 min pause"
    assert resumed.resolution.due_ms == T0 + HOUR_MS + 5 * MINUTE_MS
    rig.tick(T0 + 10 * MINUTE_MS - 1)
    assert rig.deliverer.attempts == []
    rig.tick(T0 + 10 * MINUTE_MS)  # 5 min of running time: the warning
    [warning] = rig.deliverer.delivered
    assert warning.payload["event"] == "sla_warning"


# -- people ----------------------------------------------------------------------------------


def test_customers_open_tickets_for_their_own_customer_only(make_rig: MakeRig) -> None:
    rig = make_rig()
    with pytest.raises(PermissionDenied, match="globex"):
        rig.create(ALICE, "sneaking in", customer="globex")  # refused, not silently re-aimed
    assert rig.tickets() == []
    own = rig.create(ALICE, "  printer on fire  ", level="other")
    assert rig.view(rig.create(ALICE, "named", customer="acme")).ticket.customer == "acme"
    ticket = rig.view(own).ticket
    assert (ticket.customer, ticket.source, ticket.title) == ("acme", "customer", "printer on fire")
    assert rig.events(own)[0].actor == "user:alice"

    theirs = rig.create(ENGINEER, "capacity question", level="consult", customer="globex")
    assert (rig.view(theirs).ticket.customer, rig.view(theirs).ticket.source) == (
        "globex",
        "engineer",
    )
    assert rig.metrics.opened == {
        ("other", "customer"): 1,
        ("3", "customer"): 1,
        ("consult", "engineer"): 1,
    }
    with pytest.raises(InvalidRequest, match="customer"):
        rig.create(ENGINEER, "whose?")
    with pytest.raises(InvalidRequest, match="title"):
        rig.create(ALICE, "   ")


def test_customers_cannot_take_engineer_actions(make_rig: MakeRig) -> None:
    rig = make_rig()
    ticket_id = rig.create(ALICE, "printer on fire")
    for action, args in (
        ("acknowledge", {}),
        ("resolve", {"cause": "toner"}),
        ("assign", {"assignee": "alice"}),
        ("reopen", {"text": "again"}),
        ("wait", {"text": "me"}),
    ):
        with pytest.raises(PermissionDenied, match=r"^a customer user cannot"):
            rig.act(ALICE, ticket_id, action, None, **args)
    assert rig.view(ticket_id).ticket.state == "open"
    assert rig.kinds(ticket_id) == ["opened"]

    with pytest.raises(PermissionDenied, match=r"^an engineer user cannot"):
        rig.act(ENGINEER, ticket_id, "confirm")  # closing the loop is the customer's
    assert rig.act(ENGINEER, ticket_id, "acknowledge", T0 + MINUTE_MS).state == "acknowledged"
    rig.act(ALICE, ticket_id, "comment", text="it smells of smoke")
    assert rig.resolve(ticket_id, T0 + HOUR_MS).state == "resolved"
    rejected = rig.act(ALICE, ticket_id, "reject", T0 + 2 * HOUR_MS, text="still smoking")
    assert (rejected.state, rejected.reopen_count) == ("reopened", 1)
    rig.resolve(ticket_id, T0 + 3 * HOUR_MS)
    closed = rig.act(ALICE, ticket_id, "confirm", T0 + 4 * HOUR_MS)
    assert (closed.state, closed.close_reason) == ("closed", "confirmed")
    actors = {(e.kind, e.actor) for e in rig.events(ticket_id)}
    assert {("acknowledged", "user:erin"), ("confirmed", "user:alice")} <= actors


def test_another_customers_ticket_is_not_found(make_rig: MakeRig) -> None:
    rig = make_rig()
    ticket_id = rig.create(ALICE, "printer on fire")
    rig.resolve(ticket_id, T0 + HOUR_MS)
    assert [t.id for t in rig.tickets(ALICE)] == [ticket_id]
    assert rig.tickets(MALLORY) == []
    with pytest.raises(NotFound):
        rig.view(ticket_id, MALLORY)
    with pytest.raises(NotFound):
        run(rig.service.report(MALLORY, ticket_id, "md"))
    with pytest.raises(NotFound):
        run(rig.service.report(MALLORY, ticket_id, "html", "zh-CN"))
    for action in ("comment", "confirm", "reject", "resume"):
        with pytest.raises(NotFound):
            rig.act(MALLORY, ticket_id, action, text="mine now")
    with pytest.raises(PermissionDenied):
        run(rig.service.list_tickets(MALLORY, [], None, "acme"))
    assert rig.view(ticket_id).ticket.state == "resolved"
    assert rig.kinds(ticket_id) == ["opened", "resolved"]
    with pytest.raises(NotFound):
        rig.view(999)


def test_engineers_see_and_filter_every_customer(make_rig: MakeRig) -> None:
    rig = make_rig()
    acme = rig.create(ALICE, "printer on fire", level="2")
    globex = rig.create(MALLORY, "coffee machine", level="other")
    rig.act(ENGINEER, globex, "acknowledge", T0 + MINUTE_MS)

    def listed(states: list[str], level: str | None, customer: str | None) -> list[int]:
        views = run(rig.service.list_tickets(ENGINEER, states, level, customer))
        return [v.ticket.id for v in views]

    assert listed([], None, None) == [globex, acme]
    assert listed([], None, "acme") == [acme]
    assert listed(["acknowledged"], None, None) == [globex]
    assert listed(["open", "closed"], None, None) == [acme]
    assert listed([], "2", None) == [acme]
    assert listed([], None, None) == [t.id for t in rig.tickets(ENGINEER)]


def test_invalid_levels_states_and_transitions_are_refused(make_rig: MakeRig) -> None:
    rig = make_rig()
    for level in ("5", "0", "critical", ""):
        with pytest.raises(InvalidRequest, match="level"):
            rig.create(ENGINEER, "x", level=level, customer="acme")
    with pytest.raises(InvalidRequest, match="state"):
        run(rig.service.list_tickets(ENGINEER, ["pending"], None, None))
    with pytest.raises(InvalidRequest, match="level"):
        run(rig.service.list_tickets(ENGINEER, [], "9", None))
    assert rig.tickets() == []

    ticket_id = rig.create(ENGINEER, "x", customer="acme")
    with pytest.raises(PermissionDenied):
        rig.act(ENGINEER, ticket_id, "explode")
    with pytest.raises(InvalidRequest):
        rig.act(ENGINEER, ticket_id, "resolve", cause="  ")
    with pytest.raises(InvalidRequest):
        rig.act(ENGINEER, ticket_id, "comment", text="")
    rig.act(ENGINEER, ticket_id, "acknowledge")
    with pytest.raises(FailedPrecondition):
        rig.act(ENGINEER, ticket_id, "acknowledge")
    with pytest.raises(FailedPrecondition):
        rig.act(ALICE, ticket_id, "confirm")  # not resolved yet
    assert rig.kinds(ticket_id) == ["opened", "acknowledged"]


def test_report_formats(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.alerts(T0, disk_alert())
    [ticket] = rig.tickets()
    rig.act(ENGINEER, ticket.id, "acknowledge", T0 + MINUTE_MS)
    rig.resolve(ticket.id, T0 + HOUR_MS)

    markdown = run(rig.service.report(ALICE, ticket.id, "md"))
    for text in ("故障分析报告", "web-1", "log rotation disabled", "logrotate re-enabled"):
        assert text in markdown
    html = run(rig.service.report(ENGINEER, ticket.id, "html"))
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "log rotation disabled" in html
    data = json.loads(run(rig.service.report(ENGINEER, ticket.id, "json")))
    assert data["ticket_id"] == ticket.id and data["cause"] == "log rotation disabled"
    assert data["onset_metrics"]["value"] == 0.95
    assert [e["kind"] for e in data["timeline"]] == ["opened", "acknowledged", "resolved"]
    with pytest.raises(InvalidRequest, match="pdf"):
        run(rig.service.report(ENGINEER, ticket.id, "pdf"))
    chinese = run(rig.service.report(ALICE, ticket.id, "md", "zh-CN"))
    assert "## 处理过程" in chinese and "log rotation disabled" in chinese
    with pytest.raises(InvalidRequest, match="unknown report language 'fr'"):
        run(rig.service.report(ALICE, ticket.id, "md", "fr"))


# -- Alertmanager ------------------------------------------------------------------------------


def am_alert(
    status: str,
    fingerprint: str = "1a30ba71cca2921f",
    severity: str = "critical",
    **labels: str,
) -> dict[str, Any]:
    all_labels = {
        "alertname": "NodeFilesystemAlmostFull",
        "customer": "acme",
        "instance": "nas-1.acme.example:9100",
        "severity": severity,
        **labels,
    }
    return {
        "status": status,
        "labels": {k: v for k, v in all_labels.items() if v},
        "annotations": {"summary": "磁盘空间不足: /data on nas-1 is 97% full"},
        "startsAt": "2026-01-01T00:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T00:10:00Z",
        "generatorURL": "http://prometheus.acme.example:9090/graph",
        "fingerprint": fingerprint,
    }


def am_payload(*alerts: dict[str, Any]) -> AlertmanagerPayload:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    body = {
        "version": "4",
        "groupKey": '{}:{alertname="NodeFilesystemAlmostFull"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "aftercare",
        "groupLabels": {"alertname": "NodeFilesystemAlmostFull"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.vendor.example:9093",
        "alerts": list(alerts),
    }
    return parse_payload(json.dumps(body).encode())


def apply_am(rig: Rig, at: int, payload: AlertmanagerPayload) -> list[str]:
    rig.clock.now = at
    return run(rig.service.apply_alertmanager(payload, at))


def test_alertmanager_firing_opens_repeats_add_nothing_resolved_recovers(make_rig: MakeRig) -> None:
    rig = make_rig()
    assert apply_am(rig, T0, am_payload(am_alert("firing"))) == []
    [ticket] = rig.tickets()
    assert (ticket.level, ticket.source, ticket.hostname) == (
        "1",
        "alertmanager",
        "nas-1.acme.example",
    )
    assert ticket.dedup_key == "am:1a30ba71cca2921f"
    assert ticket.title == "磁盘空间不足: /data on nas-1 is 97% full"
    [opened] = rig.events(ticket.id)
    assert opened.actor == "alertmanager"
    assert opened.details["labels"]["severity"] == "critical"
    assert rig.metrics.opened == {("1", "alertmanager"): 1}

    for repeat in range(1, 4):  # group_interval / repeat_interval repeats
        assert apply_am(rig, T0 + repeat * 5 * MINUTE_MS, am_payload(am_alert("firing"))) == []
    assert len(rig.tickets()) == 1 and rig.kinds(ticket.id) == ["opened"]

    apply_am(rig, T0 + HOUR_MS, am_payload(am_alert("resolved")))
    assert rig.view(ticket.id).ticket.state == "recovered"
    apply_am(rig, T0 + HOUR_MS + MINUTE_MS, am_payload(am_alert("resolved")))
    assert rig.kinds(ticket.id) == ["opened", "recovered"], "a repeated resolved adds nothing"

    apply_am(rig, T0 + 2 * HOUR_MS, am_payload(am_alert("firing")))
    assert rig.view(ticket.id).ticket.state == "open"
    assert rig.kinds(ticket.id) == ["opened", "recovered", "refired"]
    assert len(rig.tickets()) == 1


def test_alertmanager_levels_follow_the_severity_label(make_rig: MakeRig) -> None:
    rig = make_rig()
    severities = {"critical": "1", "MAJOR": "2", "warning": "3", "info": "4", "": "3", "2": "2"}
    alerts = [
        am_alert("firing", fingerprint=f"f{i}", severity=severity, host=f"h{i}")
        for i, severity in enumerate(severities)
    ]
    assert apply_am(rig, T0, am_payload(*alerts)) == []
    levels = {t.hostname: t.level for t in rig.tickets()}
    assert levels == {f"h{i}": level for i, level in enumerate(severities.values())}


def test_alertmanager_severities_map_as_docs_alertmanager_md_says(make_rig: MakeRig) -> None:
    rig = make_rig()
    documented = {"emergency": "1", "page": "1", "high": "2", "error": "2", "low": "4"}
    alerts = [
        am_alert("firing", fingerprint=f"s{i}", severity=severity, host=f"h{i}")
        for i, severity in enumerate(documented)
    ]
    apply_am(rig, T0, am_payload(*alerts))
    levels = {t.hostname: t.level for t in rig.tickets()}
    assert levels == {f"h{i}": level for i, level in enumerate(documented.values())}


def test_an_alert_without_a_customer_is_a_problem_and_the_others_apply(make_rig: MakeRig) -> None:
    rig = make_rig()
    payload = am_payload(
        am_alert("firing", fingerprint="aaaa", host="nas-1"),
        am_alert("firing", fingerprint="bbbb", customer="", alertname="Orphan"),
        am_alert("firing", fingerprint="cccc", customer="globex", host="db-9"),
    )
    problems = apply_am(rig, T0, payload)
    [problem] = problems
    assert problem.startswith("alerts[1] (Orphan)") and "customer" in problem
    assert sorted((t.customer, t.hostname) for t in rig.tickets()) == [
        ("acme", "nas-1"),
        ("globex", "db-9"),
    ]
    assert [t.hostname for t in rig.tickets(MALLORY)] == ["db-9"]


def test_alertmanager_recurrence_reopens_a_closed_ticket_within_the_window(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(TicketsConfig(reopen_window_ms=DAY_MS))
    apply_am(rig, T0, am_payload(am_alert("firing")))
    [ticket] = rig.tickets()
    apply_am(rig, T0 + MINUTE_MS, am_payload(am_alert("resolved")))
    rig.resolve(ticket.id, T0 + HOUR_MS)
    rig.act(ALICE, ticket.id, "confirm", T0 + 2 * HOUR_MS)
    apply_am(rig, T0 + 3 * HOUR_MS, am_payload(am_alert("firing")))
    [again] = rig.tickets()
    assert (again.id, again.state, again.reopen_count) == (ticket.id, "reopened", 1)


# -- customer notices ------------------------------------------------------------------

ACME_HOOK = Recipient("webhook", "http://127.0.0.1:9/acme-notices?token=s3cret")
ACME_OPS = Recipient("email", "ops@acme.example")
TOLD = TicketsConfig(
    sla=SLA,
    escalation=LADDER,
    auto_confirm_ms=7 * DAY_MS,
    customer_notices=CustomerNoticePolicy(
        contacts={"acme": (ACME_HOOK, ACME_OPS)}, remind_before_ms=DAY_MS
    ),
)


def customer_notices(rig: Rig) -> list[tuple[str, str]]:
    return [
        (n.payload["event"], n.target) for n in rig.deliverer.delivered if n.audience == "customer"
    ]


def test_customers_are_told_of_opening_fix_and_coming_auto_confirmation(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(TOLD, public_url="https://support.vendor.example/")
    ticket_id = rig.create(ENGINEER, "printer on fire", customer="acme")
    rig.tick(T0 + SECOND_MS)
    rig.tick(T0 + 2 * SECOND_MS)  # once only
    assert customer_notices(rig) == [
        ("customer_opened", ACME_HOOK.target),
        ("customer_opened", ACME_OPS.target),
    ]
    opened = rig.deliverer.delivered[0]
    assert opened.payload["link"] == f"https://support.vendor.example/tickets/{ticket_id}"
    assert "工单" in opened.text() and "was opened for you" in opened.text()

    resolved_at = T0 + 3 * MINUTE_MS
    rig.resolve(ticket_id, resolved_at)
    rig.tick(resolved_at + SECOND_MS)
    waiting = customer_notices(rig)[2:]
    assert waiting == [
        ("customer_awaiting_confirmation", ACME_HOOK.target),
        ("customer_awaiting_confirmation", ACME_OPS.target),
    ]
    auto_at = resolved_at + 7 * DAY_MS
    rig.tick(auto_at - DAY_MS - 1)
    assert len(customer_notices(rig)) == 4, "no reminder before remind_before"
    rig.tick(auto_at - DAY_MS)
    reminders = customer_notices(rig)[4:]
    assert [kind for kind, _ in reminders] == ["customer_auto_confirm_soon"] * 2
    reminder = rig.deliverer.delivered[-1]
    assert reminder.payload["auto_confirm_ms"] == auto_at
    assert "in 1d" in reminder.payload["summary"]
    rig.tick(auto_at)
    assert rig.view(ticket_id).ticket.state == "closed"
    recorded = [e for e in rig.events(ticket_id) if e.details.get("audience") == "customer"]
    assert len(recorded) == 6
    assert all("s3cret" not in json.dumps(e.details) for e in recorded)


def test_a_customer_reading_the_timeline_never_sees_escalation_recipients(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(TOLD)
    rig.deliverer.failing.add("email")  # the delivery error quotes the address too
    ticket_id = rig.create(ALICE, "printer on fire")
    for at in range(T0, T0 + 40 * MINUTE_MS, MINUTE_MS):
        rig.tick(at)
    engineer_view = json.dumps([dict(e.details) for e in rig.view(ticket_id).events])
    assert HOOK.label in engineer_view, "engineers see where escalations went"
    assert ONCALL.target in engineer_view
    customer_view = rig.view(ticket_id, ALICE)
    shown = json.dumps([dict(e.details) for e in customer_view.events])
    assert HOOK.label not in shown and ONCALL.target not in shown
    assert ACME_HOOK.label in shown, "the customer's own contacts may be shown"
    internal = [
        e.details
        for e in customer_view.events
        if e.kind == "notification" and e.details.get("audience") != "customer"
    ]
    assert internal and all(not {"target", "key", "error"} & set(d) for d in internal)
    assert any(d["delivered"] is False for d in internal), "the failure is still told"
    kinds = [e.kind for e in customer_view.events]
    assert kinds == [e.kind for e in rig.view(ticket_id).events], "nothing hidden but targets"


def test_customer_notices_without_public_url_name_the_command(make_rig: MakeRig) -> None:
    rig = make_rig(TOLD)
    ticket_id = rig.create(ENGINEER, "printer on fire", customer="acme")
    rig.resolve(ticket_id, T0 + MINUTE_MS)
    rig.tick(T0 + 2 * MINUTE_MS)
    [hook, _] = [n for n in rig.deliverer.delivered if n.audience == "customer"]
    assert hook.payload["link"] == f"aftercare ticket confirm {ticket_id}"


def test_customer_notices_follow_the_customers_language_setting(make_rig: MakeRig) -> None:
    rig = make_rig(TOLD, public_url="https://support.vendor.example")
    rig.db.store.set_customer_language("acme", "en", "admin", T0)
    english_id = rig.create(ENGINEER, "printer on fire", customer="acme")
    rig.tick(T0 + SECOND_MS)
    rig.db.store.set_customer_language("acme", "zh-CN", "admin", T0)
    rig.resolve(english_id, T0 + MINUTE_MS)
    rig.tick(T0 + 2 * MINUTE_MS)
    opened, _, waiting, _ = [n for n in rig.deliverer.delivered if n.audience == "customer"]
    assert opened.payload["language"] == "en" and "工单" not in opened.text()
    assert opened.subject == f"[aftercare] ticket opened: ticket #{english_id} printer on fire"
    assert "was opened for you" in opened.text()
    assert f"Link: https://support.vendor.example/tickets/{english_id}" in opened.text()
    assert waiting.payload["language"] == "zh-CN" and "please confirm" not in waiting.text()
    assert waiting.subject.startswith("[aftercare] 请确认故障已排除: 工单 #")
    assert "请确认是否解决" in waiting.text() and "链接: https://" in waiting.text()
    assert waiting.payload["summary"] and waiting.payload["summary_zh"]  # both, as before


def test_escalation_recipients_never_get_customer_notices_nor_the_reverse(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(TOLD)
    rig.create(ENGINEER, "printer on fire", customer="acme")
    rig.create(ENGINEER, "other customer's fault", customer="globex")
    for at in range(T0, T0 + 40 * MINUTE_MS, MINUTE_MS):
        rig.tick(at)
    internal = {HOOK.target, ONCALL.target}
    customer = {ACME_HOOK.target, ACME_OPS.target}
    by_audience: dict[str, set[str]] = {"internal": set(), "customer": set()}
    for n in rig.deliverer.delivered:
        by_audience[n.audience].add(n.target)
    assert by_audience["internal"] == internal
    assert by_audience["customer"] == customer
    for n in rig.deliverer.delivered:
        if n.audience == "customer":
            text = json.dumps(n.payload) + n.text()
            assert n.payload["ticket"]["customer"] == "acme", "globex has no contacts"
            assert not any(target in text for target in internal)
            assert "127.0.0.1:9/hooks" not in text


def test_the_report_has_the_vendor_the_customers_zone_impact_and_losses(
    make_rig: MakeRig,
) -> None:
    config = TicketsConfig(
        report_vendor="Example Systems Ltd",
        report_timezone="Europe/Berlin",
        report_timezones={"acme": "Asia/Shanghai"},
    )
    rig = make_rig(config)
    ticket_id = rig.create(ENGINEER, "orders stall", level="1", customer="acme")
    with pytest.raises(InvalidRequest, match="prevention"):
        rig.act(ENGINEER, ticket_id, "resolve", T0 + HOUR_MS, cause="lock", actions="killed")
    rig.act(
        ENGINEER,
        ticket_id,
        "resolve",
        T0 + HOUR_MS,
        cause="a lock held by a report job",
        actions="killed the job",
        prevention="run the job at night",
        impact="no orders for 1 h",
        losses="none",
    )
    md = run(rig.service.report(ALICE, ticket_id, "md"))
    assert md.startswith("# Example Systems Ltd 故障分析报告")
    assert "2026-01-01T08:00:00+08:00" in md  # T0 in Asia/Shanghai
    assert "no orders for 1 h" in md
    data = json.loads(run(rig.service.report(ALICE, ticket_id, "json")))
    assert (data["timezone"], data["impact"], data["losses"]) == (
        "Asia/Shanghai",
        "no orders for 1 h",
        "none",
    )


# -- audit ---------------------------------------------------------------------------------


def test_every_ticket_act_is_in_the_hash_chained_audit_log(make_rig: MakeRig) -> None:
    rig = make_rig()
    ticket_id = rig.create(ALICE, "printer on fire")
    rig.act(ENGINEER, ticket_id, "acknowledge", T0 + MINUTE_MS)
    rig.act(ENGINEER, ticket_id, "contact", via="phone", text="called Alice")
    rig.act(ALICE, ticket_id, "comment", text="it smells of smoke")
    rig.resolve(ticket_id, T0 + HOUR_MS)
    rig.act(ALICE, ticket_id, "confirm", T0 + 2 * HOUR_MS)
    entries = run(rig.db.call(rig.db.store.audit_entries))
    audited = [(e.action, e.actor, e.details["event_id"]) for e in entries]
    timeline = [(f"ticket.{e.kind}", e.actor, e.id) for e in rig.events(ticket_id)]
    assert audited == timeline
    assert {e.target for e in entries} == {f"ticket:{ticket_id}"}
    resolved = next(e for e in entries if e.action == "ticket.resolved")
    assert resolved.details["cause"] == "log rotation disabled"
    contacted = next(e for e in entries if e.action == "ticket.contacted")
    assert (contacted.details["via"], contacted.details["note"]) == ("phone", "called Alice")
    assert verify_chain(entries).ok
