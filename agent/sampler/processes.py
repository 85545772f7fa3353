"""Process and zombie counts from /proc, refreshed within a CPU budget.

Counting needs a listing of /proc and the state field of every /proc/<pid>/stat:
12-15 us of (mostly kernel) CPU per process, so even a quiet host with 70 processes
would spend on it as much as on all other checks together. So a pass keeps to a
budget: after a pass that took C seconds of CPU, the next
``ceil(C / scan_budget) - 1`` cycles (at most ``max_stale_cycles``) repeat its
counts. With the default 0.1 ms a host with 70 processes (about 1 ms a pass)
counts every 10th cycle; one with 1,000 processes every 21st (the cap). Process and
zombie counts move slowly, so counts a few cycles old are fine.
"""

from __future__ import annotations

import math
import os
import time

from agent.sampler.model import Sample, gauge
from agent.sampler.procfs import PROC
from common.clock import Clock

_RDONLY = os.O_RDONLY | os.O_CLOEXEC
_ZOMBIE = ord("Z")


def _state(path: str) -> int | None:
    """The state letter (as a byte) of a ``stat`` file, or ``None`` if it vanished."""
    try:
        fd = os.open(path, _RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 512)
    except OSError:
        return None
    finally:
        os.close(fd)
    # "pid (comm) S ..." - comm may contain spaces and parentheses, so look from the right.
    end = data.rfind(b")")
    return data[end + 2] if 0 < end < len(data) - 2 else None


def list_pids(proc: str = PROC) -> list[str]:
    """Process ids present in ``proc`` (threads are not listed there)."""
    return [name for name in os.listdir(proc) if name.isdigit()]


def count_zombies(pids: list[str], proc: str = PROC) -> int:
    """How many of ``pids`` are in state Z; processes that exit meanwhile are skipped."""
    return sum(1 for pid in pids if _state(f"{proc}/{pid}/stat") == _ZOMBIE)


class ProcessCheck:
    """Stateful check; ``cpu_clock`` (CPU seconds of the calling thread) is injectable."""

    def __init__(
        self,
        *,
        proc: str = PROC,
        scan_budget: float = 0.0001,
        max_stale_cycles: int = 20,
        cpu_clock: Clock = time.thread_time,
    ) -> None:
        self._proc = proc
        self._budget = scan_budget
        self._max_stale = max_stale_cycles
        self._cpu_clock = cpu_clock
        self._counts: tuple[int, int] | None = None  # (processes, zombies) of the last pass
        self._skip = 0

    def __call__(self) -> list[Sample]:
        """``processes_total`` and ``processes_zombie`` (state Z), threads not counted."""
        if self._counts is not None and self._skip > 0:
            self._skip -= 1
            total, zombies = self._counts
        else:
            start = self._cpu_clock()
            pids = list_pids(self._proc)
            total, zombies = len(pids), count_zombies(pids, self._proc)
            cost = self._cpu_clock() - start
            self._skip = min(self._max_stale, max(0, math.ceil(cost / self._budget) - 1))
            self._counts = (total, zombies)
        return [gauge("processes_total", total), gauge("processes_zombie", zombies)]
