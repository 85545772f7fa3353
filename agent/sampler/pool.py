"""A small, persistent, elastic pool of daemon worker threads.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at
interpreter exit, so one call stuck in the kernel (statvfs on a dead NFS mount)
would keep the agent from exiting; and a fixed-size pool lets stuck calls starve
the healthy ones. Here workers are daemon threads reused across cycles, and a new
one is started whenever work is submitted while none is idle (up to
``max_workers``; beyond that work waits in the queue), so a stuck call only ever
costs one thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

Task = Callable[[], None]
"""Work for a thread; it must not raise (exceptions are the submitter's business)."""


class WorkerPool:
    """Runs tasks on reusable daemon threads."""

    def __init__(self, *, max_workers: int = 64, name: str = "sampler") -> None:
        self._max_workers = max_workers
        self._name = name
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # workers waiting for a task, minus tasks queued for them
        self._closed = False

    @property
    def thread_count(self) -> int:
        """Number of worker threads alive (idle, busy or stuck)."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return len(self._threads)

    def submit(self, task: Task) -> None:
        """Run ``task`` on an idle worker, or a new one; raises if the pool is closed."""
        with self._lock:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                self._start_worker()
            self._tasks.put(task)

    def close(self) -> None:
        """Ask every worker to exit once its current task ends; idempotent, no waiting."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)

    def _start_worker(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            with contextlib.suppress(Exception):  # a faulty task must not cost a worker
                task()
            with self._lock:
                self._idle += 1
