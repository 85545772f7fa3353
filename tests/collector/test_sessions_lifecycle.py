"""Remote session lifecycle: every transition, and every refusal with its message."""

from __future__ import annotations

from dataclasses import replace

import pytest

from collector.errors import Conflict, InvalidRequest, PermissionDenied
from collector.sessions.errors import (
    InvalidSessionTransition,
    LocalApprovalRequired,
    LoginRefused,
    NotAllowed,
    RequestExpired,
)
from collector.sessions.lifecycle import (
    DEFAULT_PENDING_TTL_MS,
    MAX_DURATION_MS,
    MIN_DURATION_MS,
    SessionTransition,
    approve,
    approve_locally,
    check_login,
    connected,
    deny,
    disconnected,
    end_with_ticket,
    expire_if_due,
    expire_window_if_due,
    remote_response_ms,
    request,
    terminate,
)
from collector.sessions.model import SESSION_ID_PATTERN, RemoteSession

T0 = 1_700_000_000_000
MIN = 60_000
HOUR = 60 * MIN
SID = "ses-0123456789ab"


def requested(**changes: object) -> RemoteSession:
    args: dict[str, object] = {
        "agent_id": "a1",
        "customer": "acme",
        "hostname": "web1",
        "engineer": "erin",
        "reason": "disk keeps filling up",
        "duration_ms": 2 * HOUR,
        "at_ms": T0,
        "session_id": SID,
    }
    args.update(changes)
    return request(**args).session  # type: ignore[arg-type]


def approved(at_ms: int = T0 + MIN, until_ms: int | None = None) -> RemoteSession:
    return approve(requested(), "carol", "acme", at_ms, until_ms).session


def active(at_ms: int = T0 + 3 * MIN) -> RemoteSession:
    return connected(approved(), at_ms).session


def kinds(transition: SessionTransition) -> list[str]:
    return [event.kind for event in transition.events]


# -- request ---------------------------------------------------------------------------


def test_request_makes_a_pending_session() -> None:
    t = request(
        agent_id="a1",
        customer="acme",
        hostname="web1",
        engineer="erin",
        reason="  disk keeps filling up ",
        duration_ms=2 * HOUR,
        at_ms=T0,
        ticket_id=12,
    )
    s = t.session
    assert SESSION_ID_PATTERN.match(s.session_id)
    assert (s.state, s.reason, s.ticket_id, s.version) == (
        "pending",
        "disk keeps filling up",
        12,
        1,
    )
    assert (s.requested_ms, s.requested_duration_ms) == (T0, 2 * HOUR)
    assert s.pending_expires_ms == T0 + DEFAULT_PENDING_TTL_MS == T0 + HOUR
    assert s.approved_ms is None and s.window_start_ms is None and s.window_end_ms is None
    assert not s.local_approval_required
    (event,) = t.events
    assert (event.kind, event.actor, event.at_ms) == ("requested", "user:erin", T0)
    assert event.details["ticket_id"] == 12 and event.details["duration_ms"] == 2 * HOUR


def test_request_ids_are_random() -> None:
    ids = {requested(session_id=None).session_id for _ in range(20)}
    assert len(ids) == 20


def test_request_pending_expiry_is_configurable() -> None:
    assert requested(pending_ttl_ms=10 * MIN).pending_expires_ms == T0 + 10 * MIN
    for bad in (0, -1, 25 * HOUR):
        with pytest.raises(InvalidRequest, match="pending expiry"):
            requested(pending_ttl_ms=bad)


def test_request_duration_bounds() -> None:
    assert requested(duration_ms=MIN_DURATION_MS).requested_duration_ms == 5 * MIN
    assert requested(duration_ms=MAX_DURATION_MS).requested_duration_ms == 12 * HOUR
    for bad in (MIN_DURATION_MS - 1, MAX_DURATION_MS + 1, 0):
        with pytest.raises(InvalidRequest, match=r"between 5m and 12h"):
            requested(duration_ms=bad)


def test_request_refuses_bad_input() -> None:
    with pytest.raises(InvalidRequest, match="reason"):
        requested(reason="   ")
    with pytest.raises(InvalidRequest, match="engineer"):
        requested(engineer="")
    with pytest.raises(InvalidRequest, match="ticket"):
        requested(ticket_id=0)
    with pytest.raises(InvalidRequest, match="12 hex"):
        requested(session_id="ses-XYZ")


# -- approval --------------------------------------------------------------------------


