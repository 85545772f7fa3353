"""Group commit of agent batches: the single store writer takes every batch queued by
every stream since its last commit, stores them in one transaction, and only then
resolves each submitter's future (so an ack still means durable).

While one group commits, the next one gathers: under load a commit (one fsync on
SQLite, one round trip on PostgreSQL) serves many batches; idle, a batch commits alone
at once — no timer, no added latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from collector.store import BatchOutcome, IncomingBatch
from collector.store.writer import StoreThread

log = logging.getLogger(__name__)

MAX_GROUP_SAMPLES = 100_000  # bound one transaction's size (and the writer's time in it)


class GroupCommitter:
    """Queues batches from any stream and stores them in groups on the store writer."""

    def __init__(self, db: StoreThread, max_group_samples: int = MAX_GROUP_SAMPLES) -> None:
        self._db = db
        self._max_group_samples = max_group_samples
        self._queue: list[tuple[IncomingBatch, int, asyncio.Future[BatchOutcome]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # commits done (for tests and the benchmark)

    def submit(self, batch: IncomingBatch, samples: int) -> asyncio.Future[BatchOutcome]:
        """Queue ``batch`` (``samples``: its size, to bound groups); the future resolves
        with its outcome once the group holding it is committed."""
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, samples, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="group-commit")
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._commit(self._take_group())

    def _take_group(self) -> list[tuple[IncomingBatch, int, asyncio.Future[BatchOutcome]]]:
        """The oldest queued batches, up to the sample bound (at least one)."""
        total = 0
        count = 0
        for _, samples, _ in self._queue:
            if count and total + samples > self._max_group_samples:
                break
            total += samples
            count += 1
        group, self._queue = self._queue[:count], self._queue[count:]
        return group

    async def _commit(
        self, group: Sequence[tuple[IncomingBatch, int, asyncio.Future[BatchOutcome]]]
    ) -> None:
        batches = [batch for batch, _, _ in group]
        try:
            outcomes = await self._db.call(self._db.store.store_batches, batches)
        except Exception as exc:  # the store itself failed: every submitter hears of it
            log.exception("group commit of %d batches failed", len(batches))
            outcomes = [BatchOutcome(False, error=exc)] * len(batches)
        self.groups += 1
        for (_, _, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():  # the stream may have gone meanwhile
                future.set_result(outcome)
