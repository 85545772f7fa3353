"""Remote session lifecycle: pure transition functions (no I/O; the time is passed in).

Each function takes a session, the action's arguments, who acts and the time, and
returns a ``SessionTransition``: the new session value plus the timeline events to
append. ``version`` is left as it was — the store bumps it when it saves the
transition. Refusals raise errors from ``collector.sessions.errors`` whose messages
say what to do instead.

People are named by user name; event actors are "user:NAME", "agent:AGENT_ID" (an
approval given on the host) or "system" (expiry).

    action            who                                   from          to
    request           an engineer                           -             pending
    approve           a user of the session's customer      pending       approved
    approve_locally   someone on the host (via its agent)   pending       approved
    deny              a user of the session's customer      pending       denied
    expire_if_due     the collector, at pending_expires_ms  pending       expired
    connected         the gateway, engineer logged in       approved      active
                      (a further connection while active: event only)
    disconnected      the gateway, a connection closed      (event only: reconnecting is
                                                            allowed inside the window)
    files_transferred the gateway, files copied (sftp, scp) (events only)
    terminate         a user of the customer, or the        approved,     terminated
                      engineer
                                                            active
    expire_window_if_due  the collector, at window_end_ms   approved,     ended
                                                            active
    end_with_ticket   the collector, the ticket resolved    approved,     ended
                      or closed                             active

``check_login`` is what the SSH gateway asks before opening a login.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from collector.errors import InvalidRequest, format_ms
from collector.sessions.errors import (
    InvalidSessionTransition,
    LocalApprovalRequired,
    LoginRefusal,
    LoginRefused,
    NotAllowed,
    RequestExpired,
)
from collector.sessions.model import (
    SESSION_ID_PATTERN,
    NewSessionEvent,
    RemoteSession,
    SessionEventKind,
    new_session_id,
)

__all__ = [
    "DEFAULT_PENDING_TTL_MS",
    "MAX_DURATION_MS",
    "MAX_PENDING_TTL_MS",
    "MIN_DURATION_MS",
    "SYSTEM_ACTOR",
    "SessionTransition",
    "SignedConsent",
    "approve",
    "approve_locally",
    "check_login",
    "connected",
    "deny",
    "disconnected",
    "end_with_ticket",
    "expire_if_due",
    "expire_window_if_due",
    "files_transferred",
    "remote_response_ms",
    "request",
    "terminate",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
MIN_DURATION_MS = 5 * MINUTE_MS
MAX_DURATION_MS = 12 * HOUR_MS
DEFAULT_PENDING_TTL_MS = HOUR_MS
MAX_PENDING_TTL_MS = 24 * HOUR_MS
SYSTEM_ACTOR = "system"

END_WINDOW_EXPIRED = "window expired"
_REQUEST_AGAIN = "request a new session with `aftercare session request`"


@dataclass(frozen=True)
class SessionTransition:
    """The outcome of an action: the session's new value and the events to append."""

    session: RemoteSession
    events: list[NewSessionEvent]


@dataclass(frozen=True)
class SignedConsent:
    """A customer's signed approval of a session, already checked against it
    (``collector.approval_check.check_session``): who signed, the window end it
    states, and the bundle bytes the host will verify."""

    approver: str
    window_end_ms: int
    data: bytes


def _event(kind: SessionEventKind, actor: str, at_ms: int, **details: Any) -> NewSessionEvent:
    return NewSessionEvent(at_ms=at_ms, actor=actor, kind=kind, details=details)


def _user(name: str) -> str:
    return f"user:{name}"


def _required_text(value: str, what: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{what} must not be empty")
    return text


def _duration_text(ms: int) -> str:
    minutes = ms // MINUTE_MS
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours}h{minutes}m"
    return f"{hours}h" if hours else f"{minutes}m"


# -- request ---------------------------------------------------------------------------


