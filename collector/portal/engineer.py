"""Engineer actions on a ticket in the portal: the form fields turned into the ticket
service's requests (pure; the pages module calls the service as the signed-in user,
so roles, tenancy and the audit chain are the API's).

``TICKET_ACTIONS`` are the actions a ticket page posts to ``/tickets/ID/ACTION``
(customers: confirm, reject, comment; engineers: acknowledge, assign, comment,
resolve); the service refuses an action the user's role may not take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.tickets.service import TicketActionRequest

__all__ = ["FIELD_LIMIT", "TICKET_ACTIONS", "regrade_fields", "ticket_action_request"]

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
