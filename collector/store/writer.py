"""Bridge from asyncio to the blocking store: every call runs on one dedicated thread.

Like datasette's single writer: the store sees one caller at a time, in order, and
the event loop never blocks on SQLite's fsync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from collector.store.base import Store
from common.one_thread import OneThread

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """Runs store methods on a single worker thread and awaits their results."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread = OneThread("store-writer")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` (normally a bound method of ``self.store``) on the writer."""
        return await self._thread.call(fn, *args, **kwargs)

    def close(self) -> None:
        """Finish queued calls, then close the store."""
        self._thread.shutdown()
        self.store.close()
