"""Bridge from asyncio to the blocking store: every call runs on one dedicated thread.

Like datasette's single writer: the store sees one caller at a time, in order, and
the event loop never blocks on SQLite's fsync.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from collector.store.base import Store
from common.one_thread import OneThread

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)

SLOW_CALL_SECONDS = 2.0  # a call holding the writer this long is logged


class StoreThread:
    """Runs store methods on a single worker thread and awaits their results.

    ``observe``, when set, is told each call's name and seconds on the writer (the
    collector feeds ``aftercare_store_call_seconds``); a call over SLOW_CALL_SECONDS is
    also logged, since every call queued behind it waited as long."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.observe: Callable[[str, float], None] | None = None
        self._thread = OneThread("store-writer")
        self._folder = OneThread("history-fold") if store.fold_beside_writer else None

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` (normally a bound method of ``self.store``) on the writer."""
        name = getattr(getattr(fn, "func", fn), "__name__", "other")  # partials too
        return await self._thread.call(self._timed, name, functools.partial(fn, *args, **kwargs))

    async def fold_history(
        self, now_ms: int, from_agent: str, max_rows: int
    ) -> tuple[int, str | None]:
        """``Store.fold_history`` on a thread of its own when the store folds beside the
        writer (``Store.fold_beside_writer``; not counted as the writer's time), else
        on the writer like every other call."""
        if self._folder is None:
            return await self.call(self.store.fold_history, now_ms, from_agent, max_rows)
        return await self._folder.call(self.store.fold_history, now_ms, from_agent, max_rows)

    def _timed(self, name: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            seconds = time.perf_counter() - started
            if self.observe is not None:
                self.observe(name, seconds)
            if seconds >= SLOW_CALL_SECONDS:
                log.warning("store call %s held the writer for %.1f s", name, seconds)

    def close(self) -> None:
        """Finish queued calls, then close the store."""
        if self._folder is not None:
            self._folder.shutdown()
        self._thread.shutdown()
        self.store.close()
