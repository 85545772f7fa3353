"""Ticket lifecycle: pure transition functions (no I/O; the time is passed in).

Each function takes a ticket, the action's arguments, the actor ("user:erin",
"rule:disk_full", "system") and the time, and returns a ``Transition``: the new
ticket value plus the timeline events to append. ``updated_ms`` and ``version`` are
left as they were — the store bumps them when it saves the transition atomically.
An action the current state does not allow raises ``InvalidTransition`` (a
``FailedPrecondition``) naming the state and the actions that do apply; empty required text
(cause, reason, comment) raises ``InvalidRequest``.

Which action applies where (people's actions first, then the automatic ones)::

    state         acknowledge comment assign resolve confirm reject reopen wait resume
    open               x         x      x      x                           x*    x*
    acknowledged                 x      x      x                           x*    x*
    recovered          x         x      x      x                           x*    x*
    reopened           x         x      x      x                           x*    x*
    resolved                     x      x              x       x      x
    closed                       x                                    x
    (* wait_on_customer when the flag is clear, resume when it is set)
    contact       every state but closed; open/reopened → acknowledged, others stay

    refire        open/acknowledged/reopened: event only; recovered: back to where it
                  was (acknowledged if acknowledged since it was last opened, else
                  open/reopened); resolved or closed: reopened (for a closed ticket the
                  caller first checks ``should_reopen``; outside the window it opens a
                  new ticket instead)
    recover       open/acknowledged/reopened → recovered
    auto_confirm  resolved for at least the auto-confirm period → closed

Reopening (``reject``, ``reopen``, recurrence) adds 1 to ``reopen_count``, clears
``closed_ms``/``close_reason`` and keeps ``resolved_ms``/``resolution`` as "the latest
resolution" until the next ``resolve`` replaces them. ``acknowledged_ms`` is set only by
the first acknowledgement ever (later ones are timeline events); the SLA clocks
(``sla.py``) read the timeline, not these fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from collector.errors import InvalidRequest, format_ms
from collector.tickets.errors import InvalidTransition
from collector.tickets.model import (
    CONTACT_CHANNELS,
    LEVELS,
    EventKind,
    Level,
    NewEvent,
    NewTicket,
    Ticket,
    TicketEvent,
    TicketState,
)

__all__ = [
    "ACTIONS",
    "PEOPLE_ACTIONS",
    "PREVENTION_LEVELS",
    "SYSTEM_ACTOR",
    "UNRESOLVED_STATES",
    "Action",
    "Transition",
    "acknowledge",
    "acknowledged_since_opened",
    "allowed_actions",
    "assign",
    "auto_confirm",
    "auto_confirm_due_ms",
    "comment",
    "confirm",
    "contact",
    "create_event",
    "rate",
    "recover",
    "refire",
    "regrade",
    "reject",
    "reopen",
    "resolve",
    "resume",
    "should_reopen",
    "wait_on_customer",
]

Action = Literal[
    "acknowledge",
    "comment",
    "assign",
    "resolve",
    "confirm",
    "reject",
    "reopen",
    "wait_on_customer",
    "resume",
    "contact",
    "refire",
    "recover",
    "auto_confirm",
]
ACTIONS: tuple[Action, ...] = (
    "acknowledge",
    "comment",
    "assign",
    "resolve",
    "confirm",
    "reject",
    "reopen",
    "wait_on_customer",
    "resume",
    "contact",
    "refire",
    "recover",
    "auto_confirm",
)
# What people do (listed in error messages); the rest is done by the collector itself.
PEOPLE_ACTIONS: tuple[Action, ...] = ACTIONS[:10]
SYSTEM_ACTOR = "system"

# Levels whose resolution must say how to avoid the fault in future (level 1-2 faults).
PREVENTION_LEVELS: frozenset[str] = frozenset({"1", "2"})

UNRESOLVED_STATES: frozenset[TicketState] = frozenset(
    {"open", "acknowledged", "recovered", "reopened"}
)
_ALL_STATES: frozenset[TicketState] = UNRESOLVED_STATES | {"resolved", "closed"}
_STATES_FOR: Mapping[Action, frozenset[TicketState]] = {
    "acknowledge": frozenset({"open", "reopened", "recovered"}),
    "comment": _ALL_STATES,
    "assign": UNRESOLVED_STATES | {"resolved"},
    "resolve": UNRESOLVED_STATES,
    "confirm": frozenset({"resolved"}),
    "reject": frozenset({"resolved"}),
    "reopen": frozenset({"resolved", "closed"}),
    "wait_on_customer": UNRESOLVED_STATES,
    "resume": UNRESOLVED_STATES,
    "contact": UNRESOLVED_STATES | {"resolved"},
    "refire": _ALL_STATES,
    "recover": frozenset({"open", "acknowledged", "reopened"}),
    "auto_confirm": frozenset({"resolved"}),
}
_HINTS: Mapping[Action, str] = {
    "acknowledge": "it is already acknowledged or no longer needs it",
    "resolve": "it is already resolved",
    "confirm": "only a resolved ticket can be confirmed",
    "reject": "only a resolved ticket can be rejected",
    "reopen": "only a resolved or closed ticket can be re-opened",
    "recover": "only an open, acknowledged or re-opened ticket can recover",
    "auto_confirm": "only a resolved ticket can be auto-confirmed",
    "contact": "a closed ticket needs no contact; re-open it first",
}


@dataclass(frozen=True)
class Transition:
    """The outcome of an action: the ticket's new value and the events to append."""

    ticket: Ticket
    events: list[NewEvent]


