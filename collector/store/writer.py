"""Bridge from asyncio to the blocking store: every call runs on one dedicated thread.

Like datasette's single writer: the store sees one caller at a time, in order, and
the event loop never blocks on SQLite's fsync.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from collector.store.base import Store

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """Runs store methods on a single worker thread and awaits their results."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` (normally a bound method of ``self.store``) on the writer."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Finish queued calls, then close the store."""
        self._executor.shutdown(wait=True)
        self.store.close()
