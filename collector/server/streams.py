"""Connected agents' control streams, so other services can send to an agent.

Each open stream has an outbound queue; ``send`` puts a message on the newest
stream of that agent; ``cut_off`` ends an agent's stream with an error (revoked).
Only touched from the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from collector.errors import CollectorError
from proto import agent_pb2

Outbound = asyncio.Queue[agent_pb2.CollectorMessage | None]


@dataclass(eq=False)
class OpenStream:
    """One open control stream; ``None`` on the queue ends it.

    ``ended`` is set (with ``None`` queued) when the collector cuts the stream off:
    from then on nothing the agent sends is handled, and the stream ends with it.
    """

    agent_id: str
    outbound: Outbound = field(default_factory=asyncio.Queue)
    ended: CollectorError | None = None


class Streams:
    """agent id → its current stream."""

    def __init__(self) -> None:
        self._streams: dict[str, OpenStream] = {}
        self._all: dict[str, set[OpenStream]] = {}  # superseded ones too, until they end

    def open(self, agent_id: str) -> OpenStream:
        """Register a new stream; it supersedes an older one of the same agent."""
        stream = OpenStream(agent_id)
        self._streams[agent_id] = stream
        self._all.setdefault(agent_id, set()).add(stream)
        return stream

    def close(self, stream: OpenStream) -> None:
        if self._streams.get(stream.agent_id) is stream:
            del self._streams[stream.agent_id]
        streams = self._all.get(stream.agent_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._all[stream.agent_id]

    def cut_off(self, agent_id: str, reason: CollectorError) -> int:
        """End every open stream of the agent with ``reason``; how many there were."""
        self._streams.pop(agent_id, None)
        streams = self._all.pop(agent_id, set())
        for stream in streams:
            stream.ended = reason
            stream.outbound.put_nowait(None)
        return len(streams)

    def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        """Queue ``message`` for the agent; False if it is not connected here."""
        stream = self._streams.get(agent_id)
        if stream is None:
            return False
        stream.outbound.put_nowait(message)
        return True

    def connected(self, agent_id: str) -> bool:
        return agent_id in self._streams

    def agent_ids(self) -> list[str]:
        """The agents with a current stream here."""
        return list(self._streams)
