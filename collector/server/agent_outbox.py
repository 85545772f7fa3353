"""Messages for agents connected to another replica, routed through the shared store.

``AgentRouter.send`` first tries this replica's streams; if the agent's stream is held
by another live replica (``collector.presence``), the serialised ``CollectorMessage``
goes into the store's ``agent_outbox`` and the other replicas are woken (PostgreSQL
NOTIFY). Every replica drains the outbox for the agents connected to it when woken,
every ``poll_ms`` (so a lost NOTIFY only delays), and when an agent says hello. A
message older than ``max_age_ms`` is dropped (its run then expires as unanswered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from collector.errors import StoreError
from collector.presence import Presence
from collector.server.streams import Streams
from collector.store.writer import StoreThread
from proto import agent_pb2

__all__ = ["AgentRouter", "Wakeups"]

log = logging.getLogger(__name__)

MAX_AGE_MS = 10 * 60_000


class Wakeups(Protocol):
    """How replicas wake each other (``collector.store.pg_notify.PgWakeups``)."""

    woken: asyncio.Event

    def notify(self) -> Awaitable[None]:
        """Wake the other replicas."""
        ...


class AgentRouter:
    """Send to an agent on whichever replica holds its stream."""

    def __init__(
        self,
        db: StoreThread,
        streams: Streams,
        presence: Presence,
        wakeups: Wakeups,
        clock_ms: Callable[[], int],
        poll_ms: int,
        max_age_ms: int = MAX_AGE_MS,
    ) -> None:
        self._db = db
        self._streams = streams
        self._presence = presence
        self._wakeups = wakeups
        self._clock_ms = clock_ms
        self._poll_ms = poll_ms
        self._max_age_ms = max_age_ms
        self._to_drain: set[str] = set()  # agents connected here, their outbox not read yet
        self._draining: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # done when _to_drain was read
        self.drains = 0  # outbox reads so far (tests count them)

    async def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        """Queue ``message`` for the agent here or on its replica; False if no live
        replica holds it."""
        if self._streams.send(agent_id, message):
            return True
        location = await self._presence.locate(agent_id)
        if location is None or location.replica == self._presence.replica:
            return False
        body = message.SerializeToString()
        await self._db.call(self._db.store.queue_agent_message, agent_id, body, self._clock_ms())
        await self._wakeups.notify()
        log.info("message for agent %s queued for replica %s", agent_id, location.replica)
        return True

    async def drain(self, agent_ids: Sequence[str] | None = None) -> int:
        """Send the waiting messages of ``agent_ids`` (default: every agent connected
        here) on their streams; how many were sent."""
        ids = list(self._streams.agent_ids() if agent_ids is None else agent_ids)
        if not ids:  # no write transaction for nothing (stale rows go at the next drain)
            return 0
        now = self._clock_ms()
        self.drains += 1
        taken = await self._db.call(self._db.store.take_agent_messages, ids, now - self._max_age_ms)
        sent = 0
        for item in taken:
            message = agent_pb2.CollectorMessage.FromString(item.message)
            if self._streams.send(item.agent_id, message):
                sent += 1
            else:  # the agent left meanwhile: put it back for its next replica
                await self._db.call(
                    self._db.store.queue_agent_message, item.agent_id, item.message, item.created_ms
                )
        return sent

    async def drain_connected(self, agent_id: str) -> None:
        """Send what waits for ``agent_id``, which just connected here; returns once its
        messages were read. Agents connecting together share one outbox read (a
        reconnect storm read it once per agent before). A store error is logged: the
        periodic drain delivers later."""
        loop = asyncio.get_running_loop()
        self._to_drain.add(agent_id)
        if self._drained is None:
            self._drained = loop.create_future()
        drained = self._drained
        if self._draining is None or self._draining.done():
            self._draining = loop.create_task(self._drain_connected())
        await asyncio.shield(drained)  # a stream that ends does not stop the others'

    async def _drain_connected(self) -> None:
        """Read the outbox for the agents waiting, a round at a time, until none wait;
        each round wakes the agents it read for."""
        while self._to_drain:
            agent_ids = sorted(self._to_drain)
            self._to_drain.clear()
            drained, self._drained = self._drained, None
            try:
                await self.drain(agent_ids)
            except StoreError as exc:
                log.warning("could not read the outbox of %d agents: %s", len(agent_ids), exc)
            finally:
                if drained is not None:
                    drained.set_result(None)

    async def run_forever(self) -> None:
        """Drain when woken, and every ``poll_ms`` anyway, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):  # the poll: a lost NOTIFY only delays
                await asyncio.wait_for(self._wakeups.woken.wait(), self._poll_ms / 1000)
            self._wakeups.woken.clear()
            try:
                await self.drain()
            except StoreError as exc:
                log.warning("could not read the agent outbox (retrying): %s", exc)
