"""The ``Sampler``: runs every check's probes on worker threads under a time limit.

One cycle: ask each check for its probes, hand them to a ``Batch`` drained by pooled
worker threads (one lane normally, more when a probe stalls), wait until all finish
or ``check_timeout`` has passed since the cycle began, and return what arrived.

- A probe that raises becomes a ``CheckFailure`` with the exception text.
- A probe still running at the deadline becomes ``"timed out after Xs"`` and is
  remembered as in flight. While it stays in flight its check id is not started
  again - each later cycle reports ``"still hung from a previous cycle"`` - so a
  stuck ``statvfs`` ties up one thread, not one per cycle. Its late result is dropped.
- Each completed probe also yields ``agent_check_duration_seconds{check}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from agent.sampler.batch import Batch, Settled, describe
from agent.sampler.checks import default_checks
from agent.sampler.errors import SamplerClosed
from agent.sampler.model import Check, CheckFailure, Cycle, Probe, Sample
from agent.sampler.pool import WorkerPool

STALL_AFTER = 0.1
"""Seconds one probe may hold the only lane before another lane takes over the rest."""


class Sampler:
    """Collects one ``Cycle`` of host health per ``collect()`` call.

    ``checks`` replaces the default set (``default_checks``); ``extra_checks`` are
    appended to it. ``wall_clock`` stamps the cycles.
    """

    def __init__(
        self,
        *,
        check_timeout: float = 5.0,
        checks: Sequence[Check] | None = None,
        extra_checks: Iterable[Check] = (),
        max_workers: int = 64,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if check_timeout <= 0:
            raise ValueError(f"check_timeout must be positive, got {check_timeout!r}")
        base = default_checks(check_timeout=check_timeout) if checks is None else checks
        self._checks: list[Check] = [*base, *extra_checks]
        self._timeout = check_timeout
        self._stall_after = min(STALL_AFTER, check_timeout / 4)
        self._wall_clock = wall_clock
        self._pool = WorkerPool(max_workers=max_workers)
        self._in_flight: dict[str, Batch] = {}
        self._lock = threading.Lock()
        self._closed = False

    def collect(self) -> Cycle:
        """Run one cycle; returns within about ``check_timeout``, never raises for a check.

        Raises ``SamplerClosed`` after ``close()``.
        """
        with self._lock:
            if self._closed:
                raise SamplerClosed("sampler is closed")
            deadline = time.monotonic() + self._timeout
            collected_unix_ms = int(self._wall_clock() * 1000)
            failures: list[CheckFailure] = []
            probes = self._plan(failures)
            batch = Batch(self._skip_in_flight(probes, failures))
            self._run(batch, deadline)
            samples = self._settle(batch, batch.close(), failures)
            return Cycle(collected_unix_ms, samples, failures)

    def close(self) -> None:
        """Stop the worker threads (stuck ones exit when their call returns); idempotent."""
        with self._lock:
            self._closed = True
            self._pool.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _plan(self, failures: list[CheckFailure]) -> dict[str, Probe]:
        probes: dict[str, Probe] = {}
        for check in self._checks:
            try:
                probes.update(check.plan())
            except Exception as exc:
                failures.append(CheckFailure(check.name, describe(exc)))
        return probes

    def _skip_in_flight(
        self, probes: dict[str, Probe], failures: list[CheckFailure]
    ) -> dict[str, Probe]:
        """Drop probes whose previous run is still going, reporting each as hung."""
        for key, batch in list(self._in_flight.items()):
            if not batch.is_running(key):
                del self._in_flight[key]
            elif key in probes:
                del probes[key]
                failures.append(CheckFailure(key, "still hung from a previous cycle"))
        return probes

    def _run(self, batch: Batch, deadline: float) -> None:
        """Drive ``batch`` until done or ``deadline``, adding lanes when it stalls."""
        if batch.done.is_set():
            return
        self._pool.submit(batch.add_lane())
        while (remaining := deadline - time.monotonic()) > 0:
            if batch.done.wait(min(remaining, self._stall_after)):
                return
            if batch.stalled(self._stall_after):
                self._pool.submit(batch.add_lane())

    def _settle(self, batch: Batch, settled: Settled, failures: list[CheckFailure]) -> list[Sample]:
        """Turn a closed batch into samples and failures; remember still-running probes."""
        samples: list[Sample] = []
        for key, outcome in settled.outcomes.items():
            if outcome.error is not None:
                failures.append(CheckFailure(key, outcome.error))
                continue
            samples += outcome.samples
            samples.append(Sample("agent_check_duration_seconds", {"check": key}, outcome.seconds))
        for key in settled.running:
            failures.append(CheckFailure(key, f"timed out after {self._timeout:.1f}s"))
            self._in_flight[key] = batch
        for key in settled.unstarted:
            failures.append(
                CheckFailure(key, f"timed out after {self._timeout:.1f}s before it could start")
            )
        return samples
