"""The ``Sampler``: runs every check's probes, blocking ones under a time limit.

One cycle: ask each check for its probes; hand the probes of blocking checks to a
``Batch`` drained by pooled worker threads (one lane normally, more when a probe
stalls); meanwhile run the non-blocking probes (memory-backed /proc reads, clocks) in
the collecting thread; then wait until the batch is done or ``check_timeout`` has
passed since the cycle began, and return what arrived, in check order.

- A probe that raises becomes a ``CheckFailure`` with the exception text.
- A blocking probe still running at the deadline becomes ``"timed out after Xs"`` and
  is remembered as in flight. While it stays in flight its check id is not started
  again - each later cycle reports ``"still hung from a previous cycle"`` - so a
  stuck ``statvfs`` ties up one thread, not one per cycle. Its late result is dropped.
- Each completed probe also yields ``agent_check_duration_seconds{check}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

from agent.sampler.batch import Batch, Outcome, Settled, describe, run_probe
from agent.sampler.checks import default_checks
from agent.sampler.errors import SamplerClosed
from agent.sampler.model import Check, CheckFailure, Cycle, Probe, Sample
from agent.sampler.pool import WorkerPool
from common.clock import Clock

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
        wall_clock: Clock = time.time,
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
            order, inline, pooled = self._plan(failures)
            batch = Batch(self._skip_in_flight(pooled, failures))
            if not batch.done.is_set():
                self._pool.submit(batch.add_lane())  # first, so it overlaps the inline probes
            outcomes = {key: run_probe(probe, contain=Exception) for key, probe in inline.items()}
            self._run(batch, deadline)
            samples = self._settle(order, outcomes, batch, batch.close(), failures)
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

    def _plan(
        self, failures: list[CheckFailure]
    ) -> tuple[list[str], dict[str, Probe], dict[str, Probe]]:
        """Every check's probes: all keys in check order, non-blocking ones, blocking ones."""
        inline: dict[str, Probe] = {}
        pooled: dict[str, Probe] = {}
        order: list[str] = []
        for check in self._checks:
            try:
                probes = check.plan()
            except Exception as exc:
                failures.append(CheckFailure(check.name, describe(exc)))
                continue
            (pooled if check.blocking else inline).update(probes)
            order.extend(probes)
        return order, inline, pooled

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
        """Wait for ``batch`` until done or ``deadline``, adding a lane when it stalls."""
        while not batch.done.is_set() and (remaining := deadline - time.monotonic()) > 0:
            if batch.done.wait(min(remaining, self._stall_after)):
                return
            if batch.stalled(self._stall_after):
                self._pool.submit(batch.add_lane())

    def _settle(
        self,
        order: list[str],
        outcomes: dict[str, Outcome],
        batch: Batch,
        settled: Settled,
        failures: list[CheckFailure],
    ) -> list[Sample]:
        """Samples and failures in check order; remember the batch's still-running probes."""
        outcomes.update(settled.outcomes)
        unstarted = set(settled.unstarted)
        samples: list[Sample] = []
        for key in order:
            if (outcome := outcomes.get(key)) is not None:
                if outcome.error is not None:
                    failures.append(CheckFailure(key, outcome.error))
                    continue
                samples += outcome.samples
                samples.append(
                    Sample("agent_check_duration_seconds", {"check": key}, outcome.seconds)
                )
            elif key in settled.running:
                failures.append(CheckFailure(key, f"timed out after {self._timeout:.1f}s"))
                self._in_flight[key] = batch
            elif key in unstarted:
                failures.append(
                    CheckFailure(key, f"timed out after {self._timeout:.1f}s before it could start")
                )
        return samples
