"""One cycle's probes, drained in order by as few worker threads ("lanes") as possible.

Running every probe on its own thread costs more CPU in thread hand-offs and GIL
contention than the probes themselves (most read one small /proc file). So a cycle
starts with one lane that runs the probes one after another. The runner watches the
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


def run_probe(probe: Probe) -> Outcome:
    """Run ``probe`` to completion; anything it raises becomes the outcome's error."""
    start = time.perf_counter()
    try:
        samples = list(probe())
    except BaseException as exc:  # a check must never take its worker down
        return Outcome([], describe(exc), time.perf_counter() - start)
    return Outcome(samples, None, time.perf_counter() - start)


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
        self.done = threading.Event()
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