def request(
    *,
    agent_id: str,
    customer: str,
    hostname: str,
    engineer: str,
    reason: str,
    duration_ms: int,
    at_ms: int,
    ticket_id: int | None = None,
    local_approval_required: bool = False,
    pending_ttl_ms: int = DEFAULT_PENDING_TTL_MS,
    session_id: str | None = None,
) -> SessionTransition:
    """An engineer asks for a remote login to a host: a new pending session.

    ``duration_ms`` (the window, counted from approval) must be 5 min to 12 h;
    ``reason`` must not be empty; the request lapses ``pending_ttl_ms`` (default 1 h,
    at most 24 h) after ``at_ms`` unless approved or denied. ``local_approval_required``
    comes from the host's policy. A random id is made unless ``session_id`` is given.
    Raises InvalidRequest.
    """
    for what, value in (("agent_id", agent_id), ("customer", customer), ("engineer", engineer)):
        if not value.strip():
            raise InvalidRequest(f"{what} must not be empty")
    text = _required_text(reason, "the reason for the session")
    if not MIN_DURATION_MS <= duration_ms <= MAX_DURATION_MS:
        raise InvalidRequest(
            f"duration {_duration_text(duration_ms)} is out of range: request between "
            f"{_duration_text(MIN_DURATION_MS)} and {_duration_text(MAX_DURATION_MS)} "
            f"(e.g. --duration 2h)"
        )
    if not 0 < pending_ttl_ms <= MAX_PENDING_TTL_MS:
        raise InvalidRequest(
            f"pending expiry must be positive and at most "
            f"{_duration_text(MAX_PENDING_TTL_MS)}, got {pending_ttl_ms} ms"
        )
    if ticket_id is not None and ticket_id < 1:
        raise InvalidRequest(f"ticket ids start at 1, got {ticket_id}")
    sid = new_session_id() if session_id is None else session_id
    if not SESSION_ID_PATTERN.match(sid):
        raise InvalidRequest(f"session id {sid!r} is not 'ses-' followed by 12 hex digits")
    session = RemoteSession(
        session_id=sid,
        agent_id=agent_id,
        customer=customer,
        hostname=hostname,
        engineer=engineer,
        reason=text,
        requested_duration_ms=duration_ms,
        requested_ms=at_ms,
        pending_expires_ms=at_ms + pending_ttl_ms,
        ticket_id=ticket_id,
        local_approval_required=local_approval_required,
    )
    event = _event(
        "requested",
        _user(engineer),
        at_ms,
        hostname=hostname,
        reason=text,
        duration_ms=duration_ms,
        ticket_id=ticket_id,
        pending_expires_ms=session.pending_expires_ms,
        local_approval_required=local_approval_required,
    )
    return SessionTransition(session, [event])


# -- decisions -------------------------------------------------------------------------


def _require_customer_user(
    session: RemoteSession, user: str, user_customer: str | None, action: str
) -> None:
    if user_customer != session.customer:
        raise NotAllowed(
            f"{user!r} may not {action} session {session.session_id}: only users of "
            f"customer {session.customer!r} can"
        )


def _require_pending(session: RemoteSession, action: str, at_ms: int) -> None:
    """Raise unless the request is still pending and not past its expiry."""
    if session.state == "expired" or (
        session.state == "pending" and at_ms >= session.pending_expires_ms
    ):
        raise RequestExpired(session.session_id, session.pending_expires_ms)
    if session.state != "pending":
        raise InvalidSessionTransition(
            session.session_id, session.state, action, "the request was already decided"
        )


def _window_end(session: RemoteSession, at_ms: int, until_ms: int | None) -> int:
    full = at_ms + session.requested_duration_ms
    if until_ms is None:
        return full
    if until_ms <= at_ms:
        raise InvalidRequest(
            f"--until {format_ms(until_ms)} is not in the future; choose a time after "
            f"{format_ms(at_ms)}"
        )
    if until_ms > full:
        raise InvalidRequest(
            f"--until {format_ms(until_ms)} is beyond the requested window (which would "
            f"end at {format_ms(full)}); --until can only shorten it — for longer access "
            "the engineer must request a new session"
        )
    return until_ms


