"""The session service: requests, decisions, logins and ends, recorded.

Every step goes to the audit log and, when the session belongs to a ticket, onto the
ticket's timeline (``remote_*`` events, which drive the ticket's remote-response SLA
clock). Customers see and decide only their own customer's sessions; engineers see
every session and terminate their own; every refusal of that kind is audited
(``session.refused``, naming the user, the action and the reason). The SSH gateway
asks ``authorize_login`` before a login (and audits its refusals with
``login_refused``) and reports ``connected`` / ``disconnected`` and the files copied
(``file_transfers``); agents report approvals given on the host. ``SessionSignals``
carries the outcomes to the live parts (the agent's control stream and the
gateway's connections).

Access ends with the session's ticket: the login check reads the session and its
ticket in one store call (the single writer orders it against the ticket's
resolution), so a login checked after the resolution is refused and the session
ended then and there; ``ticket_over`` ends a ticket's sessions as it is resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from collector.approval_check import check_pinned_root, check_session, verify_bundle
from collector.auth import Principal
from collector.errors import (
    CollectorError,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    PermissionDenied,
)
from collector.revocation import require_not_revoked
from collector.sessions import lifecycle
from collector.sessions.errors import LoginRefused, NotAllowed, SessionNotFound
from collector.sessions.model import (
    ACCESS_STATES,
    SESSION_ID_PATTERN,
    NewSessionEvent,
    RemoteSession,
    SessionEvent,
)
from collector.store import AgentRecord
from collector.store.base import RecordingRecord, Store
from collector.store.group_call import GroupCall
from collector.store.writer import StoreThread
from collector.tickets.model import EventKind, NewEvent

TICKET_EVENTS: dict[str, EventKind] = {
    "requested": "remote_requested",
    "approved": "remote_approved",
    "denied": "remote_denied",
    "connected": "remote_connected",
    "ended": "remote_ended",
    "terminated": "remote_ended",
    "expired": "remote_ended",
}


log = logging.getLogger(__name__)

OPEN_STATES = ("pending", *sorted(ACCESS_STATES))  # not over yet
OPEN_SESSIONS_LIMIT = 10_000  # looked at per evaluation
UPDATE_ATTEMPTS = 5  # a session changed meanwhile (version conflict): read it again


def _with_ticket_state(store: Store, session_id: str) -> tuple[RemoteSession | None, str | None]:
    """The session and its ticket's state, read in one store call (the single writer
    runs it between two other calls, never in the middle of a ticket's resolution)."""
    session = store.get_session(session_id)
    if session is None or session.ticket_id is None:
        return session, None
    ticket = store.get_ticket(session.ticket_id)
    return session, ticket.state if ticket is not None else None


class SessionSignals(Protocol):
    """Tells the live parts about sessions (implemented over the agents' streams and
    the gateway; tests pass a recorder)."""

    def requested(self, session: RemoteSession) -> None:
        """A request for the session's host waits for a decision."""
        ...

    def decided(self, session: RemoteSession, decision: str, by: str) -> None:
        """A pending request was approved, denied or expired."""
        ...

    def over(self, session: RemoteSession) -> None:
        """The session is over (terminated, window ended): end every live login now."""
        ...


class _NoSignals:
    def requested(self, session: RemoteSession) -> None:
        pass

    def decided(self, session: RemoteSession, decision: str, by: str) -> None:
        pass

    def over(self, session: RemoteSession) -> None:
        pass


