"""CPU utilisation ratios per core and in total, from the deltas of /proc/stat.

Ratios cover the interval since the previous cycle. The first cycle (no previous
reading) reports averages since boot, so every batch carries the CPU metrics. When
no clock tick elapsed for a CPU between two cycles, its previous ratios are repeated.

Modes are folded so they sum to 1: ``user`` = user + nice (guest time is already
inside user/nice), ``system`` = system + irq + softirq, then ``idle``, ``iowait`` and
``steal``. ``cpu_usage_ratio`` = 1 - (idle + iowait) / total.
"""

from __future__ import annotations

from agent.sampler.model import Sample, gauge
from agent.sampler.procfs import PROC, read_text

MODES = ("user", "system", "idle", "iowait", "steal")

Ticks = tuple[int, int, int, int, int]
"""Folded jiffies per mode, in ``MODES`` order."""
_ZERO: Ticks = (0, 0, 0, 0, 0)


def parse_stat(text: str) -> dict[str, Ticks]:
    """Map ``"total"`` and each core number (``"0"``...) to folded mode ticks."""
    cpus: dict[str, Ticks] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            break
        fields = line.split()
        values = [int(v) for v in fields[1:9]] + [0] * (9 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = values
        key = fields[0][3:] or "total"
        cpus[key] = (user + nice, system + irq + softirq, idle, iowait, steal)
    return cpus


def mode_ratios(now: Ticks, before: Ticks) -> tuple[float, ...] | None:
    """Share of each mode over the interval, or ``None`` if no tick elapsed.

    Per-mode deltas are clamped at 0: the kernel's per-CPU iowait can step back.
    """
    deltas = [max(0, a - b) for a, b in zip(now, before, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return None
    return tuple(d / total for d in deltas)


class CpuCheck:
    """Stateful check: keeps the previous /proc/stat reading to compute ratios."""

    def __init__(self, *, proc: str = PROC) -> None:
        self._path = f"{proc}/stat"
        self._previous: dict[str, Ticks] = {}
        self._ratios: dict[str, tuple[float, ...]] = {}

    def __call__(self) -> list[Sample]:
        """``cpu_usage_ratio{cpu}`` and ``cpu_mode_ratio{cpu, mode}`` for total and cores."""
        current = parse_stat(read_text(self._path))
        samples: list[Sample] = []
        for cpu, ticks in current.items():
            ratios = mode_ratios(ticks, self._previous.get(cpu, _ZERO)) or self._ratios.get(cpu)
            if ratios is None:
                continue
            self._ratios[cpu] = ratios
            usage = max(0.0, 1.0 - ratios[2] - ratios[3])
            samples.append(gauge("cpu_usage_ratio", usage, cpu=cpu))
            for mode, value in zip(MODES, ratios, strict=True):
                samples.append(Sample("cpu_mode_ratio", {"cpu": cpu, "mode": mode}, value))
        self._previous = current
        return samples