def _approved(
    session: RemoteSession, approver: str, actor: str, at_ms: int, until_ms: int | None, local: bool
) -> SessionTransition:
    end = _window_end(session, at_ms, until_ms)
    new = replace(
        session,
        state="approved",
        approved_by=approver,
        approved_ms=at_ms,
        window_start_ms=at_ms,
        window_end_ms=end,
    )
    event = _event("approved", actor, at_ms, approver=approver, window_end_ms=end, local=local)
    return SessionTransition(new, [event])


def approve(
    session: RemoteSession,
    approver: str,
    approver_customer: str | None,
    at_ms: int,
    until_ms: int | None = None,
    signed: SignedConsent | None = None,
) -> SessionTransition:
    """A customer user approves on the collector: pending → approved.

    The window starts now and ends after the requested duration, or at ``until_ms``
    if earlier (it can only shorten the window). With ``signed``, the window ends
    where the signed approval says (``until_ms`` is then ignored), the session keeps
    the bundle and ``approved_by`` is the certified approver. Raises NotAllowed unless
    ``approver_customer`` is the session's customer (engineers and admins have none),
    LocalApprovalRequired where the host's policy wants approval on the host,
    RequestExpired after the pending expiry, InvalidSessionTransition if already
    decided, InvalidRequest for a bad ``until_ms``.
    """
    _require_customer_user(session, approver, approver_customer, "approve")
    if session.local_approval_required:
        raise LocalApprovalRequired(session.session_id, session.hostname)
    _require_pending(session, "approve", at_ms)
    if signed is None:
        return _approved(session, approver, _user(approver), at_ms, until_ms, local=False)
    if signed.window_end_ms <= at_ms:
        raise InvalidRequest("the signed approval's window has already ended; approve again")
    full = at_ms + session.requested_duration_ms
    transition = _approved(
        session, signed.approver, _user(approver), at_ms, min(full, signed.window_end_ms), False
    )
    new = replace(
        transition.session, window_end_ms=signed.window_end_ms, signed_approval=signed.data
    )
    [event] = transition.events
    details = {**event.details, "window_end_ms": signed.window_end_ms, "signed": True}
    return SessionTransition(new, [replace(event, details=details)])


def approve_locally(
    session: RemoteSession,
    agent_id: str,
    approver: str,
    at_ms: int,
    until_ms: int | None = None,
) -> SessionTransition:
    """Approval given on the host itself (``aftercare-agent approve-session ID``),
    reported by the session's agent: pending → approved. Counts whether or not the
    host's policy requires it. ``approver`` is the local account that approved.

    Raises NotAllowed if ``agent_id`` is not the session's agent, RequestExpired,
    InvalidSessionTransition or InvalidRequest as ``approve``.
    """
    if agent_id != session.agent_id:
        raise NotAllowed(
            f"agent {agent_id!r} may not approve session {session.session_id}: it is "
            f"for host {session.hostname!r}; approve it on that host"
        )
    name = _required_text(approver, "the local approver's name")
    _require_pending(session, "approve", at_ms)
    return _approved(session, name, f"agent:{agent_id}", at_ms, until_ms, local=True)


def deny(
    session: RemoteSession,
    approver: str,
    approver_customer: str | None,
    reason: str,
    at_ms: int,
) -> SessionTransition:
    """A customer user refuses the request: pending → denied. A reason is required.
    Denial on the collector is accepted even where approval must be local (refusing
    is always safe). Raises NotAllowed, RequestExpired, InvalidSessionTransition,
    InvalidRequest (empty reason)."""
    _require_customer_user(session, approver, approver_customer, "deny")
    _require_pending(session, "deny", at_ms)
    text = _required_text(reason, "the reason for denying")
    new = replace(session, state="denied", denied_by=approver, deny_reason=text)
    return SessionTransition(new, [_event("denied", _user(approver), at_ms, reason=text)])


