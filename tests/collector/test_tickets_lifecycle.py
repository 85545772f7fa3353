"""Ticket lifecycle: every legal transition, illegal ones with their messages, the closed loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from collector.errors import FailedPrecondition, InvalidRequest
from collector.tickets import lifecycle as lc
from collector.tickets.errors import InvalidTransition
from collector.tickets.model import (
    TICKET_STATES,
    NewEvent,
    NewTicket,
    Ticket,
    TicketEvent,
    TicketState,
)

T0 = 1_700_000_000_000
MIN = 60_000
DAY = 86_400_000
ENGINEER = "user:erin"
CUSTOMER = "user:carl"


def make(state: TicketState = "open", **changes: Any) -> Ticket:
    ticket = Ticket(
        id=12,
        customer="acme",
        title="/var almost full",
        level="2",
        state=state,
        source="rule",
        created_ms=T0,
        updated_ms=T0 + 5,
        hostname="db1",
        rule="filesystem_almost_full",
        dedup_key="db1/filesystem_almost_full/mount=/var",
        version=7,
    )
    return replace(ticket, **changes)


def kinds(transition: lc.Transition) -> list[str]:
    return [e.kind for e in transition.events]


# Each action called with valid arguments, so that only the state decides.
CALLS: dict[lc.Action, Callable[[Ticket], lc.Transition]] = {
    "acknowledge": lambda t: lc.acknowledge(t, ENGINEER, T0 + MIN),
    "comment": lambda t: lc.comment(t, "looking", ENGINEER, T0 + MIN),
    "assign": lambda t: lc.assign(t, "erin", ENGINEER, T0 + MIN),
    "resolve": lambda t: lc.resolve(t, "log rotation off", "rotated", "cron", ENGINEER, T0 + MIN),
    "confirm": lambda t: lc.confirm(t, CUSTOMER, T0 + MIN),
    "reject": lambda t: lc.reject(t, "still full", CUSTOMER, T0 + MIN),
    "reopen": lambda t: lc.reopen(t, "came back", ENGINEER, T0 + MIN),
    "wait_on_customer": lambda t: lc.wait_on_customer(t, "need a window", ENGINEER, T0 + MIN),
    "resume": lambda t: lc.resume(t, ENGINEER, T0 + MIN),
    "contact": lambda t: lc.contact(t, "phone", "spoke to Li Wei", ENGINEER, T0 + MIN),
    "refire": lambda t: lc.refire(t, 97.0, {"threshold": 90}, "rule:fs", T0 + MIN),
    "recover": lambda t: lc.recover(t, "rule:fs", T0 + MIN),
    "auto_confirm": lambda t: lc.auto_confirm(t, 7 * DAY, T0 + 8 * DAY),
}

EXPECTED_ALLOWED: dict[tuple[TicketState, bool], set[str]] = {
    ("open", False): {
        "acknowledge",
        "comment",
        "assign",
        "resolve",
        "wait_on_customer",
        "contact",
        "refire",
        "recover",
    },
    ("acknowledged", False): {
        "comment",
        "assign",
        "resolve",
        "wait_on_customer",
        "contact",
        "refire",
        "recover",
    },
    ("recovered", False): {
        "acknowledge",
        "comment",
        "assign",
        "resolve",
        "wait_on_customer",
        "contact",
        "refire",
    },
    ("reopened", False): {
        "acknowledge",
        "comment",
        "assign",
        "resolve",
        "wait_on_customer",
        "contact",
        "refire",
        "recover",
    },
    ("resolved", False): {
        "comment",
        "assign",
        "confirm",
        "reject",
        "reopen",
        "contact",
        "refire",
        "auto_confirm",
    },
    ("closed", False): {"comment", "reopen", "refire"},
}
UNRESOLVED: tuple[TicketState, ...] = ("open", "acknowledged", "recovered", "reopened")
for _state in UNRESOLVED:
    _waiting = EXPECTED_ALLOWED[(_state, False)] - {"wait_on_customer"} | {"resume"}
    EXPECTED_ALLOWED[(_state, True)] = _waiting


def ticket_in(state: TicketState, waiting: bool) -> Ticket:
    extra: dict[str, Any] = {"waiting_on_customer": waiting}
    if state in ("resolved", "closed"):
        extra |= {"resolved_ms": T0, "resolution": {"cause": "c"}, "acknowledged_ms": T0}
    if state == "closed":
        extra |= {"closed_ms": T0, "close_reason": "confirmed"}
    return make(state, **extra)


# -- the table of what applies ---------------------------------------------------------


@pytest.mark.parametrize("key", sorted(EXPECTED_ALLOWED), ids=lambda k: f"{k[0]}-waiting{k[1]}")
def test_allowed_actions_per_state(key: tuple[TicketState, bool]) -> None:
    state, waiting = key
    assert set(lc.allowed_actions(ticket_in(state, waiting))) == EXPECTED_ALLOWED[key]


@pytest.mark.parametrize("state", TICKET_STATES)
@pytest.mark.parametrize("action", lc.ACTIONS)
def test_each_action_succeeds_exactly_where_allowed(state: TicketState, action: lc.Action) -> None:
    for waiting in (False, True) if state not in ("resolved", "closed") else (False,):
        ticket = ticket_in(state, waiting)
        if action in lc.allowed_actions(ticket):
            result = CALLS[action](ticket)
            assert result.events, f"{action} on {state} recorded nothing"
            assert result.ticket.id == ticket.id
            # the store, not the transition, bumps version and updated_ms
            assert result.ticket.version == ticket.version
            assert result.ticket.updated_ms == ticket.updated_ms
            assert all(e.at_ms >= T0 for e in result.events)
        else:
            with pytest.raises(InvalidTransition) as caught:
                CALLS[action](ticket)
            assert f"ticket 12 is {state}" in str(caught.value)
            assert f"`{action}` does not apply" in str(caught.value)


# -- illegal transitions: messages ------------------------------------------------------


def test_invalid_transition_is_a_failed_precondition_and_names_state_and_possibilities() -> None:
    closed = ticket_in("closed", False)
    with pytest.raises(FailedPrecondition) as caught:
        lc.acknowledge(closed, ENGINEER, T0)
    assert isinstance(caught.value, InvalidTransition)
    assert str(caught.value) == (
        "ticket 12 is closed; `acknowledge` does not apply: it is already acknowledged or "
        "no longer needs it (possible: `comment`, `reopen`)"
    )


@pytest.mark.parametrize(
    ("state", "call", "fragments"),
    [
        ("open", "confirm", ["ticket 12 is open", "only a resolved ticket can be confirmed"]),
        ("acknowledged", "reject", ["only a resolved ticket can be rejected"]),
        ("open", "reopen", ["only a resolved or closed ticket can be re-opened"]),
        ("resolved", "resolve", ["already resolved", "`confirm`", "`reject`", "`reopen`"]),
        ("closed", "assign", ["ticket 12 is closed", "possible: `comment`, `reopen`"]),
        ("acknowledged", "acknowledge", ["ticket 12 is acknowledged"]),
        ("recovered", "recover", ["only an open, acknowledged or re-opened ticket can recover"]),
        ("open", "resume", ["it is not waiting on the customer"]),
    ],
)
def test_illegal_transition_messages(
    state: TicketState, call: lc.Action, fragments: list[str]
) -> None:
    with pytest.raises(InvalidTransition) as caught:
        CALLS[call](ticket_in(state, False))
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_waiting_twice_says_it_is_already_waiting() -> None:
    with pytest.raises(InvalidTransition, match=r"open and waiting on the customer.*already"):
        lc.wait_on_customer(make(waiting_on_customer=True), "again", ENGINEER, T0)


def test_only_one_possible_action_is_phrased_as_only() -> None:
    error = InvalidTransition(3, "closed", "assign", ["reopen"])
    assert str(error) == "ticket 3 is closed; `assign` does not apply (only `reopen` applies)"


@pytest.mark.parametrize(
    "call",
    [
        lambda: lc.comment(make(), "   ", ENGINEER, T0),
        lambda: lc.resolve(make(), " ", "a", "p", ENGINEER, T0),
        lambda: lc.reject(ticket_in("resolved", False), "", CUSTOMER, T0),
        lambda: lc.reopen(ticket_in("closed", False), "\n", ENGINEER, T0),
        lambda: lc.wait_on_customer(make(), "", ENGINEER, T0),
    ],
    ids=["comment", "resolve-cause", "reject-reason", "reopen-reason", "wait-reason"],
)
def test_required_text_is_required(call: Callable[[], lc.Transition]) -> None:
    with pytest.raises(InvalidRequest, match="must not be empty"):
        call()


# -- each legal transition ---------------------------------------------------------------


def test_create_event_carries_the_onset_evidence() -> None:
    new = NewTicket(
        customer="acme",
        title="/var almost full",
        level="2",
        source="rule",
        labels={"mount": "/var"},
    )
    event = lc.create_event(new, "rule:fs", T0, {"value": 93.5, "threshold": 90})
    assert event == NewEvent(
        at_ms=T0,
        actor="rule:fs",
        kind="opened",
        details={
            "title": "/var almost full",
            "level": "2",
            "source": "rule",
            "labels": {"mount": "/var"},
            "value": 93.5,
            "threshold": 90,
        },
    )


@pytest.mark.parametrize("state", ["open", "reopened"])
def test_acknowledge_moves_to_acknowledged_and_sets_the_first_time_only(
    state: TicketState,
) -> None:
    first = lc.acknowledge(make(state), ENGINEER, T0 + MIN)
    assert first.ticket.state == "acknowledged"
    assert first.ticket.acknowledged_ms == T0 + MIN
    assert first.events == [NewEvent(T0 + MIN, ENGINEER, "acknowledged")]
    again = lc.acknowledge(replace(first.ticket, state="reopened"), "user:bob", T0 + 9 * MIN)
    assert again.ticket.acknowledged_ms == T0 + MIN
    assert again.events[0].actor == "user:bob"


def test_acknowledging_a_recovered_ticket_keeps_it_recovered_but_records_it() -> None:
    result = lc.acknowledge(make("recovered"), ENGINEER, T0 + MIN)
    assert result.ticket.state == "recovered"
    assert result.ticket.acknowledged_ms == T0 + MIN
    assert kinds(result) == ["acknowledged"]


def test_comment_changes_nothing_but_the_timeline() -> None:
    ticket = ticket_in("closed", False)
    result = lc.comment(ticket, "  thanks, all good  ", CUSTOMER, T0)
    assert result.ticket == ticket
    assert result.events == [NewEvent(T0, CUSTOMER, "comment", {"text": "thanks, all good"})]


def test_assign_and_unassign() -> None:
    assigned = lc.assign(make(), "erin", ENGINEER, T0)
    assert assigned.ticket.assignee == "erin"
    assert assigned.events[0].details == {"assignee": "erin", "previous": None}
    cleared = lc.assign(assigned.ticket, None, ENGINEER, T0 + 1)
    assert cleared.ticket.assignee is None
    assert cleared.events[0].details == {"assignee": None, "previous": "erin"}


@pytest.mark.parametrize("state", ["open", "acknowledged", "reopened"])
def test_refire_on_an_active_ticket_only_adds_evidence(state: TicketState) -> None:
    ticket = make(state)
    result = lc.refire(ticket, 97.0, {"threshold": 90}, "rule:fs", T0 + MIN)
    assert result.ticket == ticket
    assert result.events == [
        NewEvent(T0 + MIN, "rule:fs", "refired", {"value": 97.0, "threshold": 90})
    ]


def test_refire_on_a_recovered_ticket_returns_it_where_it_was() -> None:
    never_acked = lc.refire(make("recovered"), 1.0, None, "rule:fs", T0)
    assert never_acked.ticket.state == "open"
    acked = lc.refire(make("recovered", acknowledged_ms=T0), 1.0, None, "rule:fs", T0)
    assert acked.ticket.state == "acknowledged"


def test_refire_on_a_recovered_reopened_ticket_reads_the_history() -> None:
    # acknowledged long ago, re-opened, recovered before anyone acknowledged the re-opening
    ticket = make("recovered", acknowledged_ms=T0 + 1, reopen_count=1, resolved_ms=T0 + 2)
    history = [
        TicketEvent(1, 12, T0, "rule:fs", "opened"),
        TicketEvent(2, 12, T0 + 1, ENGINEER, "acknowledged"),
        TicketEvent(3, 12, T0 + 2, ENGINEER, "resolved"),
        TicketEvent(4, 12, T0 + 3, "rule:fs", "reopened"),
        TicketEvent(5, 12, T0 + 4, "rule:fs", "recovered"),
    ]
    assert lc.refire(ticket, 1.0, None, "rule:fs", T0 + 5, history).ticket.state == "reopened"
    acked = [*history, TicketEvent(6, 12, T0 + 5, ENGINEER, "acknowledged")]
    assert lc.refire(ticket, 1.0, None, "rule:fs", T0 + 6, acked).ticket.state == "acknowledged"


def test_refire_on_a_resolved_ticket_reopens_it() -> None:
    ticket = ticket_in("resolved", False)
    result = lc.refire(ticket, 99.0, None, "rule:fs", T0 + MIN)
    assert result.ticket.state == "reopened"
    assert result.ticket.reopen_count == 1
    assert kinds(result) == ["refired", "reopened"]
    assert result.events[1].details == {
        "reason": "recurrence",
        "trigger": "recurrence",
        "previous": "resolved",
    }


@pytest.mark.parametrize("state", ["open", "acknowledged", "reopened"])
def test_recover(state: TicketState) -> None:
    result = lc.recover(make(state), "rule:fs", T0, {"value": 50.0})
    assert result.ticket.state == "recovered"
    assert result.events == [NewEvent(T0, "rule:fs", "recovered", {"value": 50.0})]


@pytest.mark.parametrize("state", ["open", "acknowledged", "recovered", "reopened"])
def test_resolve_records_the_fault_analysis(state: TicketState) -> None:
    minor = make(state, level="3")  # prevention is optional below level 2
    result = lc.resolve(minor, " rotation off ", "rotated", "", ENGINEER, T0 + MIN)
    assert result.ticket.state == "resolved"
    assert result.ticket.resolved_ms == T0 + MIN
    resolution = {"cause": "rotation off", "actions": "rotated", "prevention": ""}
    assert result.ticket.resolution == resolution
    assert result.events == [NewEvent(T0 + MIN, ENGINEER, "resolved", resolution)]


def test_resolving_while_waiting_ends_the_wait_first() -> None:
    result = lc.resolve(make(waiting_on_customer=True), "c", "", "p", ENGINEER, T0)
    assert not result.ticket.waiting_on_customer
    assert kinds(result) == ["resumed", "resolved"]


def test_confirm_closes_as_confirmed() -> None:
    result = lc.confirm(ticket_in("resolved", False), CUSTOMER, T0 + DAY)
    assert result.ticket.state == "closed"
    assert result.ticket.closed_ms == T0 + DAY
    assert result.ticket.close_reason == "confirmed"
    assert kinds(result) == ["confirmed", "closed"]
    assert result.events[1].details == {"reason": "confirmed"}
    assert {e.actor for e in result.events} == {CUSTOMER}


def test_reject_reopens_with_the_reason() -> None:
    result = lc.reject(ticket_in("resolved", False), "still slow", CUSTOMER, T0 + DAY)
    assert result.ticket.state == "reopened"
    assert result.ticket.reopen_count == 1
    assert kinds(result) == ["rejected", "reopened"]
    assert result.events[0].details == {"reason": "still slow"}
    assert result.events[1].details["trigger"] == "rejected"
    # the latest resolution is kept until the next one replaces it
    assert result.ticket.resolution == {"cause": "c"}


@pytest.mark.parametrize("state", ["resolved", "closed"])
def test_engineer_reopen(state: TicketState) -> None:
    result = lc.reopen(ticket_in(state, False), "same fault on the replica", ENGINEER, T0)
    assert result.ticket.state == "reopened"
    assert result.ticket.reopen_count == 1
    assert result.ticket.closed_ms is None
    assert result.ticket.close_reason is None
    assert result.events[-1].details["trigger"] == "engineer"


def test_auto_confirm_only_after_the_period() -> None:
    resolved = make("resolved", resolved_ms=T0, resolution={"cause": "c"})
    assert lc.auto_confirm_due_ms(resolved, 7 * DAY) == T0 + 7 * DAY
    assert lc.auto_confirm_due_ms(make("open"), 7 * DAY) is None
    with pytest.raises(InvalidTransition, match="auto-confirm period has not ended"):
        lc.auto_confirm(resolved, 7 * DAY, T0 + 7 * DAY - 1)
    result = lc.auto_confirm(resolved, 7 * DAY, T0 + 7 * DAY)
    assert result.ticket.state == "closed"
    assert result.ticket.close_reason == "auto-confirmed"
    assert result.ticket.closed_ms == T0 + 7 * DAY
    assert result.events == [
        NewEvent(
            T0 + 7 * DAY,
            "system",
            "closed",
            {"reason": "auto-confirmed", "resolved_ms": T0},
        )
    ]


def test_wait_on_customer_and_resume() -> None:
    waiting = lc.wait_on_customer(make(), "needs a maintenance window", ENGINEER, T0)
    assert waiting.ticket.waiting_on_customer
    assert waiting.events == [
        NewEvent(T0, ENGINEER, "waiting", {"reason": "needs a maintenance window"})
    ]
    resumed = lc.resume(waiting.ticket, CUSTOMER, T0 + MIN, note="window is tonight")
    assert not resumed.ticket.waiting_on_customer
    assert resumed.events == [
        NewEvent(T0 + MIN, CUSTOMER, "resumed", {"note": "window is tonight"})
    ]


# -- whole loops -----------------------------------------------------------------------


class Timeline:
    """A stand-in for the store: applies transitions, numbers events, bumps version."""

    def __init__(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.events: list[TicketEvent] = []

    def apply(self, transition: lc.Transition) -> Ticket:
        for event in transition.events:
            self.events.append(
                TicketEvent(
                    len(self.events) + 1,
                    self.ticket.id,
                    event.at_ms,
                    event.actor,
                    event.kind,
                    event.details,
                )
            )
        self.ticket = replace(transition.ticket, version=self.ticket.version + 1)
        return self.ticket


def test_closed_loop_open_ack_resolve_confirm() -> None:
    line = Timeline(make())
    line.apply(lc.acknowledge(line.ticket, ENGINEER, T0 + 10 * MIN))
    line.apply(
        lc.resolve(line.ticket, "full /var", "cleaned", "logrotate", ENGINEER, T0 + 60 * MIN)
    )
    assert line.ticket.state == "resolved"
    closed = line.apply(lc.confirm(line.ticket, CUSTOMER, T0 + DAY))
    assert closed.state == "closed"
    assert closed.close_reason == "confirmed"
    assert [e.kind for e in line.events] == ["acknowledged", "resolved", "confirmed", "closed"]
    assert lc.allowed_actions(closed) == ("comment", "reopen", "refire")


def test_rejection_reopens_and_the_loop_runs_again() -> None:
    line = Timeline(make())
    line.apply(lc.acknowledge(line.ticket, ENGINEER, T0 + MIN))
    line.apply(lc.resolve(line.ticket, "guess", "", "none yet", ENGINEER, T0 + 2 * MIN))
    line.apply(lc.reject(line.ticket, "not fixed", CUSTOMER, T0 + 3 * MIN))
    assert line.ticket.state == "reopened"
    line.apply(lc.acknowledge(line.ticket, ENGINEER, T0 + 4 * MIN))
    line.apply(lc.resolve(line.ticket, "real cause", "fixed", "monitor", ENGINEER, T0 + 5 * MIN))
    closed = line.apply(lc.confirm(line.ticket, CUSTOMER, T0 + 6 * MIN))
    assert closed.state == "closed"
    assert closed.reopen_count == 1
    assert closed.resolution["cause"] == "real cause"
    assert closed.acknowledged_ms == T0 + MIN  # the first acknowledgement


def test_recurrence_within_the_window_reopens_the_same_ticket_with_its_history() -> None:
    line = Timeline(make())
    line.apply(lc.resolve(line.ticket, "c", "a", "p", ENGINEER, T0 + MIN))
    line.apply(lc.confirm(line.ticket, CUSTOMER, T0 + 2 * MIN))
    before = list(line.events)
    later = T0 + 2 * MIN + 7 * DAY  # exactly at the end of the window: still inside
    assert lc.should_reopen(line.ticket, later, 7 * DAY)
    reopened = line.apply(lc.refire(line.ticket, 95.0, None, "rule:fs", later))
    assert reopened.id == 12
    assert reopened.state == "reopened"
    assert reopened.reopen_count == 1
    assert line.events[: len(before)] == before
    assert [e.kind for e in line.events[len(before) :]] == ["refired", "reopened"]


def test_recurrence_outside_the_window_does_not_reopen() -> None:
    closed = ticket_in("closed", False)  # closed at T0
    assert not lc.should_reopen(closed, T0 + 7 * DAY + 1, 7 * DAY)
    assert lc.should_reopen(closed, T0 + 7 * DAY, 7 * DAY)
    assert lc.should_reopen(closed, T0, 0)  # window 0: only at the very moment it closed
    assert not lc.should_reopen(closed, T0 + 1, 0)
    for state in ("open", "acknowledged", "recovered", "reopened", "resolved"):
        assert not lc.should_reopen(make(state, closed_ms=T0), T0, 7 * DAY)


# -- contact with the customer ---------------------------------------------------------


@pytest.mark.parametrize("state", ["open", "reopened"])
def test_contact_takes_an_open_ticket_in_hand(state: TicketState) -> None:
    result = lc.contact(ticket_in(state, False), "Phone", " spoke to Li Wei ", ENGINEER, T0 + MIN)
    assert result.ticket.state == "acknowledged"
    assert result.ticket.acknowledged_ms == T0 + MIN
    [event] = result.events
    assert (event.kind, event.actor) == ("contacted", ENGINEER)
    assert dict(event.details) == {"via": "phone", "note": "spoke to Li Wei"}


@pytest.mark.parametrize("state", ["acknowledged", "recovered", "resolved"])
def test_contact_keeps_other_states(state: TicketState) -> None:
    result = lc.contact(ticket_in(state, False), "email", "sent the plan", ENGINEER, T0 + MIN)
    assert result.ticket.state == state


@pytest.mark.parametrize(
    ("via", "note", "fragment"),
    [
        ("fax", "x", "unknown contact channel 'fax': use phone, email, portal, remote"),
        ("phone", "  ", "the contact note (who was reached, what was said) must not be empty"),
    ],
)
def test_contact_refuses_unknown_channels_and_empty_notes(
    via: str, note: str, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        lc.contact(ticket_in("open", False), via, note, ENGINEER, T0 + MIN)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("level", ["1", "2"])
def test_a_major_fault_cannot_be_resolved_without_prevention(level: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        lc.resolve(make(level=level), "disk full", "cleaned", "  ", ENGINEER, T0 + MIN)
    assert f"the prevention (how to avoid it in future) of a level-{level} fault" in str(
        caught.value
    )


@pytest.mark.parametrize("level", ["3", "4", "consult", "other"])
def test_prevention_is_optional_for_lesser_levels(level: str) -> None:
    result = lc.resolve(make(level=level), "disk full", "cleaned", "", ENGINEER, T0 + MIN)
    assert result.ticket.state == "resolved"
