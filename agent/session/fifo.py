"""A bounded FIFO between producers and one consumer on the event loop, that can be closed.

``put`` waits while ``limit`` items are queued (backpressure: a fast producer is
slowed to the consumer's pace); ``force`` queues regardless of the bound (small
control items that must keep their order after data, and must never wait). After
``close`` nothing is queued any more and no producer waits: ``put`` and ``force``
return False at once. ``get`` hands out what was queued before the close (unless
``close(drop=True)``) and then None. ``release_producers`` is the first half of a
close: waiting and later ``put`` calls return False, ``force`` still queues.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

__all__ = ["Fifo"]

T = TypeVar("T")


class Fifo(Generic[T]):
    """Items in order; at most ``limit`` queued by ``put`` (``force`` may exceed it)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: collections.deque[T] = collections.deque()
        self._room = asyncio.Event()
        self._ready = asyncio.Event()
        self._closed = False
        self._releasing = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> bool:
        """Queue ``item`` once there is room; False (dropped) if closed or released meanwhile."""
        while not (self._closed or self._releasing) and len(self._items) >= self._limit:
            self._room.clear()
            await self._room.wait()
        return False if self._releasing else self.force(item)

    def force(self, item: T) -> bool:
        """Queue ``item`` now, whatever the bound; False (dropped) if closed."""
        if self._closed:
            return False
        self._items.append(item)
        self._ready.set()
        return True

    async def get(self) -> T | None:
        """The next item; None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        self._room.set()
        return item

    def release_producers(self) -> None:
        """From now on ``put`` drops its item at once (waiting ones too); ``force`` still works."""
        self._releasing = True
        self._room.set()

    def close(self, *, drop: bool = False) -> None:
        """Stop accepting items and release waiting producers; ``drop`` discards the queue."""
        self._closed = True
        if drop:
            self._items.clear()
        self._room.set()
        self._ready.set()
