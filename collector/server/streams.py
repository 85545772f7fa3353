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
class OpenStream:
    """One open control stream; ``None`` on the queue ends it."""

    agent_id: str
    outbound: Outbound = field(default_factory=asyncio.Queue)


class Streams:
    """agent id → its current stream."""

    def __init__(self) -> None:
        self._streams: dict[str, OpenStream] = {}

    def open(self, agent_id: str) -> OpenStream:
        """Register a new stream; it supersedes an older one of the same agent."""
        stream = OpenStream(agent_id)
        self._streams[agent_id] = stream
        return stream

    def close(self, stream: OpenStream) -> None:
        if self._streams.get(stream.agent_id) is stream:
            del self._streams[stream.agent_id]

    def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        """Queue ``message`` for the agent; False if it is not connected here."""
        stream = self._streams.get(agent_id)
        if stream is None:
            return False
        stream.outbound.put_nowait(message)
        return True

    def connected(self, agent_id: str) -> bool:
        return agent_id in self._streams
