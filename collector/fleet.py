"""In-memory view of the agents this collector replica serves: who is connected, latest values.

The store is the source of truth; this view is what ``/metrics`` and the API read
on every request without touching the database. Thread-safe (the metrics HTTP
server reads it from its own thread). With several replicas, ``elsewhere`` lists the
agents whose stream another live replica holds (refreshed by ``collector.presence``
every heartbeat), so "connected" means connected to any replica.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from collector.store import AgentRecord, SampleRow, StoredSample


@dataclass(frozen=True)
class HostState:
    """One agent as seen by this replica."""

    agent_id: str
    customer: str
    hostname: str
    agent_version: str = ""
    connections: int = 0
    last_seen_ms: int | None = None
    collected_ms: int | None = None
    samples: Sequence[StoredSample] = field(default_factory=tuple)  # a compact SampleRow
    elsewhere: bool = False  # another live replica holds its stream

    @property
    def connected(self) -> bool:
        """Connected to this replica or, as far as the last heartbeat knows, another."""
        return self.connections > 0 or self.elsewhere


class Fleet:
    """Connection counts and the latest samples per agent, keyed by agent id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, HostState] = {}
        self._elsewhere: frozenset[str] = frozenset()

    def load(
        self, agent: AgentRecord, collected_ms: int | None, samples: Sequence[StoredSample]
    ) -> None:
        """Seed the view from the store at start-up (not connected)."""
        with self._lock:
            self._hosts[agent.agent_id] = HostState(
                agent.agent_id,
                agent.customer,
                agent.hostname,
                agent.agent_version,
                0,
                agent.last_seen_ms,
                collected_ms,
                SampleRow.of(samples),
            )

    def connected(self, agent: AgentRecord, hostname: str, version: str, now_ms: int) -> None:
        """An agent stream said hello."""
        with self._lock:
            old = self._hosts.get(agent.agent_id) or HostState(
                agent.agent_id, agent.customer, hostname
            )
            self._hosts[agent.agent_id] = replace(
                old,
                hostname=hostname,
                agent_version=version,
                connections=old.connections + 1,
                last_seen_ms=now_ms,
            )

    def disconnected(self, agent_id: str, now_ms: int) -> None:
        """An agent stream ended."""
        with self._lock:
            old = self._hosts.get(agent_id)
            if old is not None:
                self._hosts[agent_id] = replace(
                    old, connections=max(0, old.connections - 1), last_seen_ms=now_ms
                )

    def observed(
        self, agent_id: str, collected_ms: int, samples: Sequence[StoredSample], now_ms: int
    ) -> None:
        """A batch arrived; keep its samples if it is the newest collected."""
        with self._lock:
            old = self._hosts.get(agent_id)
            if old is None:
                return
            if old.collected_ms is None or collected_ms >= old.collected_ms:
                old = replace(old, collected_ms=collected_ms, samples=SampleRow.of(samples))
            self._hosts[agent_id] = replace(old, last_seen_ms=now_ms)

    def forget(self, agent_id: str) -> None:
        """Drop an agent (revoked)."""
        with self._lock:
            self._hosts.pop(agent_id, None)

    def connected_elsewhere(self, agent_ids: frozenset[str]) -> None:
        """The agents other live replicas hold now (replaces the previous set)."""
        with self._lock:
            self._elsewhere = agent_ids

    def get(self, agent_id: str) -> HostState | None:
        with self._lock:
            return self._with_elsewhere(self._hosts.get(agent_id))

    def snapshot(self) -> list[HostState]:
        """Every known host, ordered by customer and hostname."""
        with self._lock:
            hosts = [self._with_elsewhere(h) for h in self._hosts.values()]
        return sorted(
            (h for h in hosts if h is not None), key=lambda h: (h.customer, h.hostname, h.agent_id)
        )

    def _with_elsewhere(self, state: HostState | None) -> HostState | None:
        if state is None or state.agent_id not in self._elsewhere:
            return state
        return replace(state, elsewhere=True)
