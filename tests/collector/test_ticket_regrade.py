"""Regrading a ticket (``aftercare ticket level``): the lifecycle step, the SLA clocks
restarting from the regrade against the new level's targets, a fresh escalation
ladder, permissions (customers refused) and the audit chain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from collector.audit import verify_chain
from collector.errors import FailedPrecondition, InvalidRequest, NotFound, PermissionDenied
from collector.tickets import lifecycle
from collector.tickets.config import TicketsConfig
from collector.tickets.escalation import EscalationPolicy, EscalationStep, Trigger
from collector.tickets.model import Level, NewEvent, Ticket
from collector.tickets.sla import HOUR_MS, MINUTE_MS, SlaPolicy, sla_status
from tests.collector.test_ticket_service import (  # noqa: F401  (fixtures)
    ALICE,
    ENGINEER,
    HOOK,
    MALLORY,
    T0,
    MakeRig,
    make_rig,
    rigs,
    run,
)

POLICY = SlaPolicy()
ERIN = "user:erin"


def ticket(level: Level = "4", state: str = "open") -> Ticket:
    return Ticket(
        id=5,
        customer="acme",
        title="x",
        level=level,
        state=state,  # type: ignore[arg-type]
        source="customer",
        created_ms=T0,
        updated_ms=T0,
    )


def opened() -> list[NewEvent]:
    return [NewEvent(T0, "user:alice", "opened", {"level": "1"})]


def regraded(at: int, level: Level, previous: Level) -> NewEvent:
    return NewEvent(at, ERIN, "regraded", {"level": level, "previous": previous, "reason": "r"})


# -- lifecycle -------------------------------------------------------------------------


def test_regrade_sets_the_level_and_records_who_why_and_the_previous_level() -> None:
    transition = lifecycle.regrade(ticket("1"), "4", "  title 'x' is not an outage ", ERIN, T0 + 5)
    assert transition.ticket.level == "4"
    [event] = transition.events
    assert (event.kind, event.actor, event.at_ms) == ("regraded", ERIN, T0 + 5)
    assert event.details == {"level": "4", "previous": "1", "reason": "title 'x' is not an outage"}


@pytest.mark.parametrize("state", ["resolved", "closed"])
def test_a_resolved_or_closed_ticket_must_be_reopened_before_regrading(state: str) -> None:
    with pytest.raises(FailedPrecondition, match=r"is " + state + ".*re-open it first"):
        lifecycle.regrade(ticket("1", state), "4", "why", ERIN, T0)


@pytest.mark.parametrize(
    ("level", "reason", "message"),
    [
        ("4", "   ", "reason for regrading must not be empty"),
        ("5", "why", "unknown fault level '5'"),
        ("1", "why", "already at level 1"),
    ],
)
def test_bad_regrades_are_refused(level: str, reason: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        lifecycle.regrade(ticket("1"), level, reason, ERIN, T0)


# -- SLA clocks ------------------------------------------------------------------------


def test_an_upgrade_restarts_the_running_clocks_against_the_new_targets() -> None:
    at = T0 + 20 * MINUTE_MS  # a level-4 ticket (2 h / 72 h) becomes level 1 (30 m / 4 h)
    events = [*opened(), regraded(at, "1", "4")]
    status = sla_status(ticket("1"), events, POLICY, at + MINUTE_MS)
    assert status.response.started_ms == at
    assert status.response.target_ms == 30 * MINUTE_MS
    assert status.response.due_ms == at + 30 * MINUTE_MS
    assert status.response.regraded_ms == at
    assert status.resolution.started_ms == at
    assert status.resolution.elapsed_ms == MINUTE_MS  # the 20 min before do not count
    assert status.resolution.due_ms == at + 4 * HOUR_MS


def test_a_downgrade_before_the_response_saves_a_ticket_from_a_breach() -> None:
    at = T0 + 25 * MINUTE_MS  # level 1 (30 m) regraded to 4 (2 h) before anyone answered
    events = [*opened(), regraded(at, "4", "1")]
    status = sla_status(ticket("4"), events, POLICY, T0 + 40 * MINUTE_MS)
    assert status.response.state == "running"
    assert status.response.due_ms == at + 2 * HOUR_MS
    without = sla_status(ticket("1"), opened(), POLICY, T0 + 40 * MINUTE_MS)
    assert without.response.state == "breached"


def test_a_stopped_clock_keeps_its_result_under_the_level_it_ran_at() -> None:
    ack = T0 + 90 * MINUTE_MS  # the customer reached in 1 h 30: met for level 4 (2 h)
    contacted = NewEvent(ack, ERIN, "contacted", {"via": "phone", "note": "n"})
    events = [*opened(), contacted, regraded(ack + 1, "1", "4")]
    status = sla_status(ticket("1"), events, POLICY, ack + 2 * HOUR_MS)
    assert status.response.state == "met"
    assert status.response.target_ms == 2 * HOUR_MS
    assert status.response.regraded_ms is None
    assert status.resolution.target_ms == 4 * HOUR_MS  # still running: restarted
    assert status.resolution.started_ms == ack + 1


def test_a_running_remote_response_clock_restarts_and_consult_has_none() -> None:
    approved = T0 + 10 * MINUTE_MS
    events = [*opened(), NewEvent(approved, "user:alice", "remote_approved")]
    at = approved + 20 * MINUTE_MS
    status = sla_status(ticket("3"), [*events, regraded(at, "3", "1")], POLICY, at + 5)
    assert status.remote_response.started_ms == at
    assert status.remote_response.target_ms == 2 * HOUR_MS
    status = sla_status(ticket("consult"), [*events, regraded(at, "consult", "1")], POLICY, at)
    assert status.remote_response.state == "not_applicable"


def test_resolution_accumulates_across_reopenings_after_a_regrade() -> None:
    at = T0 + HOUR_MS
    events = [
        *opened(),
        regraded(at, "3", "4"),
        NewEvent(at + HOUR_MS, ERIN, "resolved", {"cause": "c"}),
        NewEvent(at + 5 * HOUR_MS, "system", "reopened", {"reason": "recurrence"}),
    ]
    status = sla_status(ticket("3"), events, POLICY, at + 6 * HOUR_MS)
    assert status.resolution.elapsed_ms == 2 * HOUR_MS  # 1 h after the regrade + 1 h now
    assert status.resolution.target_ms == 24 * HOUR_MS


# -- the service -------------------------------------------------------------------------


def test_engineers_regrade_customers_cannot(make_rig: MakeRig) -> None:  # noqa: F811
    rig = make_rig()
    ticket_id = rig.create(ALICE, "x", level="1")
    with pytest.raises(PermissionDenied, match="grading is the vendor's step"):
        run(rig.service.regrade(ALICE, ticket_id, "4", "my own"))
    with pytest.raises(PermissionDenied):
        run(rig.service.regrade(MALLORY, ticket_id, "4", "another customer's"))
    with pytest.raises(NotFound):
        run(rig.service.regrade(ENGINEER, ticket_id + 1, "4", "no such ticket"))
    assert rig.view(ticket_id).ticket.level == "1"

    rig.clock.now = T0 + 10 * MINUTE_MS
    saved = run(rig.service.regrade(ENGINEER, ticket_id, "4", "title 'x': no outage"))
    assert saved.level == "4"
    view = rig.view(ticket_id)
    assert view.sla.response.target_ms == 2 * HOUR_MS
    assert view.sla.response.started_ms == T0 + 10 * MINUTE_MS
    entries = run(rig.db.call(rig.db.store.audit_entries))
    regrade = next(e for e in entries if e.action == "ticket.regraded")
    assert regrade.actor == "user:erin"
    assert regrade.details["reason"] == "title 'x': no outage"
    assert (regrade.details["level"], regrade.details["previous"]) == ("4", "1")
    assert verify_chain(entries).ok


def test_a_regrade_starts_a_fresh_escalation_ladder(make_rig: MakeRig) -> None:  # noqa: F811
    ladder = EscalationPolicy(steps=(EscalationStep(Trigger("breach"), (HOOK,)),))
    config = replace(TicketsConfig(), escalation=ladder)
    rig = make_rig(config)
    ticket_id = rig.create(ENGINEER, "db slow", level="3", customer="acme")
    rig.tick(T0 + 2 * HOUR_MS + 1)  # response (2 h) breached at level 3: notified
    assert len(rig.deliverer.delivered) == 1
    regrade_at = T0 + 3 * HOUR_MS
    rig.clock.now = regrade_at
    run(rig.service.regrade(ENGINEER, ticket_id, "1", "the whole shop is down"))
    rig.tick(regrade_at + 30 * MINUTE_MS)  # at the new due time: not breached yet
    assert len(rig.deliverer.delivered) == 1
    rig.tick(regrade_at + 30 * MINUTE_MS + 1)  # level 1's 30 min passed: a fresh breach
    keys = [n.key for n in rig.deliverer.delivered]
    assert len(keys) == 2
    assert keys[1].endswith(f"/regraded:{regrade_at}")
    rig.tick(regrade_at + HOUR_MS)  # and only once
    assert len(rig.deliverer.delivered) == 2
    breaches = [
        e
        for e in rig.events(ticket_id)
        if e.kind == "escalation" and e.details["clock"] == "response"
    ]
    assert [e.details.get("regraded_ms") for e in breaches] == [None, regrade_at]
