"""Ticket records and their timeline events (frozen dataclasses; times are unix ms).

States::

    open ──ack──▶ acknowledged ──resolve──▶ resolved ──confirm / auto-confirm──▶ closed
      │ ▲              │                       │ reject                           │
      │ └── re-fire ───┤                       ▼                                  │ recurrence
      ▼                ▼                    reopened ◀────────────────────────────┘ (within window)
    recovered (the condition cleared by itself; re-firing returns to open/acknowledged)

``reopened`` behaves like ``open`` (it needs an engineer's acknowledgement) but
keeps the history. ``waiting_on_customer`` is not a state: it is a flag with its own
events (``waiting``/``resumed``) because the SLA clocks pause while it is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["1", "2", "3", "4", "consult", "other"]
LEVELS: tuple[Level, ...] = ("1", "2", "3", "4", "consult", "other")

TicketState = Literal["open", "acknowledged", "recovered", "resolved", "closed", "reopened"]
TICKET_STATES: tuple[TicketState, ...] = (
    "open",
    "acknowledged",
    "recovered",
    "resolved",
    "closed",
    "reopened",
)
ACTIVE_STATES: frozenset[TicketState] = frozenset(
    {"open", "acknowledged", "recovered", "reopened", "resolved"}
)

Source = Literal[
    "rule", "heartbeat", "alertmanager", "engineer", "customer", "playbook", "inspection"
]

Kind = Literal["fault", "complaint", "inquiry"]  # kinds of request (desk-grade)
KINDS: tuple[Kind, ...] = ("fault", "complaint", "inquiry")
Urgency = Literal["", "urgent", "pressing", "general"]  # inquiries only; "" otherwise
URGENCIES: tuple[Urgency, ...] = ("", "urgent", "pressing", "general")

EventKind = Literal[
    "opened",
    "refired",
    "acknowledged",
    "comment",
    "assigned",
    "notification",
    "escalation",
    "recovered",
    "resolved",
    "confirmed",
    "rejected",
    "reopened",
    "closed",
    "waiting",
    "resumed",
    "diagnostics",
    "remote_requested",  # remote support (sessions): the ticket's remote-response clock
    "remote_approved",
    "remote_denied",
    "remote_connected",
    "remote_ended",
    "regraded",  # an engineer changed the level: {level, previous, reason}
    "contacted",  # an engineer reached the customer (stops the response clock)
    "rated",  # the customer's satisfaction rating of a closed ticket: {score, comment}
]

ContactChannel = Literal["phone", "email", "portal", "remote"]
CONTACT_CHANNELS: tuple[ContactChannel, ...] = ("phone", "email", "portal", "remote")


@dataclass(frozen=True)
class Ticket:
    """One fault (or request) of one customer, usually on one host."""

    id: int
    customer: str
    title: str
    level: Level
    state: TicketState
    source: Source
    created_ms: int
    updated_ms: int
    description: str = ""
    agent_id: str | None = None
    hostname: str = ""
    rule: str | None = None
    dedup_key: str | None = None  # host + rule + labels, or an Alertmanager fingerprint
    labels: Mapping[str, str] = field(default_factory=dict)
    assignee: str | None = None
    acknowledged_ms: int | None = None  # first engineer acknowledgement (response SLA)
    resolved_ms: int | None = None  # latest resolution
    closed_ms: int | None = None
    close_reason: Literal["confirmed", "auto-confirmed"] | None = None
    waiting_on_customer: bool = False
    reopen_count: int = 0
    resolution: Mapping[str, str] = field(default_factory=dict)  # cause, actions, prevention
    version: int = 1  # bumped on every update (optimistic concurrency)
    kind: Kind = "fault"  # fixed at creation
    urgency: Urgency = ""  # inquiries: urgent | pressing | general


@dataclass(frozen=True)
class NewTicket:
    """What is known when a ticket is opened; the store assigns id and version."""

    customer: str
    title: str
    level: Level
    source: Source
    description: str = ""
    agent_id: str | None = None
    hostname: str = ""
    rule: str | None = None
    dedup_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: Kind = "fault"
    urgency: Urgency = ""


@dataclass(frozen=True)
class TicketEvent:
    """One timeline entry: what happened, when, and who did it."""

    id: int
    ticket_id: int
    at_ms: int
    actor: str  # "user:erin", "rule:filesystem_almost_full", "system", "alertmanager"
    kind: EventKind
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewEvent:
    """A timeline entry before the store numbers it."""

    at_ms: int
    actor: str
    kind: EventKind
    details: Mapping[str, Any] = field(default_factory=dict)
