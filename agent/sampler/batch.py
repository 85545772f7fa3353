"""One cycle's blocking probes, drained in order by as few worker threads ("lanes") as possible.

Running every probe on its own thread costs more CPU in thread hand-offs and GIL
contention than the probes themselves (one ``statvfs`` each). So a cycle starts with
one lane that runs the probes one after another. The runner watches the
lanes: when every lane has been stuck on one probe for longer than the stall limit
while probes are still waiting, it adds a lane, so a hung probe delays the rest by
at most that limit and then keeps only its own thread.

When the cycle's time is up (or all is done), ``close()`` stops the lanes from taking
more work and tells the runner what finished, what is still running and what never
started.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

from agent.sampler.model import Probe, Sample
from agent.sampler.pool import Task


class Outcome(NamedTuple):
    """What one probe produced: samples, or an error text; and its run time."""

    samples: list[Sample]
    error: str | None
    seconds: float


class Settled(NamedTuple):
    """A closed batch: finished outcomes, still running (key -> start), never started."""

    outcomes: dict[str, Outcome]
    running: dict[str, float]
    unstarted: list[str]


def describe(exc: BaseException) -> str:
    """Human-readable one-liner for an exception: ``"PermissionError: ..."``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_probe(probe: Probe, contain: type[BaseException] = BaseException) -> Outcome:
    """Run ``probe`` to completion; what it raises (of ``contain``) becomes the error.

    Lanes contain everything: a check must never take its worker down. The collecting
    thread contains only ``Exception`` so that ``KeyboardInterrupt`` still reaches it.
    """
    start = time.perf_counter()
    try:
        samples = list(probe())
    except contain as exc:
        return Outcome([], describe(exc), time.perf_counter() - start)
    return Outcome(samples, None, time.perf_counter() - start)


class Latch:
    """A one-shot flag with a single waiter: ``threading.Event`` without its Condition.

    A lock held from the start, released by ``set()`` (to be called at most once). Made
    once per cycle, it costs a fraction of an Event, whose Condition constructor raises
    and catches three AttributeErrors - dear once the caches have gone cold between
    cycles. Only the runner thread calls ``wait`` and ``is_set``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Raise the flag, waking the waiter."""
        self._lock.release()

    def is_set(self) -> bool:
        """Whether ``set()`` was called."""
        return not self._lock.locked()

    def wait(self, timeout: float) -> bool:
        """Block until the flag is raised or ``timeout`` seconds pass; return the flag."""
        if self._lock.acquire(timeout=timeout):
            self._lock.release()
            return True
        return False


class Batch:
    """A queue of keyed probes shared by the lanes working on it."""

    def __init__(self, probes: Mapping[str, Probe]) -> None:
        self._pending: deque[tuple[str, Probe]] = deque(probes.items())
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}
        self._progress: list[float | None] = []  # per lane: last start, None once exited
        self._remaining = len(self._pending)
        self._open = True
        self._outcomes: dict[str, Outcome] = {}
        self.done = Latch()
        if not self._remaining:
            self.done.set()

    def add_lane(self) -> Task:
        """Register a new lane and return the task that drives it."""
        with self._lock:
            self._progress.append(time.monotonic())
            return partial(self._drain, len(self._progress) - 1)

    def stalled(self, stall_after: float) -> bool:
        """True when probes wait but every live lane is stuck longer than ``stall_after``."""
        now = time.monotonic()
        with self._lock:
            if not (self._pending and self._open):
                return False
            return all(now - since > stall_after for since in self._progress if since is not None)

    def is_running(self, key: str) -> bool:
        """Whether the probe ``key`` is still executing (possibly after ``close``)."""
        with self._lock:
            return key in self._running

    def close(self) -> Settled:
        """Stop handing out probes; report what finished, what runs, what never started.

        Probes still running keep going; their late outcomes are not reported.
        """
        with self._lock:
            self._open = False
            unstarted = [key for key, _ in self._pending]
            self._pending.clear()
            return Settled(dict(self._outcomes), dict(self._running), unstarted)

    def _drain(self, lane: int) -> None:
        while True:
            with self._lock:
                if not (self._pending and self._open):
                    self._progress[lane] = None
                    return
                key, probe = self._pending.popleft()
                self._running[key] = self._progress[lane] = time.monotonic()
            outcome = run_probe(probe)
            with self._lock:
                del self._running[key]
                self._outcomes[key] = outcome
                self._remaining -= 1
                if not self._remaining:
                    self.done.set()
