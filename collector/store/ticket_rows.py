"""Ticket rows: input checks and the mapping between ticket records and table rows.

Backend-neutral (no driver imports), so the SQLite and PostgreSQL backends store
tickets identically. Column names are the ``Ticket``/``TicketEvent`` field names, so a
field added to the model needs a migration adding its column (queries name them all).
Bad input becomes ``InvalidRequest`` before any SQL runs; a row the code cannot read
back (unknown level, unreadable JSON) becomes ``StoreError``: the database is corrupt.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from collector.audit import canonical_json
from collector.errors import InvalidRequest
from collector.store.row_checks import (
    check_choice,
    check_text,
    decode_choice,
    decode_json,
    event_details_json,
)
from collector.tickets.model import (
    KINDS,
    LEVELS,
    TICKET_STATES,
    URGENCIES,
    EventKind,
    NewEvent,
    NewTicket,
    Source,
    Ticket,
    TicketEvent,
)

__all__ = [
    "CLOSE_REASONS",
    "EVENT_COLUMNS",
    "EVENT_KINDS",
    "IMMUTABLE_COLUMNS",
    "MUTABLE_COLUMNS",
    "SOURCES",
    "TICKET_COLUMNS",
    "EventRow",
    "check_immutable",
    "check_list_filter",
    "event_from_row",
    "event_rows",
    "mutable_values",
    "new_ticket_values",
    "ticket_from_row",
]

CloseReason = Literal["confirmed", "auto-confirmed"]

SOURCES: tuple[Source, ...] = get_args(Source)
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
CLOSE_REASONS: tuple[CloseReason, ...] = get_args(CloseReason)

TICKET_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Ticket))
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TicketEvent))
# Fixed at creation: a ticket never moves to another customer or changes its origin.
IMMUTABLE_COLUMNS: tuple[str, ...] = ("customer", "source", "created_ms", "kind", "urgency")
# Managed by the store itself: assigned on insert, bumped on update.
_STORE_MANAGED: tuple[str, ...] = ("id", "updated_ms", "version")
MUTABLE_COLUMNS: tuple[str, ...] = tuple(
    c for c in TICKET_COLUMNS if c not in IMMUTABLE_COLUMNS + _STORE_MANAGED
)


@dataclass(frozen=True)
class EventRow:
    """A checked ``NewEvent`` with its details already encoded as JSON text."""

    at_ms: int
    actor: str
    kind: EventKind
    details_json: str

    def values(self, ticket_id: int) -> tuple[Any, ...]:
        """Values for ``INSERT INTO ticket_events (ticket_id, at_ms, actor, kind, details)``."""
        return (ticket_id, self.at_ms, self.actor, self.kind, self.details_json)

    def event(self, event_id: int, ticket_id: int) -> TicketEvent:
        """The stored event, details as they read back from the database."""
        details: dict[str, Any] = json.loads(self.details_json)
        return TicketEvent(event_id, ticket_id, self.at_ms, self.actor, self.kind, details)


def audit_details(event: TicketEvent) -> dict[str, Any]:
    """What the audit entry of a ticket event records: its id and details, without
    bulky command output (that stays on the ticket's timeline)."""
    kept = {key: value for key, value in event.details.items() if key != "output"}
    return {"event_id": event.id, **kept}


# -- input (InvalidRequest) ------------------------------------------------------------


def new_ticket_values(new: NewTicket, at_ms: int) -> dict[str, Any]:
    """Column values (all but ``id``) of a new ticket: state "open", version 1."""
    check_text("customer", new.customer)
    check_text("title", new.title)
    check_choice("level", new.level, LEVELS)
    check_choice("source", new.source, SOURCES)
    check_choice("kind", new.kind, KINDS)
    check_choice("urgency", new.urgency, URGENCIES)
    return {
        "customer": new.customer,
        "title": new.title,
        "level": new.level,
        "state": "open",
        "source": new.source,
        "created_ms": at_ms,
        "updated_ms": at_ms,
        "description": new.description,
        "agent_id": new.agent_id,
        "hostname": new.hostname,
        "rule": new.rule,
        "dedup_key": new.dedup_key,
        "labels": _string_map_json("labels", new.labels),
        "version": 1,
        "kind": new.kind,
        "urgency": new.urgency,
    }


def mutable_values(ticket: Ticket) -> tuple[Any, ...]:
    """Values of ``MUTABLE_COLUMNS`` (in that order) after checking them."""
    check_text("title", ticket.title)
    check_choice("level", ticket.level, LEVELS)
    check_choice("state", ticket.state, TICKET_STATES)
    if ticket.close_reason is not None:
        check_choice("close_reason", ticket.close_reason, CLOSE_REASONS)
    if ticket.reopen_count < 0:
        raise InvalidRequest(f"ticket {ticket.id}: reopen_count cannot be negative")
    encoded = {
        "labels": _string_map_json("labels", ticket.labels),
        "resolution": _string_map_json("resolution", ticket.resolution),
        "waiting_on_customer": bool(ticket.waiting_on_customer),
    }
    return tuple(encoded.get(c, getattr(ticket, c)) for c in MUTABLE_COLUMNS)


def check_immutable(ticket: Ticket, stored: Mapping[str, Any]) -> None:
    """Refuse an update that would change a column fixed at creation."""
    for column in IMMUTABLE_COLUMNS:
        if getattr(ticket, column) != stored[column]:
            raise InvalidRequest(
                f"ticket {ticket.id}: {column} cannot change "
                f"(stored {stored[column]!r}, given {getattr(ticket, column)!r}); "
                f"open a new ticket instead"
            )


def event_rows(events: Sequence[NewEvent]) -> list[EventRow]:
    """Check the events and encode their details (plain JSON objects only)."""
    rows = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        details_json = event_details_json(
            where, event.actor, event.kind, EVENT_KINDS, event.details
        )
        rows.append(EventRow(event.at_ms, event.actor, event.kind, details_json))
    return rows


def check_list_filter(states: Collection[str] | None, level: str | None, limit: int) -> None:
    """Check ``list_tickets`` arguments."""
    for state in states or ():
        check_choice("states", state, TICKET_STATES)
    if level is not None:
        check_choice("level", level, LEVELS)
    if limit < 1:
        raise InvalidRequest(f"limit must be at least 1, got {limit}")


def _string_map_json(field: str, value: Mapping[str, str]) -> str:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{field}: expected a mapping of strings to strings")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidRequest(f"{field}: expected strings to strings, got {key!r}: {item!r}")
    return canonical_json(dict(value))


# -- output (StoreError: the row is corrupt) -------------------------------------------


def ticket_from_row(row: Sequence[Any]) -> Ticket:
    """Decode a row selected with ``TICKET_COLUMNS``."""
    values = dict(zip(TICKET_COLUMNS, row, strict=True))
    where = f"ticket {values['id']}"
    close_reason = values["close_reason"]
    return Ticket(
        **{
            **values,
            "level": decode_choice(where, "level", values["level"], LEVELS),
            "state": decode_choice(where, "state", values["state"], TICKET_STATES),
            "source": decode_choice(where, "source", values["source"], SOURCES),
            "kind": decode_choice(where, "kind", values["kind"], KINDS),
            "urgency": decode_choice(where, "urgency", values["urgency"], URGENCIES),
            "labels": decode_json(where, "labels", values["labels"]),
            "resolution": decode_json(where, "resolution", values["resolution"]),
            "close_reason": None
            if close_reason is None
            else decode_choice(where, "close_reason", close_reason, CLOSE_REASONS),
            "waiting_on_customer": bool(values["waiting_on_customer"]),
        }
    )


def event_from_row(row: Sequence[Any]) -> TicketEvent:
    """Decode a row selected with ``EVENT_COLUMNS``."""
    event_id, ticket_id, at_ms, actor, kind, details = row
    where = f"ticket event {event_id}"
    return TicketEvent(
        id=event_id,
        ticket_id=ticket_id,
        at_ms=at_ms,
        actor=actor,
        kind=decode_choice(where, "kind", kind, EVENT_KINDS),
        details=decode_json(where, "details", details),
    )
