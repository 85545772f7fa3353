"""``top_processes``: the processes using the most CPU or memory (psutil)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import psutil

from agent.playbook.builtins.common import (
    MARGIN,
    Host,
    choice_arg,
    duration_arg,
    human,
    int_arg,
    lines_out,
    remaining,
)
from common.safe_text import safe

_Row = tuple[int, str, float, float, int, str]


def top_processes(
    host: Host,
    deadline: float,
    /,
    *,
    by: str = "cpu",
    limit: int | str = 20,
    interval: str | float = "1s",
) -> bytes:
    """The ``limit`` processes using the most CPU (sampled over ``interval``) or RSS."""
    by = choice_arg("by", by, ("cpu", "memory"))
    count = int_arg("limit", limit, 1, 500)
    sample = duration_arg("interval", interval, 0.1, 10)
    processes = list(psutil.process_iter())
    if by == "cpu":
        for process in processes:
            _quietly(process.cpu_percent)
        time.sleep(max(0.0, min(sample, remaining(deadline) - 2 * MARGIN)))
    rows = [row for p in processes if (row := _row(p)) is not None]
    key = 2 if by == "cpu" else 4
    top = heapq.nlargest(count, rows, key=lambda row: float(row[key]))
    memory = psutil.virtual_memory()
    sampled = f" over {sample:g}s" if by == "cpu" else ""
    lines = [
        f"top {len(top)} of {len(rows)} processes by {by}{sampled}; "
        f"memory {human(memory.total)} total, {human(memory.available)} available",
        f"{'PID':>7} {'USER':<12} {'%CPU':>6} {'%MEM':>5} {'RSS':>8}  COMMAND",
    ]
    for pid, user, cpu, mem, rss, command in top:
        lines.append(f"{pid:>7} {user[:12]:<12} {cpu:>6.1f} {mem:>5.1f} {human(rss):>8}  {command}")
    return lines_out(lines)


def _row(process: psutil.Process) -> _Row | None:
    try:
        with process.oneshot():
            cpu = process.cpu_percent()
            rss = process.memory_info().rss
            mem = process.memory_percent()
            user = process.username()
            command = " ".join(process.cmdline()) or f"[{process.name()}]"
    except (psutil.Error, OSError):
        return None
    # One row per process: a newline or control sequence in argv must not forge rows.
    return process.pid, safe(user), cpu, mem, rss, safe(command[:200])


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except (psutil.Error, OSError):
        return
