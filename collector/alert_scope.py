"""Which rule alerts one collector replica turns into tickets (docs/replicas.md).

With replicas on one database every alert key has exactly one owner at a time:

- **sample rules** of a host belong to the replica holding the host's stream (an
  agent streams to one replica at a time, and only that replica's rule engine
  receives its samples);
- **heartbeat rules** of every host belong to the leader: they need only the host's
  last-seen time, which every replica writes to the shared store with each batch.

A replica reconciles (opens, re-fires, recovers) only the alerts its scope covers;
a ticket whose key it does not cover is left to its owner. When a key comes into a
replica's scope (a host connected here, or this replica became the leader), the
replica adopts the key's stored firing ticket and gives its rules the settle time
before recovering it, as after a restart. Opening a ticket is atomic in the store
(one active ticket per customer and key), so an owner change that overlaps for a
moment cannot open a second ticket.

Pure: no store, no gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["EvaluationScope", "replica_scope"]


@dataclass(frozen=True)
class EvaluationScope:
    """The sample-rule hosts (``hosts``, agent ids) and whether heartbeats (of every
    host) are this replica's."""

    hosts: frozenset[str]
    heartbeats: bool

    def covers(self, agent_id: str | None, heartbeat: bool) -> bool:
        """Whether this replica reconciles the alert of ``agent_id``'s rule."""
        if heartbeat:
            return self.heartbeats
        return agent_id is not None and agent_id in self.hosts

    def gained(self, before: EvaluationScope) -> EvaluationScope:
        """What this scope covers that ``before`` did not (to adopt stored tickets)."""
        return EvaluationScope(self.hosts - before.hosts, self.heartbeats and not before.heartbeats)

    def empty(self) -> bool:
        """Covers nothing."""
        return not self.hosts and not self.heartbeats


def replica_scope(
    agent_ids: Iterable[str], held_here: Callable[[str], bool], leading: bool
) -> EvaluationScope:
    """The scope of a replica: the agents whose stream it holds, heartbeats if it leads."""
    return EvaluationScope(frozenset(a for a in agent_ids if held_here(a)), leading)