# -- what applies ----------------------------------------------------------------------


def allowed_actions(ticket: Ticket) -> tuple[Action, ...]:
    """Every action that applies to ``ticket`` now, in ``ACTIONS`` order."""
    return tuple(action for action in ACTIONS if _applies(ticket, action))


def _applies(ticket: Ticket, action: Action) -> bool:
    if ticket.state not in _STATES_FOR[action]:
        return False
    if action == "wait_on_customer":
        return not ticket.waiting_on_customer
    if action == "resume":
        return ticket.waiting_on_customer
    return True


def _require(ticket: Ticket, action: Action) -> None:
    """Raise InvalidTransition unless ``action`` applies to ``ticket``."""
    if _applies(ticket, action):
        return
    possible = [a for a in allowed_actions(ticket) if a in PEOPLE_ACTIONS]
    hint = _HINTS.get(action, "")
    if action == "wait_on_customer" and ticket.state in UNRESOLVED_STATES:
        hint = "it is already waiting on the customer"
    elif action == "resume" and ticket.state in UNRESOLVED_STATES:
        hint = "it is not waiting on the customer"
    raise InvalidTransition(ticket.id, _describe(ticket), action, possible, hint)


def _describe(ticket: Ticket) -> str:
    if ticket.waiting_on_customer:
        return f"{ticket.state} and waiting on the customer"
    return ticket.state