def test_approve_opens_the_window_at_approval() -> None:
    t = approve(requested(), "carol", "acme", T0 + 10 * MIN)
    s = t.session
    assert (s.state, s.approved_by, s.approved_ms) == ("approved", "carol", T0 + 10 * MIN)
    assert s.window_start_ms == T0 + 10 * MIN
    assert s.window_end_ms == T0 + 10 * MIN + 2 * HOUR
    assert kinds(t) == ["approved"]
    assert t.events[0].actor == "user:carol" and t.events[0].details["local"] is False


def test_approve_by_another_customers_user_is_denied() -> None:
    with pytest.raises(NotAllowed, match="only users of customer 'acme'") as info:
        approve(requested(), "zed", "zeta", T0 + MIN)
    assert isinstance(info.value, PermissionDenied)


def test_approve_by_an_engineer_is_denied() -> None:
    with pytest.raises(NotAllowed, match="'erin' may not approve"):
        approve(requested(), "erin", None, T0 + MIN)
    with pytest.raises(NotAllowed):
        approve(requested(), "bob", None, T0 + MIN)


def test_approve_after_pending_expiry_is_refused() -> None:
    s = requested()
    with pytest.raises(RequestExpired, match=r"expired at .* request a new session") as info:
        approve(s, "carol", "acme", T0 + HOUR)
    assert isinstance(info.value, Conflict)
    assert approve(s, "carol", "acme", T0 + HOUR - 1).session.state == "approved"


def test_approve_twice_is_refused() -> None:
    s = approved()
    with pytest.raises(InvalidSessionTransition, match="is approved; `approve` does not apply"):
        approve(s, "carol", "acme", T0 + 2 * MIN)
    with pytest.raises(InvalidSessionTransition, match="already decided"):
        deny(s, "carol", "acme", "changed my mind", T0 + 2 * MIN)


def test_until_can_only_shorten_the_window() -> None:
    at = T0 + MIN
    s = approve(requested(), "carol", "acme", at, until_ms=at + 30 * MIN).session
    assert s.window_end_ms == at + 30 * MIN
    full = approve(requested(), "carol", "acme", at, until_ms=at + 2 * HOUR).session
    assert full.window_end_ms == at + 2 * HOUR
    with pytest.raises(InvalidRequest, match="can only shorten"):
        approve(requested(), "carol", "acme", at, until_ms=at + 2 * HOUR + 1)
    for past in (at, at - 1):
        with pytest.raises(InvalidRequest, match="not in the future"):
            approve(requested(), "carol", "acme", at, until_ms=past)


def test_local_approval_required_refuses_collector_approval() -> None:
    s = requested(local_approval_required=True)
    with pytest.raises(
        LocalApprovalRequired, match=f"`aftercare-agent approve-session {SID}`"
    ) as info:
        approve(s, "carol", "acme", T0 + MIN)
    assert "on the host itself" in str(info.value)
    t = approve_locally(s, "a1", "root", T0 + 2 * MIN, until_ms=T0 + 30 * MIN)
    assert (t.session.state, t.session.approved_by) == ("approved", "root")
    assert t.session.window_end_ms == T0 + 30 * MIN
    assert t.events[0].actor == "agent:a1" and t.events[0].details["local"] is True
    # Denial from the collector still works: refusing is always safe.
    assert deny(s, "carol", "acme", "not now", T0 + MIN).session.state == "denied"


def test_local_approval_only_from_the_sessions_agent() -> None:
    with pytest.raises(NotAllowed, match="agent 'a2'"):
        approve_locally(requested(), "a2", "root", T0 + MIN)
    with pytest.raises(RequestExpired):
        approve_locally(requested(), "a1", "root", T0 + HOUR)
    with pytest.raises(InvalidRequest, match="approver"):
        approve_locally(requested(), "a1", " ", T0 + MIN)


def test_deny() -> None:
    t = deny(requested(), "carol", "acme", " change freeze ", T0 + MIN)
    assert (t.session.state, t.session.denied_by, t.session.deny_reason) == (
        "denied",
        "carol",
        "change freeze",
    )
    assert kinds(t) == ["denied"] and t.events[0].details == {"reason": "change freeze"}
    with pytest.raises(InvalidRequest, match="reason"):
        deny(requested(), "carol", "acme", "", T0 + MIN)
    with pytest.raises(NotAllowed):
        deny(requested(), "zed", "zeta", "no", T0 + MIN)
    with pytest.raises(RequestExpired):
        deny(requested(), "carol", "acme", "no", T0 + HOUR)


