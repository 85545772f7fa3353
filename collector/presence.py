"""Which replica holds which agent: this replica's heartbeat and its agents' presence.

Every replica sharing a PostgreSQL store beats (``replicas`` row, with the address of
its replica relay) every ``interval`` and records, on each agent hello and stream end,
that it holds (or no longer holds) that agent (``agent_presence``). A row counts only
while its replica's heartbeat holds (``HEARTBEAT_INTERVALS`` intervals), so a replica
killed with ``kill -9`` stops counting for its agents within that time, and an agent
that reconnects elsewhere is claimed by its new replica at once (the newest hello
wins). Each beat also refreshes the fleet's view of agents connected elsewhere, so
``aftercare agents`` on any replica shows every connected agent.

A store error while beating is logged and retried on the next beat: the replica keeps
serving its own agents; others see them again once a beat succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from collector.errors import StoreError
from collector.fleet import Fleet
from collector.store.group_call import GroupCall
from collector.store.routing_base import AgentLocation, LiveReplica
from collector.store.writer import StoreThread

__all__ = ["HEARTBEAT_INTERVALS", "Presence"]

log = logging.getLogger(__name__)

# A heartbeat holds this many beat intervals: one lost beat is forgiven.
HEARTBEAT_INTERVALS = 3


class Presence:
    """This replica's presence rows in the shared store."""

    def __init__(
        self,
        db: StoreThread,
        fleet: Fleet,
        replica: str,
        relay_address: str,
        interval_ms: int,
        clock_ms: Callable[[], int],
        held: Callable[[], list[str]] = list,
    ) -> None:
        """``relay_address``: HOST:PORT other replicas dial for sessions ("" if none);
        ``held``: the agents whose streams this replica holds now (re-claimed by a beat
        when no live replica claims them, e.g. after a store outage at their hello)."""
        if interval_ms <= 0:
            raise ValueError(f"a heartbeat interval must be positive, not {interval_ms} ms")
        self._db = db
        self._fleet = fleet
        self.replica = replica
        self.relay_address = relay_address
        self.interval_ms = interval_ms
        self._clock_ms = clock_ms
        self._held = held
        self._releases: GroupCall[str, None] = GroupCall(db, self._release, "presence-release")

    async def beat(self) -> None:
        """Renew this replica's heartbeat and refresh who is connected elsewhere."""
        store = self._db.store
        now = self._clock_ms()
        ttl = HEARTBEAT_INTERVALS * self.interval_ms
        await self._db.call(store.beat_replica, self.replica, self.relay_address, now, ttl)
        live = await self._db.call(store.live_presence, now)
        claimed = {loc.agent_id for loc in live}
        for agent_id in self._held():
            if agent_id not in claimed:
                await self._db.call(store.set_presence, agent_id, self.replica, now)
        elsewhere = frozenset(loc.agent_id for loc in live if loc.replica != self.replica)
        unknown = sorted(a for a in elsewhere if self._fleet.get(a) is None)  # enrolled since
        if unknown:  # one read, however many hosts enrolled since the last beat
            for agent in await self._db.call(store.get_agents, unknown):
                if agent is not None and agent.revoked_ms is None:
                    self._fleet.load(agent, None, [])
        self._fleet.connected_elsewhere(elsewhere)

    async def run_forever(self) -> None:
        """Beat every interval until cancelled."""
        while True:
            try:
                await self.beat()
            except StoreError as exc:
                log.warning("replica heartbeat failed (retrying): %s", exc)
            await asyncio.sleep(self.interval_ms / 1000)

    async def agent_connected(self, agent_id: str) -> None:
        """An agent said hello on this replica."""
        await self._db.call(self._db.store.set_presence, agent_id, self.replica, self._clock_ms())

    async def agent_disconnected(self, agent_id: str) -> None:
        """An agent's last stream on this replica ended (stream ends arriving together
        are released in one transaction)."""
        await self._releases.submit(agent_id)

    def _release(self, agent_ids: Sequence[str]) -> list[None]:
        """Store thread: drop this replica's presence rows of ``agent_ids``."""
        self._db.store.clear_presence(agent_ids, self.replica)
        return [None] * len(agent_ids)

    async def other_replicas(self) -> list[LiveReplica]:
        """The other live replicas (their relay addresses)."""
        live = await self._db.call(self._db.store.live_replicas, self._clock_ms())
        return [r for r in live if r.replica != self.replica]

    async def locate(self, agent_id: str) -> AgentLocation | None:
        """The live replica holding ``agent_id`` now (this one included), if any."""
        return await self._db.call(self._db.store.agent_location, agent_id, self._clock_ms())

    async def stop(self) -> None:
        """A clean stop: drop this replica's rows at once (agents reconnect elsewhere)."""
        await self._db.call(self._db.store.drop_replica, self.replica)
