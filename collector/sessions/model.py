"""Remote session records and their timeline events (frozen dataclasses; times are unix ms).

States::

    pending ──approve / approve_locally──▶ approved ──connected──▶ active
      │  │                                   │  │                   │ │
      │  └─deny──▶ denied                    │  └─terminate─┐       │ └─terminate──▶ terminated
      └─expire_if_due──▶ expired             │              ▼       │
                                             └─window end─▶ ended ◀─┘ window end

Connections come and go inside the window (``connected`` / ``disconnected`` events);
only the window's end or a termination ends the session.

The access window starts at approval (``window_start_ms = approved_ms``) and ends at
``window_end_ms`` (approval + requested duration, or the earlier ``--until`` the
approver chose). ``denied``, ``expired``, ``ended`` and ``terminated`` are final.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "ACCESS_STATES",
    "FINAL_SESSION_STATES",
    "SESSION_EVENT_KINDS",
    "SESSION_ID_PATTERN",
    "SESSION_STATES",
    "NewSessionEvent",
    "RemoteSession",
    "SessionEvent",
    "SessionEventKind",
    "SessionState",
    "new_session_id",
]

SessionState = Literal["pending", "approved", "denied", "expired", "active", "ended", "terminated"]
SESSION_STATES: tuple[SessionState, ...] = get_args(SessionState)
# The states in which the engineer may log in (inside the window).
ACCESS_STATES: frozenset[SessionState] = frozenset({"approved", "active"})
# A session in one of these states never changes again.
FINAL_SESSION_STATES: frozenset[SessionState] = frozenset(
    {"denied", "expired", "ended", "terminated"}
)

SessionEventKind = Literal[
    "requested",
    "approved",
    "denied",
    "expired",
    "connected",
    "disconnected",
    "terminated",
    "ended",
    "file_transfer",  # a file copied through the gateway (sftp, scp): path, size, direction
]
SESSION_EVENT_KINDS: tuple[SessionEventKind, ...] = get_args(SessionEventKind)

SESSION_ID_PATTERN = re.compile(r"^ses-[0-9a-f]{12}$")


def new_session_id() -> str:
    """A fresh random session id: "ses-" and 12 lowercase hex digits."""
    return "ses-" + secrets.token_hex(6)


@dataclass(frozen=True)
class RemoteSession:
    """One engineer's remote login to one customer host, from request to end."""

    session_id: str  # "ses-" + 12 hex
    agent_id: str
    customer: str
    hostname: str
    engineer: str  # user name of the requesting engineer
    reason: str
    requested_duration_ms: int
    requested_ms: int
    pending_expires_ms: int  # the request lapses unless decided before this
    ticket_id: int | None = None
    state: SessionState = "pending"
    local_approval_required: bool = False  # only approval given on the host counts
    approved_by: str | None = None  # customer user name (or the local approver's name)
    approved_ms: int | None = None
    window_start_ms: int | None = None  # = approved_ms
    window_end_ms: int | None = None  # approval + duration, or an earlier --until
    denied_by: str | None = None
    deny_reason: str = ""
    connected_ms: int | None = None  # the engineer's first login
    ended_ms: int | None = None  # ended, terminated, or the request expired
    end_reason: str | None = None  # "access window expired" | "terminated by X" | ...
    terminated_by: str | None = None
    signed_approval: bytes | None = None  # the customer's bundle, sent with every SessionOpen
    version: int = 1  # bumped by the store on every update (optimistic concurrency)


@dataclass(frozen=True)
class SessionEvent:
    """One timeline entry of a session: what happened, when, and who did it."""

    id: int
    session_id: str
    at_ms: int
    actor: str  # "user:erin", "agent:a1", "system"
    kind: SessionEventKind
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewSessionEvent:
    """A session timeline entry before the store numbers it."""

    at_ms: int
    actor: str
    kind: SessionEventKind
    details: Mapping[str, Any] = field(default_factory=dict)
