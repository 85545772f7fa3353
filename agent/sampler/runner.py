"""The ``Sampler``: runs every check's probes concurrently, each under a time limit.

One cycle: ask each check for its probes, submit every probe to a persistent pool of
worker threads, wait until all finish or ``check_timeout`` has passed since the cycle
began, and return what arrived. A probe that raises becomes a ``CheckFailure``; one
that overruns becomes ``"timed out after Xs"`` and is remembered as in flight. While
it stays in flight the same check id is not started again - each later cycle reports
``"still hung from a previous cycle"`` - so a stuck ``statvfs`` ties up one thread,
not one per cycle. Late results of timed-out probes are discarded.

Each completed probe also yields ``agent_check_duration_seconds{check}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, wait

from agent.sampler.checks import default_checks
from agent.sampler.errors import SamplerClosed
from agent.sampler.model import Check, CheckFailure, Cycle, Probe, Sample
from agent.sampler.pool import WorkerPool

_Outcome = tuple[list[Sample], float]
"""A probe's samples and its run time in seconds."""


def describe(exc: BaseException) -> str:
    """Human-readable one-liner for a check's exception: ``"PermissionError: ..."``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _timed(probe: Probe) -> _Outcome:
    start = time.perf_counter()
    samples = list(probe())
    return samples, time.perf_counter() - start


class _InFlight:
    """A probe that overran its cycle and has not finished yet."""

    __slots__ = ("future", "started")

    def __init__(self, future: Future[_Outcome], started: float) -> None:
        self.future = future
        self.started = started


class Sampler:
    """Collects one ``Cycle`` of host health per ``collect()`` call.

    ``checks`` replaces the default set (``default_checks``); ``extra_checks`` are
    appended to it. ``clock`` (monotonic) and ``wall_clock`` are injectable.
    """

    def __init__(
        self,
        *,
        check_timeout: float = 5.0,
        checks: Sequence[Check] | None = None,
        extra_checks: Iterable[Check] = (),
        max_workers: int = 64,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if check_timeout <= 0:
            raise ValueError(f"check_timeout must be positive, got {check_timeout!r}")
        base = default_checks(check_timeout=check_timeout) if checks is None else checks
        self._checks: list[Check] = [*base, *extra_checks]
        self._timeout = check_timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._pool = WorkerPool(max_workers=max_workers)
        self._in_flight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._closed = False

    def collect(self) -> Cycle:
        """Run one cycle; returns within about ``check_timeout``, never raises for a check.

        Raises ``SamplerClosed`` after ``close()``.
        """
        with self._lock:
            if self._closed:
                raise SamplerClosed("sampler is closed")
            started = self._clock()
            collected_unix_ms = int(self._wall_clock() * 1000)
            failures: list[CheckFailure] = []
            probes = self._plan(failures)
            futures = self._submit(probes, started, failures)
            remaining = self._timeout - (self._clock() - started)
            wait(futures.values(), timeout=max(0.0, remaining))
            samples = self._gather(futures, started, failures)
            return Cycle(collected_unix_ms, samples, failures)

    def close(self) -> None:
        """Stop the worker threads (hung ones exit when their call returns); idempotent."""
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
                planned: Mapping[str, Probe] = check.plan()
            except Exception as exc:
                failures.append(CheckFailure(check.name, describe(exc)))
            else:
                probes.update(planned)
        return probes

    def _submit(
        self, probes: Mapping[str, Probe], now: float, failures: list[CheckFailure]
    ) -> dict[str, Future[_Outcome]]:
        self._forget_finished()
        futures: dict[str, Future[_Outcome]] = {}
        for key, probe in probes.items():
            stuck = self._in_flight.get(key)
            if stuck is not None:
                running = now - stuck.started
                failures.append(
                    CheckFailure(key, f"still hung from a previous cycle ({running:.1f}s ago)")
                )
                continue
            futures[key] = self._pool.submit(lambda probe=probe: _timed(probe))
        return futures

    def _gather(
        self, futures: Mapping[str, Future[_Outcome]], started: float, failures: list[CheckFailure]
    ) -> list[Sample]:
        samples: list[Sample] = []
        for key, future in futures.items():
            if not future.done():
                failures.append(CheckFailure(key, f"timed out after {self._timeout:.1f}s"))
                if not future.cancel():  # already running: remember it as stuck
                    self._in_flight[key] = _InFlight(future, started)
                continue
            exc = future.exception()
            if exc is not None:
                failures.append(CheckFailure(key, describe(exc)))
                continue
            probe_samples, seconds = future.result()
            samples += probe_samples
            samples.append(Sample("agent_check_duration_seconds", {"check": key}, seconds))
        return samples

    def _forget_finished(self) -> None:
        finished = [key for key, stuck in self._in_flight.items() if stuck.future.done()]
        for key in finished:
            del self._in_flight[key]
