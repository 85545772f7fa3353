"""Error details in the page's language: a collector error turned into a translatable
message (msgid with ``%(name)s`` placeholders) and its values.

Structured errors are read from their attributes (``InvalidTransition``: the ticket,
its state, the action and what is possible); a few stable service messages are
recognised by pattern. ``explain`` returns None for any other error: the page then
shows the service's own (English) text. Every msgid here is in ``DETAIL_MESSAGES`` so
the catalogue completeness test sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from collector.tickets.errors import InvalidTransition

__all__ = ["DETAIL_MESSAGES", "Explained", "explain"]

Explained = tuple[str, Mapping[str, str]]

_TRANSITION = (
    "Ticket %(ticket)s is %(state)s: “%(action)s” does not apply now (possible: %(possible)s)."
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^only engineers and admins can "), "Only engineers and admins can do this."),
    (
        re.compile(
            r"^an? (?P<role>\w+) user cannot '(?P<action>\w+)' a ticket; "
            r"possible: (?P<possible>.+)$"
        ),
        "Your role (%(role)s) cannot take “%(action)s” on a ticket; possible: %(possible)s.",
    ),
    (
        re.compile(r"^a customer user cannot change a ticket's level"),
        "A customer user cannot change a ticket's level: grading is the vendor's step; "
        "comment on the ticket to ask for it.",
    ),
    (
        re.compile(r" must not be empty$"),
        "A required field is empty (named below): fill it in and send the form again.",
    ),
    (
        re.compile(r"^ticket (?P<ticket>\d+) is already at level (?P<level>\w+)$"),
        "Ticket %(ticket)s is already at level %(level)s: choose another level.",
    ),
    (
        re.compile(r"^unknown fault level "),
        "Unknown fault level: choose one of the levels offered.",
    ),
    (
        re.compile(r"^minutes must be a whole number from 1 to 10080$"),
        "Minutes must be a whole number from 1 to 10080.",
    ),
    (re.compile(r"^unknown language "), "Unknown language: use zh-CN or en."),
)

DETAIL_MESSAGES: tuple[str, ...] = (_TRANSITION, *(msgid for _, msgid in _PATTERNS))


def explain(exc: Exception) -> Explained | None:
    """The translatable detail of ``exc`` and its values, or None if not known."""
    if isinstance(exc, InvalidTransition):
        values = {
            "ticket": str(exc.ticket_id),
            "state": exc.state,
            "action": exc.action,
            "possible": ", ".join(exc.possible) or "—",
        }
        return _TRANSITION, values
    text = str(exc)
    for pattern, msgid in _PATTERNS:
        found = pattern.search(text)
        if found:
            return msgid, {k: v for k, v in found.groupdict().items() if v is not None}
    return None