def test_expire_if_due() -> None:
    s = requested()
    assert expire_if_due(s, T0 + HOUR - 1) is None
    t = expire_if_due(s, T0 + HOUR)
    assert t is not None
    assert (t.session.state, t.session.ended_ms) == ("expired", T0 + HOUR)
    assert kinds(t) == ["expired"] and t.events[0].actor == "system"
    assert expire_if_due(approved(), T0 + 5 * HOUR) is None
    with pytest.raises(RequestExpired):
        approve(t.session, "carol", "acme", T0 + HOUR)


# -- login checks: one test per refusal ------------------------------------------------


def refusal(session: RemoteSession, engineer: str, now: int) -> LoginRefused:
    with pytest.raises(LoginRefused) as info:
        check_login(session, engineer, now)
    assert isinstance(info.value, PermissionDenied)
    return info.value


def test_login_allowed_inside_the_window() -> None:
    s = approved()
    check_login(s, "erin", T0 + MIN)
    check_login(s, "erin", T0 + MIN + 2 * HOUR - 1)
    check_login(active(), "erin", T0 + HOUR)  # a second connection, e.g. scp


def test_login_refused_for_another_engineer() -> None:
    e = refusal(approved(), "mallory", T0 + 2 * MIN)
    assert e.reason == "not_your_session"
    assert str(e) == (
        f"session {SID} was requested by another engineer; request your own with "
        "`aftercare session request`"
    )


def test_login_refused_while_pending() -> None:
    e = refusal(requested(), "erin", T0 + MIN)
    assert e.reason == "pending"
    assert str(e) == (
        f"session {SID} is not approved yet; a user of customer 'acme' must approve it "
        f"first (`aftercare session approve {SID}`)"
    )
    local = refusal(requested(local_approval_required=True), "erin", T0 + MIN)
    assert f"on the host: `aftercare-agent approve-session {SID}`" in str(local)


def test_login_refused_when_denied() -> None:
    s = deny(requested(), "carol", "acme", "change freeze", T0 + MIN).session
    e = refusal(s, "erin", T0 + 2 * MIN)
    assert e.reason == "denied"
    assert str(e) == f"session {SID} was denied by carol: change freeze; it cannot be used"


def test_login_refused_when_request_expired() -> None:
    msg = (
        f"session request {SID} expired at 2023-11-14T23:13:20+00:00 without approval; "
        "request a new session with `aftercare session request`"
    )
    e = refusal(requested(), "erin", T0 + HOUR)  # due, not yet marked
    assert (e.reason, str(e)) == ("request_expired", msg)
    marked = expire_if_due(requested(), T0 + HOUR)
    assert marked is not None
    e = refusal(marked.session, "erin", T0 + HOUR)
    assert (e.reason, str(e)) == ("request_expired", msg)


def test_login_refused_before_window() -> None:
    # Impossible by construction (the window starts at approval); guarded anyway.
    s = replace(approved(), window_start_ms=None)
    e = refusal(s, "erin", T0 + 2 * MIN)
    assert e.reason == "before_window"
    assert str(e) == f"session {SID}'s access window has not started; it starts at approval"
    e = refusal(approved(), "erin", T0)
    assert e.reason == "before_window"


def test_login_refused_after_window_end() -> None:
    msg = (
        f"session {SID}'s access window ended at 2023-11-14T22:15:20+00:00; "
        "request a new session with `aftercare session request`"
    )
    e = refusal(approved(until_ms=T0 + 2 * MIN), "erin", T0 + 2 * MIN)
    assert (e.reason, str(e)) == ("window_ended", msg)
    ended = expire_window_if_due(approved(until_ms=T0 + 2 * MIN), T0 + 2 * MIN)
    assert ended is not None
    e = refusal(ended.session, "erin", T0 + 2 * MIN)
    assert (e.reason, str(e)) == ("window_ended", msg)


def test_login_refused_when_terminated() -> None:
    s = terminate(active(), "carol", "acme", T0 + 10 * MIN).session
    e = refusal(s, "erin", T0 + 11 * MIN)
    assert e.reason == "terminated"
    assert str(e) == (
        f"session {SID} was terminated by carol at 2023-11-14T22:23:20+00:00; "
        "request a new session with `aftercare session request`"
    )


def test_login_refused_when_ended() -> None:
    s = replace(active(), state="ended", ended_ms=T0 + 10 * MIN, end_reason="ticket 7 closed")
    e = refusal(s, "erin", T0 + 11 * MIN)
    assert e.reason == "ended"
    assert str(e) == (
        f"session {SID} has ended (ticket 7 closed) at 2023-11-14T22:23:20+00:00; "
        "request a new session with `aftercare session request`"
    )


# -- connection, end, terminate --------------------------------------------------------


