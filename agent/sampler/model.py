"""Value types shared by every check and the runner: samples, failures, cycles, checks.

A *check* is a named source of samples (``cpu``, ``filesystems`` ...). Each cycle the
runner asks every check for its *probes* - zero-argument callables keyed by a check id.
Probes of a *blocking* check (the default: anything that may wait on a disk, a network
filesystem, a device or another process) run on worker threads, each under its own time
limit. Probes of a non-blocking check only read memory-backed kernel state (/proc files,
clocks) and run in the collecting thread, saving the thread hand-off. Simple checks plan
one probe keyed by their own name; fan-out checks (filesystems) plan one probe per
target, keyed ``"<check>:<target>"``, so one hung target never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class Sample(NamedTuple):
    """One metric value: Prometheus-style snake_case ``name`` with a unit suffix."""

    name: str
    labels: dict[str, str]
    value: float


class CheckFailure(NamedTuple):
    """A check (or one target of it, ``"filesystems:/mnt/nfs"``) that produced no data."""

    check: str
    error: str


@dataclass(frozen=True)
class Cycle:
    """Everything one ``Sampler.collect()`` gathered, stamped with its start time."""

    collected_unix_ms: int
    samples: list[Sample]
    failures: list[CheckFailure]


Probe = Callable[[], Iterable[Sample]]
"""Gathers samples for one check id; may block or raise - the runner contains both."""


class Check(Protocol):
    """A named source of samples, asked once per cycle for the probes to run."""

    @property
    def name(self) -> str:
        """Check id used in failures when planning itself fails."""
        ...

    @property
    def blocking(self) -> bool:
        """Whether a probe may block; ``False`` runs them in the collecting thread."""
        ...

    def plan(self) -> Mapping[str, Probe]:
        """Return this cycle's probes keyed by check id; must be quick and not block."""
        ...


@dataclass(frozen=True)
class SimpleCheck:
    """Adapts one callable into a check with a single probe keyed by ``name``."""

    name: str
    probe: Probe
    blocking: bool = True

    def plan(self) -> Mapping[str, Probe]:
        """Plan the single probe."""
        return {self.name: self.probe}


def gauge(name: str, value: float, **labels: str) -> Sample:
    """Build a sample; keyword arguments become labels."""
    return Sample(name, labels, float(value))


def ratio(part: float, whole: float) -> float:
    """``part / whole`` clamped to [0, 1]; 0 when ``whole`` is not positive."""
    if whole <= 0:
        return 0.0
    return min(1.0, max(0.0, part / whole))
