"""Process count and zombie count from the state field of /proc/<pid>/stat.

This is the one check whose cost grows with the host (one small read per process),
so it avoids psutil and text decoding: it lists /proc once and reads each ``stat``
with raw ``os.open``/``os.read``. Processes that exit while being counted are skipped.
"""

from __future__ import annotations

import os

from agent.sampler.model import Sample, gauge
from agent.sampler.procfs import PROC

_RDONLY = os.O_RDONLY | os.O_CLOEXEC


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


def processes(*, proc: str = PROC) -> list[Sample]:
    """``processes_total`` and ``processes_zombie`` (state Z), threads not counted."""
    total = zombies = 0
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        state = _state(f"{proc}/{name}/stat")
        if state is None:
            continue
        total += 1
        if state == ord("Z"):
            zombies += 1
    return [gauge("processes_total", total), gauge("processes_zombie", zombies)]