class SessionService:
    """Session operations for the API and the gateway; all store access goes through
    the single writer."""

    def __init__(
        self,
        db: StoreThread,
        clock_ms: Callable[[], int],
        signals: SessionSignals | None = None,
    ) -> None:
        self._db = db
        self._store = db.store
        self._clock_ms = clock_ms
        self.signals: SessionSignals = signals or _NoSignals()
        self._connecting: GroupCall[str, list[RemoteSession]] = GroupCall(
            db, db.store.pending_sessions_of, "pending-session-reads"
        )

    async def request(
        self,
        who: Principal,
        agent: AgentRecord,
        reason: str,
        duration_ms: int,
        ticket_id: int | None,
    ) -> RemoteSession:
        """An engineer asks to log in to ``agent``'s host for ``duration_ms`` once approved."""
        try:
            who.require("engineer", "admin")
        except PermissionDenied as exc:
            await self._refused(who, "request", agent.agent_id, "role", exc)
            raise
        require_not_revoked(agent, "open a remote session to it")
        policy = agent.session_approval  # "" until the agent's first hello
        if policy == "disabled":
            raise InvalidRequest(
                f"host {agent.hostname!r} does not accept remote sessions: its agent has no "
                "session backend configured, or the customer's policy disables them "
                "([sessions] in the agent config and in policy.toml)"
            )
        if policy == "signed" and not agent.approval_root:
            raise InvalidRequest(
                f"host {agent.hostname!r} accepts only sessions approved with a signature of its "
                "customer, but pins no customer approval root yet: the customer pins one "
                "(`aftercare approvers init`, then [approvals] root on the host; docs/approvals.md)"
            )
        if ticket_id is not None:
            ticket = await self._db.call(self._store.get_ticket, ticket_id)
            if ticket is None or ticket.customer != agent.customer:
                raise InvalidRequest(f"ticket {ticket_id} is not a ticket of {agent.customer}")
        transition = lifecycle.request(
            agent_id=agent.agent_id,
            customer=agent.customer,
            hostname=agent.hostname,
            engineer=who.name,
            reason=reason,
            duration_ms=duration_ms,
            at_ms=self._clock_ms(),
            ticket_id=ticket_id,
            local_approval_required=policy == "local",
        )
        session = await self._db.call(
            self._store.create_session, transition.session, transition.events[0]
        )
        await self._record(session, transition.events)
        self.signals.requested(session)
        return session

    async def list_sessions(self, who: Principal, limit: int = 100) -> list[RemoteSession]:
        """Sessions ``who`` may see, newest first (expired requests already marked)."""
        await self.expire_due(self._clock_ms())
        customer = who.visible_customer(None)
        return await self._db.call(self._store.list_sessions, customer, None, None, limit)

    async def get(
        self, who: Principal, session_id: str
    ) -> tuple[RemoteSession, list[SessionEvent]]:
        session = await self._visible(who, session_id, "show")
        events = await self._db.call(self._store.session_events, session_id)
        return session, events

    async def recordings(
        self, who: Principal, session_id: str
    ) -> tuple[RemoteSession, list[RecordingRecord]]:
        """The session (if ``who`` may see it) and its recordings by part."""
        session = await self._visible(who, session_id, "recordings")
        return session, await self._db.call(self._store.list_recordings, session_id)

    async def approve(
        self,
        who: Principal,
        session_id: str,
        until_ms: int | None,
        signed_approval: bytes = b"",
    ) -> RemoteSession:
        """A customer user approves. ``signed_approval`` (a bundle) must name exactly this
        session; its window end becomes the window's end and it goes to the host with
        every SessionOpen. Without one, refused where the host pins an approval root."""
        session = await self._visible(who, session_id, "approve")
        now = self._clock_ms()
        signed: lifecycle.SignedConsent | None = None
        agent = await self._db.call(self._store.get_agent, session.agent_id)
        if agent is not None:
            require_not_revoked(agent, "approve a remote session to it")
        pinned = agent.approval_root if agent is not None else ""
        if signed_approval:
            revocations = await self._db.call(self._store.list_revocations, session.customer)
            checked = verify_bundle(signed_approval, now, {r.key_fingerprint for r in revocations})
            check_pinned_root(checked, pinned, session.hostname)
            end = check_session(checked, session, now)
            signed = lifecycle.SignedConsent(checked.certificate.approver, end, signed_approval)
        elif pinned and who.customer == session.customer:
            raise FailedPrecondition(
                f"host {session.hostname!r} pins the customer's approval root {pinned}: "
                "approve with a signed approval (create your key with `aftercare approvers "
                "key` and ask your admin to certify it with `aftercare approvers add`)"
            )
        with_consent = await self._allowed(
            who,
            "approve",
            session_id,
            lambda: lifecycle.approve(session, who.name, who.customer, now, until_ms, signed),
        )
        return await self._apply(with_consent)

    async def deny(self, who: Principal, session_id: str, reason: str) -> RemoteSession:
        session = await self._visible(who, session_id, "deny")
        transition = await self._allowed(
            who,
            "deny",
            session_id,
            lambda: lifecycle.deny(session, who.name, who.customer, reason, self._clock_ms()),
        )
        return await self._apply(transition)

    async def terminate(self, who: Principal, session_id: str) -> RemoteSession:
        session = await self._visible(who, session_id, "terminate")
        transition = await self._allowed(
            who,
            "terminate",
            session_id,
            lambda: lifecycle.terminate(session, who.name, who.customer, self._clock_ms()),
        )
        return await self._apply(transition)

    async def _allowed(
        self,
        who: Principal,
        action: str,
        session_id: str,
        transition: Callable[[], lifecycle.SessionTransition],
    ) -> lifecycle.SessionTransition:
        """``transition()``, auditing a NotAllowed refusal before it is raised."""
        try:
            return transition()
        except NotAllowed as exc:
            await self._refused(who, action, session_id, "not_allowed", exc)
            raise

    async def _refused(
        self, who: Principal, action: str, target: str, reason: str, exc: CollectorError
    ) -> None:
        """Audit (and log) that ``who`` was refused ``action`` on ``target``."""
        log.warning("%s (%s) refused %s on %s: %s", who.name, who.role, action, target, exc)
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            "session.refused",
            target[:40],
            {
                "action": action,
                "reason": reason,
                "role": who.role,
                "customer": who.customer,
                "message": str(exc),
            },
            self._clock_ms(),
        )

    async def expire_due(self, now_ms: int) -> dict[str, int]:
        """Expire pending requests and access windows that are over, and end access
        whose ticket is resolved or closed. Returns how many sessions are then
        pending, approved and active (for /metrics)."""
        candidates = await self._db.call(
            self._store.list_sessions, None, None, set(OPEN_STATES), OPEN_SESSIONS_LIMIT
        )
        counts: dict[str, int] = dict.fromkeys(OPEN_STATES, 0)
        for session in candidates:
            transition = lifecycle.expire_if_due(session, now_ms) or lifecycle.expire_window_if_due(
                session, now_ms
            )
            if transition is None and session.ticket_id is not None and session.state != "pending":
                ticket = await self._db.call(self._store.get_ticket, session.ticket_id)
                if ticket is not None:
                    transition = lifecycle.end_with_ticket(session, ticket.state, now_ms)
            if transition is not None:
                session = await self._apply(transition)
            if session.state in counts:
                counts[session.state] += 1
        return counts

    # -- the gateway and the agents ----------------------------------------------------

    async def authorize_login(self, session_id: str, user: str | None) -> RemoteSession:
        """May ``user`` (the owner of the offered key; None: unregistered key) log in
        through ``session_id`` now? Returns the session or raises LoginRefused (its
        ``user`` set). Not audited here: the gateway tells the engineer and audits
        (``login_refused``) only once the client proved it holds the key."""
        try:
            if user is None:
                raise LoginRefused(
                    session_id,
                    "unknown_key",
                    "this SSH key is not registered: add it with `aftercare keys add FILE.pub`",
                )
            session = None
            if SESSION_ID_PATTERN.match(session_id):
                session = await self._current(session_id)
            if session is None:
                raise LoginRefused(
                    session_id,
                    "unknown_session",
                    f"no session {session_id[:40]!r}: log in as the session id "
                    "(`ssh -p PORT ses-...@gateway`)",
                )
            lifecycle.check_login(session, user, self._clock_ms())
        except LoginRefused as exc:
            exc.user = user
            raise
        return session

    async def login_refused(self, refusal: LoginRefused) -> None:
        """Audit a refused gateway login (who, which session, why)."""
        user = refusal.user
        await self._db.call(
            self._store.append_audit,
            f"user:{user}" if user else "unknown",
            "session.login_refused",
            refusal.session_id[:40],
            {"reason": refusal.reason, "message": str(refusal)},
            self._clock_ms(),
        )

    async def connected(self, session_id: str) -> RemoteSession:
        """An engineer's connection reached the host (approved → active on the first).
        Raises LoginRefused if access ended meanwhile (the ticket too)."""
        return await self._update(
            session_id, lambda s: lifecycle.connected(s, self._clock_ms()), current=True
        )

    async def disconnected(self, session_id: str, **details: Any) -> RemoteSession:
        return await self._update(
            session_id, lambda s: lifecycle.disconnected(s, self._clock_ms(), **details)
        )

    async def file_transfers(
        self, session_id: str, transfers: Sequence[dict[str, Any]]
    ) -> RemoteSession:
        """Files copied through the gateway (sftp, scp): one timeline event each."""
        return await self._update(
            session_id, lambda s: lifecycle.files_transferred(s, self._clock_ms(), transfers)
        )

    async def ticket_over(self, ticket_id: int, ticket_state: str) -> None:
        """The ticket was resolved or closed: end its sessions' access now (a session
        that cannot be ended now is logged and ended by the next ``expire_due``)."""
        if ticket_state not in ("resolved", "closed"):
            return
        live = await self._db.call(
            self._store.list_sessions, None, None, set(ACCESS_STATES), OPEN_SESSIONS_LIMIT
        )
        for session in live:
            if session.ticket_id != ticket_id:
                continue
            try:
                await self._update(
                    session.session_id,
                    lambda s: lifecycle.end_with_ticket(s, ticket_state, self._clock_ms()),
                )
            except CollectorError as exc:  # the next evaluation ends it; the ticket is resolved
                log.error("could not end session %s with its ticket: %s", session.session_id, exc)

    async def _current(self, session_id: str) -> RemoteSession | None:
        """The session as it stands, its access ended first if its ticket is over."""
        for _ in range(UPDATE_ATTEMPTS):
            session, ticket_state = await self._db.call(_with_ticket_state, self._store, session_id)
            if session is None or ticket_state is None:
                return session
            transition = lifecycle.end_with_ticket(session, ticket_state, self._clock_ms())
            if transition is None:
                return session
            try:
                return await self._apply(transition)
            except Conflict:
                continue
        raise Conflict(f"session {session_id} keeps changing; try again")

    async def _update(
        self,
        session_id: str,
        transition: Callable[[RemoteSession], lifecycle.SessionTransition | None],
        current: bool = False,
    ) -> RemoteSession:
        """Apply ``transition`` to the stored session, reading it again if it changed
        meanwhile (a version conflict); ``current``: end access with the ticket first."""
        for _ in range(UPDATE_ATTEMPTS):
            if current:
                session = await self._current(session_id)
            else:
                session = await self._db.call(self._store.get_session, session_id)
            if session is None:
                raise SessionNotFound(session_id)
            change = transition(session)
            if change is None:
                return session
            try:
                return await self._apply(change)
            except Conflict:
                continue
        raise Conflict(f"session {session_id} keeps changing; try again")

    async def agent_connected(self, agent_id: str) -> None:
        """Tell a (re)connected agent about the requests for its host still pending
        (agents connecting together share one read)."""
        pending = await self._connecting.submit(agent_id)
        now = self._clock_ms()
        for session in pending:
            if now < session.pending_expires_ms:
                self.signals.requested(session)

    async def approved_on_host(
        self, agent_id: str, session_id: str, approver: str, until_ms: int | None
    ) -> RemoteSession | None:
        """An approval given on the host, reported by its agent; None (logged) if it
        does not apply (another host's session, already decided, expired)."""
        try:
            session = await self._get(session_id)
            transition = lifecycle.approve_locally(
                session, agent_id, approver, self._clock_ms(), until_ms
            )
            return await self._apply(transition)
        except CollectorError as exc:
            log.warning("approval of %s from agent %s ignored: %s", session_id, agent_id, exc)
            return None

    async def _get(self, session_id: str) -> RemoteSession:
        session = await self._db.call(self._store.get_session, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def _apply(self, transition: lifecycle.SessionTransition) -> RemoteSession:
        session = await self._db.call(
            self._store.update_session, transition.session, transition.events
        )
        await self._record(session, transition.events)
        for event in transition.events:
            if event.kind in ("approved", "denied", "expired"):
                self.signals.decided(session, event.kind, event.actor)
        if session.state in ("terminated", "ended"):
            self.signals.over(session)
        return session

    async def _record(self, session: RemoteSession, events: Sequence[NewSessionEvent]) -> None:
        """Audit every event; mirror it onto the session's ticket."""
        for event in events:
            details: dict[str, Any] = {
                "agent_id": session.agent_id,
                "customer": session.customer,
                "engineer": session.engineer,
                **dict(event.details),
            }
            await self._db.call(
                self._store.append_audit,
                event.actor,
                f"session.{event.kind}",
                session.session_id,
                details,
                event.at_ms,
            )
            kind = TICKET_EVENTS.get(event.kind)
            if session.ticket_id is not None and kind is not None:
                note = NewEvent(
                    at_ms=event.at_ms,
                    actor=event.actor,
                    kind=kind,
                    details={"session_id": session.session_id, **dict(event.details)},
                )
                await self._db.call(self._store.add_ticket_events, session.ticket_id, [note])

    async def _visible(self, who: Principal, session_id: str, action: str) -> RemoteSession:
        """The session if ``who`` may see it; SessionNotFound otherwise — another
        customer's session is refused like an unknown one, and audited."""
        session = await self._db.call(self._store.get_session, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        if not who.can_see(session.customer):
            refusal = SessionNotFound(session_id)
            await self._refused(who, action, session_id, "other_customer", refusal)
            raise refusal
        return session