def expire_if_due(session: RemoteSession, now_ms: int) -> SessionTransition | None:
    """The request lapses undecided: pending → expired once ``now_ms`` reaches
    ``pending_expires_ms``; None when not pending or not yet due."""
    if session.state != "pending" or now_ms < session.pending_expires_ms:
        return None
    new = replace(session, state="expired", ended_ms=now_ms, end_reason="request expired")
    event = _event("expired", SYSTEM_ACTOR, now_ms, pending_expires_ms=session.pending_expires_ms)
    return SessionTransition(new, [event])


# -- login -----------------------------------------------------------------------------


def check_login(session: RemoteSession, engineer: str, now_ms: int) -> None:
    """Whether ``engineer`` may log in through this session now; raises LoginRefused
    (its ``reason`` names the cause) if not. Allowed: the requesting engineer, the
    session approved or active, ``window_start_ms <= now_ms < window_end_ms``."""
    sid = session.session_id

    def refuse(reason: LoginRefusal, message: str) -> LoginRefused:
        return LoginRefused(sid, reason, message)

    if engineer != session.engineer:
        raise refuse(
            "not_your_session",
            f"session {sid} was requested by another engineer; request your own with "
            f"`aftercare session request`",
        )
    state = session.state
    if state == "pending":
        if now_ms >= session.pending_expires_ms:
            raise refuse("request_expired", _expired_text(session))
        raise refuse(
            "pending",
            f"session {sid} is not approved yet; a user of customer {session.customer!r} "
            f"must approve it first (`aftercare session approve {sid}`"
            + (
                f", on the host: `aftercare-agent approve-session {sid}`)"
                if session.local_approval_required
                else ")"
            ),
        )
    if state == "denied":
        why = f": {session.deny_reason}" if session.deny_reason else ""
        raise refuse(
            "denied", f"session {sid} was denied by {session.denied_by}{why}; it cannot be used"
        )
    if state == "expired":
        raise refuse("request_expired", _expired_text(session))
    if state == "terminated":
        raise refuse(
            "terminated",
            f"session {sid} was terminated by {session.terminated_by}"
            f"{_at(session.ended_ms)}; {_REQUEST_AGAIN}",
        )
    if state == "ended":
        if session.end_reason == END_WINDOW_EXPIRED:
            raise refuse("window_ended", _window_ended_text(session))
        raise refuse(
            "ended",
            f"session {sid} has ended ({session.end_reason}){_at(session.ended_ms)}; "
            f"{_REQUEST_AGAIN}",
        )
    start, end = session.window_start_ms, session.window_end_ms
    if start is None or end is None or now_ms < start:
        raise refuse(
            "before_window",
            f"session {sid}'s access window has not started; it starts at approval",
        )
    if now_ms >= end:
        raise refuse("window_ended", _window_ended_text(session))


def _at(ms: int | None) -> str:
    return f" at {format_ms(ms)}" if ms is not None else ""


def _expired_text(session: RemoteSession) -> str:
    return (
        f"session request {session.session_id} expired at "
        f"{format_ms(session.pending_expires_ms)} without approval; {_REQUEST_AGAIN}"
    )


def _window_ended_text(session: RemoteSession) -> str:
    return (
        f"session {session.session_id}'s access window ended"
        f"{_at(session.window_end_ms)}; {_REQUEST_AGAIN}"
    )


# -- connection and end ----------------------------------------------------------------


def connected(session: RemoteSession, at_ms: int) -> SessionTransition:
    """The engineer logged in through the gateway: approved → active, ``connected_ms``
    set (the remote-response clock stops). A further connection while active (e.g. an
    scp beside the shell) is an event only. Raises LoginRefused as ``check_login``."""
    check_login(session, session.engineer, at_ms)
    actor = _user(session.engineer)
    if session.state == "active":
        return SessionTransition(session, [_event("connected", actor, at_ms, first=False)])
    new = replace(session, state="active", connected_ms=at_ms)
    event = _event(
        "connected", actor, at_ms, first=True, remote_response_ms=remote_response_ms(new)
    )
    return SessionTransition(new, [event])


