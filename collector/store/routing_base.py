"""The routing aggregate of the store: which replica holds which agent, messages for
agents on other replicas, and files every replica serves (docs/replicas.md).

Contract (every backend):
- ``beat_replica`` upserts a replica's row (relay address, heartbeat expiry); a
  replica, and every agent presence naming it, counts only while ``expires_ms > now``.
- ``set_presence`` records that ``replica`` holds ``agent_id``'s stream now (the newest
  hello wins); ``clear_presence`` removes it only if that replica still holds it.
- ``live_presence`` / ``agent_location`` read only rows of live replicas;
  ``live_replicas`` lists the live replicas themselves (id, relay address).
- ``queue_agent_message`` appends to the outbox; ``take_agent_messages`` deletes and
  returns, in order, the rows of the given agents newer than ``newer_than_ms`` (older
  ones are dropped), so each row is handed out at most once across replicas.
- ``put_shared_file`` stores a whole file once (a second put of the same path
  replaces it); ``get_shared_file`` returns its bytes or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AgentLocation", "LiveReplica", "OutboxMessage", "RoutingStore"]


@dataclass(frozen=True)
class AgentLocation:
    """The live replica holding an agent's stream, and where its relay listens."""

    agent_id: str
    replica: str
    relay_address: str


@dataclass(frozen=True)
class LiveReplica:
    """A replica whose heartbeat holds, and where its relay listens ("" if none)."""

    replica: str
    relay_address: str


@dataclass(frozen=True)
class OutboxMessage:
    """One message waiting for an agent (a serialised ``CollectorMessage``)."""

    id: int
    agent_id: str
    message: bytes
    created_ms: int


class RoutingStore(Protocol):
    """Replica presence, the agent outbox and shared files of the store."""

    def beat_replica(self, replica: str, relay_address: str, now_ms: int, ttl_ms: int) -> None:
        """Say ``replica`` is alive until ``now_ms + ttl_ms``."""
        ...

    def drop_replica(self, replica: str) -> None:
        """Forget ``replica`` and every agent presence naming it (a clean stop)."""
        ...

    def set_presence(self, agent_id: str, replica: str, now_ms: int) -> None:
        """``replica`` holds ``agent_id``'s stream from ``now_ms``."""
        ...

    def clear_presence(self, agent_ids: Sequence[str], replica: str) -> None:
        """``replica`` no longer holds these agents' streams (one transaction; no-op
        for an agent another replica holds)."""
        ...

    def live_presence(self, now_ms: int) -> list[AgentLocation]:
        """Every agent held by a live replica."""
        ...

    def live_replicas(self, now_ms: int) -> list[LiveReplica]:
        """Every replica whose heartbeat holds at ``now_ms``, by id."""
        ...

    def agent_location(self, agent_id: str, now_ms: int) -> AgentLocation | None:
        """The live replica holding ``agent_id``, if any."""
        ...

    def queue_agent_message(self, agent_id: str, message: bytes, now_ms: int) -> int:
        """Append a message for ``agent_id`` to the outbox; its id."""
        ...

    def take_agent_messages(
        self, agent_ids: Sequence[str], newer_than_ms: int
    ) -> list[OutboxMessage]:
        """Remove and return the agents' waiting messages (oldest first); drop stale ones."""
        ...

    def put_shared_file(self, path: str, data: bytes, sha256: str, now_ms: int) -> None:
        """Store a complete file under its data-directory path."""
        ...

    def get_shared_file(self, path: str) -> bytes | None:
        """A stored file's bytes, or None."""
        ...
