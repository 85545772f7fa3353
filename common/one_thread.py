"""One dedicated worker thread for blocking calls, awaited from asyncio, run in order.

Used where a blocking resource must see one caller at a time: the agent's spool
(SQLite) and the collector's store writer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["OneThread"]

P = ParamSpec("P")
T = TypeVar("T")


class OneThread:
    """Runs calls one after another on a single named thread.

    ``call`` awaits a call from the event loop; ``run`` blocks the calling thread
    (for setup and teardown). Exceptions raised by ``fn`` propagate to the caller.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the thread and wait for its result."""
        return self._executor.submit(fn, *args, **kwargs).result()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        """Finish the queued calls, then stop the thread."""
        self._executor.shutdown(wait=True)
