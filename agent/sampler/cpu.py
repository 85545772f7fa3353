"""CPU utilisation ratios per core and in total, and the online CPU count, from /proc/stat.

Ratios cover the interval since the previous cycle. The first cycle (no previous
reading) reports averages since boot, so every batch carries the CPU metrics. When
no clock tick elapsed for a CPU between two cycles, its previous ratios are repeated.

Modes are folded so they sum to 1: ``user`` = user + nice (guest time is already
inside user/nice), ``system`` = system + irq + softirq, then ``idle``, ``iowait`` and
``steal``. ``cpu_usage_ratio`` = 1 - (idle + iowait) / total.

``cpu_cores`` counts the per-core lines: /proc/stat lists exactly the online CPUs,
the same set ``os.cpu_count()`` reads from sysfs, without opening another file.
"""

from __future__ import annotations

from agent.sampler.model import Sample
from agent.sampler.procfs import PROC, ProcFile

MODES = ("user", "system", "idle", "iowait", "steal")

Ticks = tuple[int, int, int, int, int]
"""Folded jiffies per mode, in ``MODES`` order."""
_ZERO: Ticks = (0, 0, 0, 0, 0)
_PADDING = [b"0"] * 8  # kernels before 2.6.11 lack steal (and older ones more)


def parse_stat(data: bytes) -> dict[str, Ticks]:
    """Map ``"total"`` and each core number (``"0"``...) to folded mode ticks."""
    cpus: dict[str, Ticks] = {}
    for line in data.splitlines():
        if not line.startswith(b"cpu"):
            break  # the cpu lines come first; the rest (intr...) can be long
        fields = line.split()
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, (fields + _PADDING)[1:9])
        key = fields[0][3:].decode() or "total"
        cpus[key] = (user + nice, system + irq + softirq, idle, iowait, steal)
    return cpus


def mode_ratios(now: Ticks, before: Ticks) -> tuple[float, ...] | None:
    """Share of each mode over the interval, or ``None`` if no tick elapsed.

    Per-mode deltas are clamped at 0: the kernel's per-CPU iowait can step back.
    """
    deltas = [a - b if a > b else 0 for a, b in zip(now, before, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return None
    return tuple(d / total for d in deltas)


class CpuCheck:
    """Stateful check: keeps the previous /proc/stat reading to compute ratios."""

    def __init__(self, *, proc: str = PROC) -> None:
        self._stat = ProcFile(f"{proc}/stat")
        self._previous: dict[str, Ticks] = {}
        self._ratios: dict[str, tuple[float, ...]] = {}

    def __call__(self) -> list[Sample]:
        """``cpu_usage_ratio{cpu}``, ``cpu_mode_ratio{cpu, mode}`` and ``cpu_cores``."""
        current = parse_stat(self._stat.read())
        samples: list[Sample] = []
        for cpu, ticks in current.items():
            ratios = mode_ratios(ticks, self._previous.get(cpu, _ZERO)) or self._ratios.get(cpu)
            if ratios is None:
                continue
            self._ratios[cpu] = ratios
            user, system, idle, iowait, steal = ratios
            samples += (
                Sample("cpu_usage_ratio", {"cpu": cpu}, max(0.0, 1.0 - idle - iowait)),
                Sample("cpu_mode_ratio", {"cpu": cpu, "mode": "user"}, user),
                Sample("cpu_mode_ratio", {"cpu": cpu, "mode": "system"}, system),
                Sample("cpu_mode_ratio", {"cpu": cpu, "mode": "idle"}, idle),
                Sample("cpu_mode_ratio", {"cpu": cpu, "mode": "iowait"}, iowait),
                Sample("cpu_mode_ratio", {"cpu": cpu, "mode": "steal"}, steal),
            )
        self._previous = current
        cores = len(current) - 1 if "total" in current else len(current)
        samples.append(Sample("cpu_cores", {}, float(cores)))
        return samples
