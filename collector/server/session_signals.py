"""Sessions meet the live parts: agents' control streams, the gateway, watchers.

``LiveSessionSignals`` implements ``SessionSignals``: a new request is announced to
the host's agent, and so is its decision; a session that is over is closed on the
agent (which ends its logins on its own), on the gateway (every live connection,
reason shown to the engineer) and for watchers. ``SessionAgentMessages`` turns the agents' session
messages into ``SessionService`` calls. A message for an agent connected to another
replica goes through ``forward`` (the agent outbox, collector.server.agent_outbox), if set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from collector.gateway.recording import WatchHub
from collector.rules import HostRef
from collector.server.streams import Streams
from collector.sessions.model import RemoteSession
from collector.sessions.service import SessionService
from proto import agent_pb2

# With replicas, the agent is told this long after the other replicas' gateways were
# (so an engineer there sees why before the host's shell goes away).
OTHER_GATEWAYS_GRACE_SECONDS = 1.0


class LiveGateway(Protocol):
    def end_session(self, session_id: str, reason: str) -> None: ...


class LiveSessionSignals:
    """SessionSignals over the control streams, the gateway and the watch hub."""

    def __init__(self, streams: Streams, hub: WatchHub) -> None:
        self._streams = streams
        self._hub = hub
        self.gateway: LiveGateway | None = None
        self._closing: set[asyncio.Task[None]] = set()
        # reaches agents on other replicas (AgentRouter.send); None with one process
        self.forward: (
            Callable[[str, agent_pb2.CollectorMessage], Coroutine[Any, Any, bool]] | None
        ) = None
        self._forwarding: set[asyncio.Task[bool]] = set()
        # tells the other replicas' gateways (ReplicaRouting.announce_session_over)
        self.announce: Callable[[str, str], Coroutine[Any, Any, None]] | None = None

    def _send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> None:
        """Send on this replica's stream of the agent, else forward in the background."""
        if self._streams.send(agent_id, message) or self.forward is None:
            return
        task = asyncio.get_running_loop().create_task(self.forward(agent_id, message))
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

    def requested(self, session: RemoteSession) -> None:
        self._send(
            session.agent_id,
            agent_pb2.CollectorMessage(
                session_requested=agent_pb2.SessionRequested(
                    session_id=session.session_id,
                    engineer=session.engineer,
                    reason=session.reason,
                    duration_ms=session.requested_duration_ms,
                    pending_expires_unix_ms=session.pending_expires_ms,
                    ticket_id=session.ticket_id or 0,
                )
            ),
        )

    def decided(self, session: RemoteSession, decision: str, by: str) -> None:
        self._send(
            session.agent_id,
            agent_pb2.CollectorMessage(
                session_decided=agent_pb2.SessionDecided(
                    session_id=session.session_id, decision=decision, by=by
                )
            ),
        )

    def over(self, session: RemoteSession) -> None:
        """Close the session everywhere: the engineer's connections first (so they see
        why before the host's shell goes away; on other replicas through ``announce``),
        then the agent; watchers at once."""
        reason = session.end_reason or f"the session is {session.state}"
        self._hub.end(session.session_id)
        self._spawn(self._close(session, reason))

    def over_here(self, session_id: str, reason: str) -> None:
        """Another replica ended the session: end its connections and watchers here."""
        self._hub.end(session_id)
        gateway = self.gateway
        if gateway is not None:
            self._spawn(self._end_connections(gateway, session_id, reason))

    async def _end_connections(self, gateway: LiveGateway, session_id: str, reason: str) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, gateway.end_session, session_id, reason
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, session: RemoteSession, reason: str) -> None:
        gateway = self.gateway
        try:
            if gateway is not None:  # closing transports blocks: not on the event loop
                await self._end_connections(gateway, session.session_id, reason)
            if self.announce is not None:  # engineers connected through other replicas
                await self.announce(session.session_id, reason)
                await asyncio.sleep(OTHER_GATEWAYS_GRACE_SECONDS)
        finally:
            self._send(
                session.agent_id,
                agent_pb2.CollectorMessage(
                    session_close=agent_pb2.SessionClose(
                        session_id=session.session_id, reason=reason
                    )
                ),
            )


class SessionAgentMessages:
    """The agents' side of sessions (implements agent_stream.SessionAgentHooks)."""

    def __init__(self, sessions: SessionService) -> None:
        self._sessions = sessions

    async def on_agent_message(self, host: HostRef, message: agent_pb2.AgentMessage) -> None:
        approval = message.session_approval
        await self._sessions.approved_on_host(
            host.agent_id,
            approval.session_id,
            approval.approved_by,
            approval.until_unix_ms or None,
        )

    async def agent_connected(self, agent_id: str) -> None:
        await self._sessions.agent_connected(agent_id)