def test_connected_and_remote_response() -> None:
    s = approved(at_ms=T0 + MIN)
    assert remote_response_ms(s) is None
    t = connected(s, T0 + 4 * MIN)
    assert (t.session.state, t.session.connected_ms) == ("active", T0 + 4 * MIN)
    assert remote_response_ms(t.session) == 3 * MIN
    assert kinds(t) == ["connected"]
    assert t.events[0].details == {"first": True, "remote_response_ms": 3 * MIN}
    again = connected(t.session, T0 + 5 * MIN)  # a second connection: event only
    assert again.session == t.session and again.events[0].details == {"first": False}
    assert remote_response_ms(requested()) is None


def test_connected_refused_outside_the_window() -> None:
    with pytest.raises(LoginRefused, match="not approved yet"):
        connected(requested(), T0 + MIN)
    with pytest.raises(LoginRefused, match="window ended"):
        connected(approved(), T0 + MIN + 2 * HOUR)


def test_disconnected_is_an_event_and_the_engineer_may_reconnect() -> None:
    live = active()
    t = disconnected(live, T0 + 30 * MIN, bytes_to_host=10)
    assert t.session == live
    assert kinds(t) == ["disconnected"] and t.events[0].details == {"bytes_to_host": 10}
    check_login(t.session, "erin", T0 + 31 * MIN)  # still inside the window
    assert connected(t.session, T0 + 31 * MIN).events[0].details == {"first": False}
    # A connection that outlived a termination is still recorded.
    over = terminate(live, "carol", "acme", T0 + 20 * MIN).session
    assert kinds(disconnected(over, T0 + 21 * MIN)) == ["disconnected"]
    with pytest.raises(InvalidSessionTransition, match="never connected"):
        disconnected(approved(), T0 + 30 * MIN)


def test_terminate_by_customer_user() -> None:
    t = terminate(active(), "carol", "acme", T0 + 20 * MIN)
    s = t.session
    assert (s.state, s.terminated_by, s.end_reason) == (
        "terminated",
        "carol",
        "terminated by carol",
    )
    assert s.ended_ms == T0 + 20 * MIN
    assert kinds(t) == ["terminated"] and t.events[0].actor == "user:carol"
    # An approved session nobody used yet can be terminated too.
    assert terminate(approved(), "carol", "acme", T0 + 2 * MIN).session.state == "terminated"


def test_terminate_by_the_engineer() -> None:
    s = terminate(active(), "erin", None, T0 + 20 * MIN).session
    assert (s.state, s.end_reason) == ("terminated", "terminated by erin")


def test_terminate_by_another_customer_or_engineer_is_denied() -> None:
    with pytest.raises(NotAllowed, match="'zed' may not terminate"):
        terminate(active(), "zed", "zeta", T0 + 20 * MIN)
    with pytest.raises(NotAllowed):
        terminate(active(), "bob", None, T0 + 20 * MIN)


def test_terminate_refused_when_not_approved_or_active() -> None:
    with pytest.raises(InvalidSessionTransition, match="deny the request instead"):
        terminate(requested(), "carol", "acme", T0 + MIN)
    over = terminate(active(), "carol", "acme", T0 + 10 * MIN).session
    with pytest.raises(InvalidSessionTransition, match="already over"):
        terminate(over, "carol", "acme", T0 + 11 * MIN)


def test_expire_window_if_due() -> None:
    s = active()
    end = s.window_end_ms
    assert end == T0 + MIN + 2 * HOUR
    assert expire_window_if_due(s, end - 1) is None
    t = expire_window_if_due(s, end)
    assert t is not None
    assert (t.session.state, t.session.end_reason, t.session.ended_ms) == (
        "ended",
        "window expired",
        end,
    )
    assert kinds(t) == ["ended"] and t.events[0].actor == "system"
    unused = expire_window_if_due(approved(), end)
    assert unused is not None and unused.session.state == "ended"
    assert expire_window_if_due(requested(), end) is None
    assert expire_window_if_due(t.session, end + HOUR) is None


def test_access_ends_with_its_ticket() -> None:
    live = replace(active(), ticket_id=12)
    assert end_with_ticket(live, "acknowledged", T0 + HOUR) is None
    assert end_with_ticket(replace(active(), ticket_id=None), "closed", T0 + HOUR) is None
    t = end_with_ticket(live, "resolved", T0 + HOUR)
    assert t is not None
    assert (t.session.state, t.session.end_reason) == ("ended", "ticket 12 resolved")
    assert kinds(t) == ["ended"] and t.events[0].actor == "system"
    assert end_with_ticket(replace(requested(), ticket_id=12), "closed", T0 + HOUR) is None
