"""The session service: requests, approvals, denials, terminations and expiry, recorded.

Every step goes to the audit log and, when the session belongs to a ticket, onto the
ticket's timeline (``remote_*`` events, which drive the ticket's remote-response SLA
clock). Customers see and decide only their own customer's sessions; engineers see
every session and terminate their own. The SSH gateway (not built yet) will call
``lifecycle.check_login`` / ``connected`` / ``disconnected`` through this service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from collector.auth import Principal
from collector.errors import InvalidRequest
from collector.sessions import lifecycle
from collector.sessions.errors import SessionNotFound
from collector.sessions.model import (
    ACCESS_STATES,
    NewSessionEvent,
    RemoteSession,
    SessionEvent,
)
from collector.store import AgentRecord
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


class SessionService:
    """Session operations for the API; all store access goes through the single writer."""

    def __init__(self, db: StoreThread, clock_ms: Callable[[], int]) -> None:
        self._db = db
        self._store = db.store
        self._clock_ms = clock_ms

    async def request(
        self,
        who: Principal,
        agent: AgentRecord,
        reason: str,
        duration_ms: int,
        ticket_id: int | None,
    ) -> RemoteSession:
        """An engineer asks to log in to ``agent``'s host for ``duration_ms`` once approved."""
        who.require("engineer", "admin")
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
        )
        session = await self._db.call(
            self._store.create_session, transition.session, transition.events[0]
        )
        await self._record(session, transition.events)
        return session

    async def list_sessions(self, who: Principal, limit: int = 100) -> list[RemoteSession]:
        """Sessions ``who`` may see, newest first (expired requests already marked)."""
        await self.expire_due(self._clock_ms())
        customer = who.visible_customer(None)
        return await self._db.call(self._store.list_sessions, customer, None, None, limit)

    async def get(
        self, who: Principal, session_id: str
    ) -> tuple[RemoteSession, list[SessionEvent]]:
        session = await self._visible(who, session_id)
        events = await self._db.call(self._store.session_events, session_id)
        return session, events

    async def approve(self, who: Principal, session_id: str, until_ms: int | None) -> RemoteSession:
        session = await self._visible(who, session_id)
        return await self._apply(
            lifecycle.approve(session, who.name, who.customer, self._clock_ms(), until_ms)
        )

    async def deny(self, who: Principal, session_id: str, reason: str) -> RemoteSession:
        session = await self._visible(who, session_id)
        return await self._apply(
            lifecycle.deny(session, who.name, who.customer, reason, self._clock_ms())
        )

    async def terminate(self, who: Principal, session_id: str) -> RemoteSession:
        session = await self._visible(who, session_id)
        return await self._apply(
            lifecycle.terminate(session, who.name, who.customer, self._clock_ms())
        )

    async def expire_due(self, now_ms: int) -> int:
        """Expire pending requests and access windows that are over; returns how many."""
        candidates = await self._db.call(
            self._store.list_sessions, None, None, {"pending", *ACCESS_STATES}, 1000
        )
        expired = 0
        for session in candidates:
            transition = lifecycle.expire_if_due(session, now_ms) or lifecycle.expire_window_if_due(
                session, now_ms
            )
            if transition is not None:
                await self._apply(transition)
                expired += 1
        return expired

    async def _apply(self, transition: lifecycle.SessionTransition) -> RemoteSession:
        session = await self._db.call(
            self._store.update_session, transition.session, transition.events
        )
        await self._record(session, transition.events)
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

    async def _visible(self, who: Principal, session_id: str) -> RemoteSession:
        session = await self._db.call(self._store.get_session, session_id)
        if session is None or not who.can_see(session.customer):
            raise SessionNotFound(session_id)
        return session
