"""Connected agents' control streams, so other services can send to an agent.

Each open stream has an outbound queue; ``send`` puts a message on the newest
stream of that agent. Only touched from the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from proto import agent_pb2

Outbound = asyncio.Queue[agent_pb2.CollectorMessage | None]


@dataclass(eq=False)
class AgentSession:
    """One open control stream; ``None`` on the queue ends it."""

    agent_id: str
    outbound: Outbound = field(default_factory=asyncio.Queue)


class Sessions:
    """agent id → its current session."""

    def __init__(self) -> None:
        self._sessions: dict[str, AgentSession] = {}

    def open(self, agent_id: str) -> AgentSession:
        """Register a new stream; it supersedes an older one of the same agent."""
        session = AgentSession(agent_id)
        self._sessions[agent_id] = session
        return session

    def close(self, session: AgentSession) -> None:
        if self._sessions.get(session.agent_id) is session:
            del self._sessions[session.agent_id]

    def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        """Queue ``message`` for the agent; False if it is not connected here."""
        session = self._sessions.get(agent_id)
        if session is None:
            return False
        session.outbound.put_nowait(message)
        return True

    def connected(self, agent_id: str) -> bool:
        return agent_id in self._sessions