def _required_text(value: str, what: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{what} must not be empty")
    return text


def _event(kind: EventKind, actor: str, at_ms: int, **details: Any) -> NewEvent:
    return NewEvent(at_ms=at_ms, actor=actor, kind=kind, details=details)


# -- creation and people's actions -----------------------------------------------------


def create_event(
    new: NewTicket, actor: str, at_ms: int, details: Mapping[str, Any] | None = None
) -> NewEvent:
    """The "opened" event for a new ticket.

    Its details hold the title, level and source and, from ``details``, the evidence
    at onset (e.g. ``value``, ``threshold``, ``labels``, ``annotations``); the fault
    analysis report reads its "key metrics at onset" from here. ``labels`` defaults
    to the ticket's labels.
    """
    merged: dict[str, Any] = {"title": new.title, "level": new.level, "source": new.source}
    if new.kind != "fault":
        merged["kind"] = new.kind
        if new.urgency:
            merged["urgency"] = new.urgency
    if new.labels:
        merged["labels"] = dict(new.labels)
    merged.update(details or {})
    return NewEvent(at_ms=at_ms, actor=actor, kind="opened", details=merged)


def acknowledge(ticket: Ticket, actor: str, at_ms: int) -> Transition:
    """An engineer takes the ticket in hand: open/reopened → acknowledged.

    Internal only: it tells colleagues someone is on it; it does not stop the
    response clock (only ``contact`` — reaching the customer — or ``resolve`` does).

    ``acknowledged_ms`` is set only the first time ever. A recovered ticket stays
    recovered; the acknowledgement is recorded (and a later re-fire returns it to
    acknowledged, see ``refire``).
    """
    _require(ticket, "acknowledge")
    state: TicketState = "recovered" if ticket.state == "recovered" else "acknowledged"
    first = ticket.acknowledged_ms if ticket.acknowledged_ms is not None else at_ms
    new = replace(ticket, state=state, acknowledged_ms=first)
    return Transition(new, [_event("acknowledged", actor, at_ms)])


def comment(ticket: Ticket, text: str, actor: str, at_ms: int) -> Transition:
    """Add a note to the timeline (any state, closed included). Empty text is refused."""
    _require(ticket, "comment")
    body = _required_text(text, "a comment")
    return Transition(ticket, [_event("comment", actor, at_ms, text=body)])


def assign(ticket: Ticket, assignee: str | None, actor: str, at_ms: int) -> Transition:
    """Give the ticket to ``assignee`` (None or "" unassigns). Not on closed tickets."""
    _require(ticket, "assign")
    name = (assignee or "").strip() or None
    new = replace(ticket, assignee=name)
    event = _event("assigned", actor, at_ms, assignee=name, previous=ticket.assignee)
    return Transition(new, [event])


def resolve(
    ticket: Ticket,
    cause: str,
    actions: str,
    prevention: str,
    actor: str,
    at_ms: int,
    impact: str = "",
    losses: str = "",
) -> Transition:
    """The engineer declares the fault fixed, with the fault analysis: → resolved.

    ``cause`` is required; ``actions`` (what was done), ``impact`` (on the customer's
    service) and ``losses`` may be empty; ``prevention``
    (how to avoid it in future) is required for levels in ``PREVENTION_LEVELS`` (the
    fault analysis report of a major fault must say it) and may be empty otherwise.
    Applies to open, acknowledged, recovered and reopened tickets. If the ticket was
    waiting on the customer, the wait ends first (a "resumed" event) so the SLA pauses
    stay balanced. The resolution clock stops here.
    """
    _require(ticket, "resolve")
    if ticket.level in PREVENTION_LEVELS:
        what = f"the prevention (how to avoid it in future) of a level-{ticket.level} fault"
        prevention = _required_text(prevention, what)
    resolution = {
        "cause": _required_text(cause, "the cause"),
        "actions": actions.strip(),
        "prevention": prevention.strip(),
    }
    # impact on the customer's service and the losses: kept only when given
    resolution |= {k: v.strip() for k, v in (("impact", impact), ("losses", losses)) if v.strip()}
    events = []
    if ticket.waiting_on_customer:
        events.append(_event("resumed", actor, at_ms, reason="resolved"))
    events.append(_event("resolved", actor, at_ms, **resolution))
    new = replace(
        ticket,
        state="resolved",
        resolved_ms=at_ms,
        resolution=resolution,
        waiting_on_customer=False,
    )
    return Transition(new, events)


def confirm(ticket: Ticket, actor: str, at_ms: int) -> Transition:
    """The customer confirms the fix: resolved → closed (close_reason "confirmed")."""
    _require(ticket, "confirm")
    new = replace(ticket, state="closed", closed_ms=at_ms, close_reason="confirmed")
    events = [
        _event("confirmed", actor, at_ms),
        _event("closed", actor, at_ms, reason="confirmed"),
    ]
    return Transition(new, events)


def reject(ticket: Ticket, reason: str, actor: str, at_ms: int) -> Transition:
    """The customer says it is not fixed: resolved → reopened. A reason is required."""
    _require(ticket, "reject")
    text = _required_text(reason, "the reason for rejecting")
    rejected = _event("rejected", actor, at_ms, reason=text)
    return _reopened(ticket, actor, at_ms, text, "rejected", [rejected])


def reopen(ticket: Ticket, reason: str, actor: str, at_ms: int) -> Transition:
    """An engineer re-opens a resolved or closed ticket. A reason is required."""
    _require(ticket, "reopen")
    text = _required_text(reason, "the reason for re-opening")
    return _reopened(ticket, actor, at_ms, text, "engineer", [])


def wait_on_customer(ticket: Ticket, reason: str, actor: str, at_ms: int) -> Transition:
    """Set the waiting-on-customer flag (the SLA clocks pause). A reason is required."""
    _require(ticket, "wait_on_customer")
    text = _required_text(reason, "the reason for waiting on the customer")
    new = replace(ticket, waiting_on_customer=True)
    return Transition(new, [_event("waiting", actor, at_ms, reason=text)])


def resume(ticket: Ticket, actor: str, at_ms: int, note: str = "") -> Transition:
    """Clear the waiting-on-customer flag (the SLA clocks run again)."""
    _require(ticket, "resume")
    details = {"note": note.strip()} if note.strip() else {}
    new = replace(ticket, waiting_on_customer=False)
    return Transition(new, [_event("resumed", actor, at_ms, **details)])


def regrade(ticket: Ticket, level: str, reason: str, actor: str, at_ms: int) -> Transition:
    """An engineer changes the fault level (grading is the vendor's step): the ticket
    takes ``level`` and a ``regraded {level, previous, reason}`` event is recorded.

    Only unresolved tickets (open, acknowledged, recovered, reopened): a resolved or
    closed ticket is re-opened first. The reason is required; the same level is
    refused. The SLA clocks restart from this moment (see ``sla.py``).
    """
    if ticket.state not in UNRESOLVED_STATES:
        possible = [a for a in allowed_actions(ticket) if a in PEOPLE_ACTIONS]
        raise InvalidTransition(
            ticket.id,
            _describe(ticket),
            "regrade",
            possible,
            "only an unresolved ticket can be regraded; re-open it first",
        )
    new_level = _known_level(level)
    if new_level == ticket.level:
        raise InvalidRequest(f"ticket {ticket.id} is already at level {level}")
    text = _required_text(reason, "the reason for regrading")
    event = _event("regraded", actor, at_ms, level=new_level, previous=ticket.level, reason=text)
    return Transition(replace(ticket, level=new_level), [event])


RATING_SCORES = range(1, 6)


def rate(ticket: Ticket, score: int, comment: str, actor: str, at_ms: int) -> Transition:
    """The customer's satisfaction rating (服务质量测评) of a closed ticket: ``score``
    1 (poor) to 5 (excellent), an optional comment. A ``rated {score, comment}`` event
    is recorded; rating again replaces the earlier rating (the latest counts) and
    both stay on the timeline. The ticket itself does not change.
    """
    if ticket.state != "closed":
        raise InvalidTransition(
            ticket.id,
            _describe(ticket),
            "rate",
            [a for a in allowed_actions(ticket) if a in PEOPLE_ACTIONS],
            "only a closed ticket can be rated; confirm the fix first",
        )
    if score not in RATING_SCORES:
        raise InvalidRequest(f"rating {score} is out of range: give a score from 1 to 5")
    return Transition(ticket, [_event("rated", actor, at_ms, score=score, comment=comment.strip())])


def _known_level(level: str) -> Level:
    for known in LEVELS:
        if known == level:
            return known
    raise InvalidRequest(f"unknown fault level {level!r}: use {', '.join(LEVELS)}")


def contact(ticket: Ticket, via: str, note: str, actor: str, at_ms: int) -> Transition:
    """Record that an engineer contacted the customer (``via`` one of
    ``CONTACT_CHANNELS``; ``note`` required: who was reached and what was said).

    This is the contracts' support response: the first contact after an opening
    stops the response clock. An open or re-opened ticket becomes acknowledged (the
    engineer who calls the customer has the ticket in hand); other states stay.
    Applies to every state but closed.
    """
    _require(ticket, "contact")
    channel = via.strip().lower()
    if channel not in CONTACT_CHANNELS:
        raise InvalidRequest(f"unknown contact channel {via!r}: use {', '.join(CONTACT_CHANNELS)}")
    text = _required_text(note, "the contact note (who was reached, what was said)")
    new = ticket
    if ticket.state in ("open", "reopened"):
        first = ticket.acknowledged_ms if ticket.acknowledged_ms is not None else at_ms
        new = replace(ticket, state="acknowledged", acknowledged_ms=first)
    return Transition(new, [_event("contacted", actor, at_ms, via=channel, note=text)])


# -- automatic actions -----------------------------------------------------------------


def refire(
    ticket: Ticket,
    value: float | None,
    details: Mapping[str, Any] | None,
    actor: str,
    at_ms: int,
    history: Sequence[TicketEvent | NewEvent] = (),
) -> Transition:
    """The fault fired again (same de-duplication key).

    open/acknowledged/reopened: a "refired" event only (new evidence).
    recovered: back to acknowledged if it was acknowledged since it was last opened,
    else to open (or reopened) — ``history`` (the timeline) tells; without it, any
    acknowledgement ever counts, which is exact for tickets never re-opened.
    resolved, or closed (call ``should_reopen`` first: outside the window the caller
    opens a new ticket instead): reopened, reopen_count + 1, reason "recurrence".
    """
    _require(ticket, "refire")
    evidence: dict[str, Any] = {} if value is None else {"value": value}
    evidence.update(details or {})
    refired = _event("refired", actor, at_ms, **evidence)
    if ticket.state in ("resolved", "closed"):
        return _reopened(ticket, actor, at_ms, "recurrence", "recurrence", [refired])
    if ticket.state != "recovered":
        return Transition(ticket, [refired])
    back = _state_before_recovery(ticket, history)
    return Transition(replace(ticket, state=back), [refired])


def _state_before_recovery(
    ticket: Ticket, history: Sequence[TicketEvent | NewEvent]
) -> TicketState:
    acked = acknowledged_since_opened(history) if history else ticket.acknowledged_ms is not None
    if acked:
        return "acknowledged"
    return "reopened" if ticket.reopen_count else "open"


def acknowledged_since_opened(history: Sequence[TicketEvent | NewEvent]) -> bool:
    """Whether the timeline has an acknowledgement after the latest opened/reopened event."""
    acked = False
    for event in sorted(history, key=lambda e: e.at_ms):
        if event.kind in ("opened", "reopened"):
            acked = False
        elif event.kind == "acknowledged":
            acked = True
    return acked


def recover(
    ticket: Ticket, actor: str, at_ms: int, details: Mapping[str, Any] | None = None
) -> Transition:
    """The condition cleared by itself: open/acknowledged/reopened → recovered.

    The SLA clocks keep running: recovery is not a resolution (an engineer still
    resolves the ticket with its cause).
    """
    _require(ticket, "recover")
    new = replace(ticket, state="recovered")
    return Transition(new, [_event("recovered", actor, at_ms, **dict(details or {}))])


def auto_confirm_due_ms(ticket: Ticket, period_ms: int) -> int | None:
    """When a resolved ticket closes by itself if the customer does not answer; else None.
    Complaints are never auto-closed: only the customer's confirmation closes them."""
    if ticket.state != "resolved" or ticket.resolved_ms is None or ticket.kind == "complaint":
        return None
    return ticket.resolved_ms + period_ms


def auto_confirm(ticket: Ticket, period_ms: int, at_ms: int) -> Transition:
    """Close a ticket resolved at least ``period_ms`` ago (actor "system",
    close_reason "auto-confirmed"). Raises InvalidTransition if it is not resolved or
    the period has not passed yet."""
    _require(ticket, "auto_confirm")
    if ticket.kind == "complaint":
        raise InvalidTransition(
            ticket.id, "a complaint", "auto_confirm", [], "only the customer closes a complaint"
        )
    due = auto_confirm_due_ms(ticket, period_ms)
    if due is None or at_ms < due:
        raise InvalidTransition(
            ticket.id,
            ticket.state,
            "auto_confirm",
            [a for a in allowed_actions(ticket) if a in PEOPLE_ACTIONS],
            "the auto-confirm period has not ended"
            + (f" (it ends at {format_ms(due)})" if due is not None else ""),
        )
    new = replace(ticket, state="closed", closed_ms=at_ms, close_reason="auto-confirmed")
    event = _event(
        "closed", SYSTEM_ACTOR, at_ms, reason="auto-confirmed", resolved_ms=ticket.resolved_ms
    )
    return Transition(new, [event])


def should_reopen(ticket: Ticket, now_ms: int, window_ms: int) -> bool:
    """Whether a recurrence at ``now_ms`` re-opens this closed ticket (True) rather
    than opening a new one (False): closed no more than ``window_ms`` before.

    Only closed tickets are concerned: False for every other state (an active ticket
    takes the recurrence directly through ``refire``).
    """
    if ticket.state != "closed" or ticket.closed_ms is None:
        return False
    return now_ms - ticket.closed_ms <= window_ms


def _reopened(
    ticket: Ticket,
    actor: str,
    at_ms: int,
    reason: str,
    trigger: str,
    before: list[NewEvent],
) -> Transition:
    new = replace(
        ticket,
        state="reopened",
        reopen_count=ticket.reopen_count + 1,
        closed_ms=None,
        close_reason=None,
        waiting_on_customer=False,
    )
    event = _event("reopened", actor, at_ms, reason=reason, trigger=trigger, previous=ticket.state)
    return Transition(new, [*before, event])
