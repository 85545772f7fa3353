"""Engineer pages' logic: the fleet filter; a ticket page's form fields turned into
the ticket service's requests (pure; the pages module calls the service as the signed-in user,
so roles, tenancy and the audit chain are the API's).

``TICKET_ACTIONS`` are the actions a ticket page posts to ``/tickets/ID/ACTION``
(customers: confirm, reject, comment; engineers: acknowledge, assign, comment,
resolve); the service refuses an action the user's role may not take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from collector.errors import InvalidRequest
from collector.portal.views import HostRow
from collector.tickets.service import TicketActionRequest

__all__ = [
    "CONNECTION_FILTERS",
    "FIELD_LIMIT",
    "TICKET_ACTIONS",
    "fleet_rows",
    "regrade_fields",
    "session_request_fields",
    "ticket_action_request",
]

CONNECTION_FILTERS = ("", "connected", "disconnected")

TICKET_ACTIONS = ("acknowledge", "assign", "comment", "resolve", "confirm", "reject")
FIELD_LIMIT = 2000  # characters kept of each free-text field
_TEXT_FIELDS = ("text", "assignee", "cause", "actions", "prevention", "impact", "losses")


def field(form: Mapping[str, Any], name: str) -> str:
    """The form's ``name`` field, stripped and cut to ``FIELD_LIMIT`` ("" if absent)."""
    return str(form.get(name, "")).strip()[:FIELD_LIMIT]


def ticket_action_request(action: str, form: Mapping[str, Any]) -> TicketActionRequest:
    """The service request for ``action`` with the form's text fields (unused ones
    empty; the service checks what the action needs)."""
    return TicketActionRequest(action=action, **{name: field(form, name) for name in _TEXT_FIELDS})


def regrade_fields(form: Mapping[str, Any]) -> tuple[str, str]:
    """The new level and the reason of a regrade form."""
    return field(form, "level"), field(form, "reason")


def fleet_rows(rows: Sequence[HostRow], customer: str, connection: str) -> list[HostRow]:
    """The hosts of ``customer`` ("" = all) with the ``connection`` ("" = any,
    "connected", "disconnected"); InvalidRequest for another connection value."""
    if connection not in CONNECTION_FILTERS:
        raise InvalidRequest(
            f"unknown connection filter {connection!r}: use connected or disconnected"
        )
    return [
        row
        for row in rows
        if (not customer or row.customer == customer)
        and (not connection or row.connected == (connection == "connected"))
    ]


MAX_SESSION_MINUTES = 7 * 24 * 60


def session_request_fields(form: Mapping[str, Any]) -> tuple[str, int, int | None]:
    """Reason, duration (ms) and ticket id (None if empty) of a session request form;
    InvalidRequest naming the field for a bad value."""
    reason = field(form, "reason")
    if not reason:
        raise InvalidRequest("reason must not be empty")
    minutes = field(form, "minutes")
    if not minutes.isdigit() or not 1 <= int(minutes) <= MAX_SESSION_MINUTES:
        raise InvalidRequest(f"minutes must be a whole number from 1 to {MAX_SESSION_MINUTES}")
    ticket = field(form, "ticket")
    if ticket and not (ticket.isdigit() and len(ticket) <= 18):
        raise InvalidRequest("ticket must be a ticket number, or empty")
    return reason, int(minutes) * 60_000, int(ticket) if ticket else None