def disconnected(session: RemoteSession, at_ms: int, **details: Any) -> SessionTransition:
    """One of the engineer's connections closed: an event only (``details`` such as
    bytes relayed go on it). The session keeps its state: the engineer may connect
    again (an scp after the shell, a dropped link) until the window ends or someone
    terminates it. Raises InvalidSessionTransition if the session never connected."""
    if session.connected_ms is None:
        raise InvalidSessionTransition(
            session.session_id, session.state, "disconnected", "it never connected"
        )
    return SessionTransition(
        session, [_event("disconnected", _user(session.engineer), at_ms, **details)]
    )


def files_transferred(
    session: RemoteSession, at_ms: int, transfers: Sequence[Mapping[str, Any]]
) -> SessionTransition:
    """Files the engineer copied through the gateway: one ``file_transfer`` event each
    (``transfers``: protocol, direction, path, size_bytes, ...). Events only."""
    actor = _user(session.engineer)
    return SessionTransition(
        session, [_event("file_transfer", actor, at_ms, **dict(t)) for t in transfers]
    )


def terminate(
    session: RemoteSession, by: str, by_customer: str | None, at_ms: int
) -> SessionTransition:
    """End the session at once: approved/active → terminated. Allowed for users of the
    session's customer and for the engineer themself. Raises NotAllowed or
    InvalidSessionTransition (not approved or active)."""
    if by != session.engineer and by_customer != session.customer:
        raise NotAllowed(
            f"{by!r} may not terminate session {session.session_id}: only users of "
            f"customer {session.customer!r} and the engineer {session.engineer!r} can"
        )
    if session.state not in ("approved", "active"):
        hint = (
            "deny the request instead (`aftercare session deny`)"
            if session.state == "pending"
            else "it is already over"
        )
        raise InvalidSessionTransition(session.session_id, session.state, "terminate", hint)
    reason = f"terminated by {by}"
    new = replace(session, state="terminated", ended_ms=at_ms, end_reason=reason, terminated_by=by)
    event = _event("terminated", _user(by), at_ms, was=session.state)
    return SessionTransition(new, [event])


def expire_window_if_due(session: RemoteSession, now_ms: int) -> SessionTransition | None:
    """The access window is over: approved/active → ended ("window expired") once
    ``now_ms`` reaches ``window_end_ms``; None when not due or not approved/active."""
    if session.state not in ("approved", "active") or session.window_end_ms is None:
        return None
    if now_ms < session.window_end_ms:
        return None
    return _end(session, SYSTEM_ACTOR, now_ms, END_WINDOW_EXPIRED, None)


def end_with_ticket(
    session: RemoteSession, ticket_state: str, at_ms: int
) -> SessionTransition | None:
    """Access ends with the work it was for: approved/active → ended ("ticket N
    resolved") once the session's ticket is resolved or closed; None otherwise."""
    if (
        session.state not in ("approved", "active")
        or session.ticket_id is None
        or ticket_state not in ("resolved", "closed")
    ):
        return None
    reason = f"ticket {session.ticket_id} {ticket_state}"
    return _end(session, SYSTEM_ACTOR, at_ms, reason, None)


def _end(
    session: RemoteSession,
    actor: str,
    at_ms: int,
    reason: str,
    first: SessionEventKind | None,
) -> SessionTransition:
    events = [] if first is None else [_event(first, actor, at_ms)]
    events.append(_event("ended", actor, at_ms, reason=reason, was=session.state))
    new = replace(session, state="ended", ended_ms=at_ms, end_reason=reason)
    return SessionTransition(new, events)


def remote_response_ms(session: RemoteSession) -> int | None:
    """The ticket's remote-response clock: approval → the engineer logged in
    (``connected_ms - approved_ms``); None until both happened."""
    if session.approved_ms is None or session.connected_ms is None:
        return None
    return session.connected_ms - session.approved_ms
