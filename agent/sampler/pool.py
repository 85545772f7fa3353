"""A small, persistent, elastic pool of daemon worker threads for probes.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at
interpreter exit, so one probe stuck in the kernel (statvfs on a dead NFS mount)
would keep the agent from exiting; and a fixed-size pool lets hung probes starve
the healthy ones. Here workers are daemon threads, reused across cycles, and a new
worker is started whenever a task is submitted while none is idle (up to
``max_workers``), so a hung worker only ever costs one thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

_Task = Callable[[], None]
_STOP: None = None


class WorkerPool:
    """Runs callables on reusable daemon threads and returns their futures."""

    def __init__(self, *, max_workers: int = 64, name: str = "sampler") -> None:
        self._max_workers = max_workers
        self._name = name
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    @property
    def thread_count(self) -> int:
        """Number of worker threads alive (idle, busy or hung)."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return len(self._threads)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Schedule ``fn``; its result or exception lands in the returned future."""
        future: Future[T] = Future()

        def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        with self._lock:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                self._start_worker()
            self._tasks.put(task)
        return future

    def close(self) -> None:
        """Ask every worker to exit once its current task ends; idempotent, no waiting."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._tasks.put(_STOP)

    def _start_worker(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not _STOP:
            task()
            with self._lock:
                self._idle += 1
