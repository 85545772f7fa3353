"""Errors raised by the remote-session domain logic, placed in the collector's tree.

The SSH gateway and the API layer map them without knowing about sessions::

    CollectorError                      (collector.errors)
    ├── NotFound
    │   └── SessionNotFound             no such session
    ├── Conflict
    │   ├── InvalidSessionTransition    the action does not apply in the session's state
    │   └── RequestExpired              the request lapsed before anyone decided
    ├── AuthError
    │   └── PermissionDenied
    │       ├── NotAllowed              wrong customer, or not the engineer
    │       ├── LocalApprovalRequired   the host's policy: approve on the host itself
    │       └── LoginRefused            the SSH gateway refuses a login (``reason`` says why)
    └── InvalidRequest                  (used as is: empty reason, duration out of range)
"""

from __future__ import annotations

from typing import Literal

from collector.errors import Conflict, NotFound, PermissionDenied, format_ms

__all__ = [
    "InvalidSessionTransition",
    "LocalApprovalRequired",
    "LoginRefusal",
    "LoginRefused",
    "NotAllowed",
    "RequestExpired",
    "SessionNotFound",
    "no_such_session_text",
]

_REQUEST_AGAIN = "request a new session with `aftercare session request`"


class SessionNotFound(NotFound):
    """No session with this id exists (or the user may not see it: same answer)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} not found; list sessions with `aftercare sessions`")


class InvalidSessionTransition(Conflict):
    """An action the session's current state does not allow, e.g.
    "session ses-… is denied; `approve` does not apply: it was already decided"."""

    def __init__(self, session_id: str, state: str, action: str, hint: str = "") -> None:
        self.session_id = session_id
        self.state = state
        self.action = action
        message = f"session {session_id} is {state}; `{action}` does not apply"
        super().__init__(f"{message}: {hint}" if hint else message)


class RequestExpired(Conflict):
    """The request was not approved or denied before its pending expiry."""

    def __init__(self, session_id: str, expired_ms: int) -> None:
        self.session_id = session_id
        self.expired_ms = expired_ms
        super().__init__(
            f"session request {session_id} expired at {format_ms(expired_ms)} without a "
            f"decision; the engineer must {_REQUEST_AGAIN}"
        )


class NotAllowed(PermissionDenied):
    """The user may not act on this session (another customer's user, not a customer
    user at all, or not the engineer who requested it)."""


class LocalApprovalRequired(PermissionDenied):
    """The host's policy requires approval on the host; a collector-side approval does
    not count."""

    def __init__(self, session_id: str, hostname: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"the policy of host {hostname!r} requires local approval: session "
            f"{session_id} can only be approved on the host itself, with "
            f"`aftercare-agent approve-session {session_id}`"
        )


LoginRefusal = Literal[
    "unknown_key",
    "unknown_session",
    "not_your_session",
    "pending",
    "denied",
    "request_expired",
    "before_window",
    "window_ended",
    "terminated",
    "ended",
]


# Refusals that must not tell a session of another engineer from no session at all.
_AS_UNKNOWN: frozenset[str] = frozenset({"unknown_session", "not_your_session"})


def no_such_session_text(session_id: str) -> str:
    """What the engineer is told for an unknown session and for another's session alike."""
    return (
        f"no session {session_id[:40]!r} of yours: log in as the id of a session you "
        "requested (`aftercare sessions`, then `ssh -p PORT ses-...@gateway`)"
    )


class LoginRefused(PermissionDenied):
    """The SSH gateway must refuse this login; ``reason`` is the machine-readable cause,
    ``user`` the owner of the offered key (None: an unregistered key), once known.
    The message is for the audit log; ``engineer_text`` is what the engineer is told."""

    def __init__(self, session_id: str, reason: LoginRefusal, message: str) -> None:
        self.session_id = session_id
        self.reason: LoginRefusal = reason
        self.user: str | None = None
        super().__init__(message)

    @property
    def engineer_text(self) -> str:
        """The reason as the engineer may see it: another engineer's session reads
        exactly like a session that does not exist."""
        if self.reason in _AS_UNKNOWN:
            return no_such_session_text(self.session_id)
        return str(self)
