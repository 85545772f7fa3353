"""Calls gathered into groups on the store thread: every item queued by any task since
the last call goes to the store in one call (one transaction), and each submitter's
future resolves only then (so an ack still means durable).

While one group is in the store, the next one gathers: under load one transaction (one
fsync on SQLite, one commit round trip on PostgreSQL) serves many items; idle, an item
goes alone at once — no timer, no added latency. Used for agent batches
(``collector.server.group_commit``), agents' hellos and stream ends (a reconnect storm of
thousands of agents after a replica restarts or dies).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from collector.store.writer import StoreThread

__all__ = ["MAX_GROUP_ITEMS", "GroupCall"]

log = logging.getLogger(__name__)

MAX_GROUP_ITEMS = 1_000  # default bound when every item counts 1

T = TypeVar("T")
R = TypeVar("R")


class GroupCall(Generic[T, R]):
    """Queues items from any task and hands them to ``fn`` in groups on the store
    thread. ``fn`` takes a group and returns one result per item, in order; if it
    raises, every item of the group gets the exception (``failed`` may turn it into
    results instead). A group holds at most ``max_size`` (the items' ``size``s summed),
    and at least one item."""

    def __init__(
        self,
        db: StoreThread,
        fn: Callable[[Sequence[T]], Sequence[R]],
        name: str,
        max_size: int = MAX_GROUP_ITEMS,
        failed: Callable[[Exception, int], Sequence[R]] | None = None,
    ) -> None:
        self._db = db
        self._fn = fn
        self._name = name
        self._max_size = max_size
        self._failed = failed
        self._queue: list[tuple[T, int, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # store calls made (for tests and the benchmark)

    def submit(self, item: T, size: int = 1) -> asyncio.Future[R]:
        """Queue ``item`` (``size``: its share of a group's bound); the future resolves
        with its result once the group holding it is done."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, size, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._call(self._take_group())

    def _take_group(self) -> list[tuple[T, int, asyncio.Future[R]]]:
        """The oldest queued items, up to the size bound (at least one)."""
        total = 0
        count = 0
        for _, size, _ in self._queue:
            if count and total + size > self._max_size:
                break
            total += size
            count += 1
        group, self._queue = self._queue[:count], self._queue[count:]
        return group

    async def _call(self, group: Sequence[tuple[T, int, asyncio.Future[R]]]) -> None:
        items = [item for item, _, _ in group]
        self.groups += 1
        try:
            results = await self._db.call(self._fn, items)
        except Exception as exc:  # the store itself failed: every submitter hears of it
            log.exception("%s of %d items failed", self._name, len(items))
            if self._failed is None:
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                return
            results = self._failed(exc, len(items))
        for (_, _, future), result in zip(group, results, strict=True):
            if not future.done():  # the stream may have gone meanwhile
                future.set_result(result)
