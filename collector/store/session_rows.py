"""Remote session rows: input checks and the mapping between ``RemoteSession`` /
``SessionEvent`` and table rows.

Backend-neutral (no driver imports), so the SQLite and PostgreSQL backends store
sessions identically. Column names are the ``RemoteSession`` field names, so a field
added to the record needs a migration adding its column. Bad input becomes
``InvalidRequest`` before any SQL runs; a row the code cannot read back (unknown state
or kind, unreadable JSON) becomes ``StoreError``: the database is corrupt.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from collector.errors import InvalidRequest
from collector.sessions.model import (
    SESSION_EVENT_KINDS,
    SESSION_ID_PATTERN,
    SESSION_STATES,
    NewSessionEvent,
    RemoteSession,
    SessionEvent,
    SessionEventKind,
)
from collector.store.row_checks import (
    check_choice,
    check_text,
    decode_choice,
    decode_json,
    event_details_json,
)

__all__ = [
    "IMMUTABLE_SESSION_COLUMNS",
    "MUTABLE_SESSION_COLUMNS",
    "SESSION_COLUMNS",
    "SESSION_EVENT_COLUMNS",
    "SessionEventRow",
    "check_immutable_session",
    "check_session_list",
    "mutable_session_values",
    "new_session_values",
    "session_event_from_row",
    "session_event_rows",
    "session_from_row",
]


SESSION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RemoteSession))
SESSION_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SessionEvent))
# Fixed at request: a session never moves to another host, customer or engineer.
IMMUTABLE_SESSION_COLUMNS: tuple[str, ...] = (
    "agent_id",
    "customer",
    "hostname",
    "engineer",
    "reason",
    "requested_duration_ms",
    "requested_ms",
    "pending_expires_ms",
)
MUTABLE_SESSION_COLUMNS: tuple[str, ...] = tuple(
    c for c in SESSION_COLUMNS if c not in ("session_id", "version", *IMMUTABLE_SESSION_COLUMNS)
)


@dataclass(frozen=True)
class SessionEventRow:
    """A checked ``NewSessionEvent`` with its details already encoded as JSON text."""

    at_ms: int
    actor: str
    kind: SessionEventKind
    details_json: str

    def values(self, session_id: str) -> tuple[Any, ...]:
        """Values for ``INSERT INTO session_events (session_id, at_ms, actor, kind,
        details)``."""
        return (session_id, self.at_ms, self.actor, self.kind, self.details_json)

    def event(self, event_id: int, session_id: str) -> SessionEvent:
        """The stored event, details as they read back from the database."""
        details: dict[str, Any] = json.loads(self.details_json)
        return SessionEvent(event_id, session_id, self.at_ms, self.actor, self.kind, details)


# -- input (InvalidRequest) ------------------------------------------------------------


def new_session_values(session: RemoteSession) -> tuple[RemoteSession, tuple[Any, ...]]:
    """The session as it will be stored (version 1) and its values in
    ``SESSION_COLUMNS`` order, after checking them."""
    _check_session(session)
    stored = replace(session, version=1)
    return stored, tuple(getattr(stored, c) for c in SESSION_COLUMNS)


def mutable_session_values(session: RemoteSession) -> tuple[Any, ...]:
    """Values of ``MUTABLE_SESSION_COLUMNS``, after checking the session."""
    _check_session(session)
    return tuple(getattr(session, c) for c in MUTABLE_SESSION_COLUMNS)


def check_immutable_session(session: RemoteSession, stored: RemoteSession) -> None:
    """Refuse an update that changes what is fixed at request time."""
    for column in IMMUTABLE_SESSION_COLUMNS:
        if getattr(session, column) != getattr(stored, column):
            raise InvalidRequest(
                f"session {session.session_id}: {column} cannot change "
                f"(stored {getattr(stored, column)!r}, got {getattr(session, column)!r})"
            )


def session_event_rows(events: Sequence[NewSessionEvent]) -> list[SessionEventRow]:
    """Check the events and encode their details (plain JSON objects only)."""
    rows = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        details_json = event_details_json(
            where, event.actor, event.kind, SESSION_EVENT_KINDS, event.details
        )
        rows.append(SessionEventRow(event.at_ms, event.actor, event.kind, details_json))
    return rows


def check_session_list(states: Collection[str] | None, limit: int) -> None:
    """Check ``list_sessions`` arguments."""
    for state in states or ():
        check_choice("states", state, SESSION_STATES)
    if limit < 1:
        raise InvalidRequest(f"limit must be at least 1, got {limit}")


def _check_session(session: RemoteSession) -> None:
    if not SESSION_ID_PATTERN.match(session.session_id):
        raise InvalidRequest(
            f"session_id {session.session_id!r} is not 'ses-' followed by 12 hex digits"
        )
    for name in ("agent_id", "customer", "engineer", "reason"):
        check_text(f"session {session.session_id}: {name}", getattr(session, name))
    check_choice(f"session {session.session_id}: state", session.state, SESSION_STATES)
    if session.requested_duration_ms <= 0:
        raise InvalidRequest(
            f"session {session.session_id}: requested_duration_ms must be positive"
        )


# -- output (StoreError: the row is corrupt) -------------------------------------------


def session_from_row(row: Sequence[Any]) -> RemoteSession:
    """Decode a row selected with ``SESSION_COLUMNS``."""
    values = dict(zip(SESSION_COLUMNS, row, strict=True))
    where = f"session {values['session_id']}"
    return RemoteSession(
        **{
            **values,
            "state": decode_choice(where, "state", values["state"], SESSION_STATES),
            "local_approval_required": bool(values["local_approval_required"]),
            "signed_approval": None
            if values["signed_approval"] is None
            else bytes(values["signed_approval"]),
        }
    )


def session_event_from_row(row: Sequence[Any]) -> SessionEvent:
    """Decode a row selected with ``SESSION_EVENT_COLUMNS``."""
    event_id, session_id, at_ms, actor, kind, details = row
    where = f"session event {event_id}"
    return SessionEvent(
        id=event_id,
        session_id=session_id,
        at_ms=at_ms,
        actor=actor,
        kind=decode_choice(where, "kind", kind, SESSION_EVENT_KINDS),
        details=decode_json(where, "details", details),
    )
