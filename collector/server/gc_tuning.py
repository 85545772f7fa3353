"""Garbage-collector settings for the serving collector, and a watch on its pauses.

Ingest allocates several hundred small containers per batch (samples, rows, tuples),
so with CPython's default thresholds (700, 10, 10) a young-generation collection ran
about once per batch and, counted in a benchmark store writer, a quarter of its CPU
went to the collector of a heap that is mostly long-lived (rules, caches, the fleet).
Freezing what start-up built and collecting the young generations less often keeps
that below a few percent; memory is still reclaimed (reference counting frees almost
everything; cycles wait longer). See docs/performance.md.

A collection stops every thread of the process, the event loop and the store writer
included, for as long as it takes to traverse its generations: ``watch_pauses`` reports
each one (``aftercare_gc_pause_seconds``), since a pause delays every ack in flight.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SERVE_THRESHOLDS", "tune_for_serving", "watch_pauses"]

SERVE_THRESHOLDS = (50_000, 20, 10)  # a young collection every ~50 batches, not every one


def tune_for_serving() -> None:
    """Move everything allocated so far out of the collector's sight and raise the
    young-generation threshold (call once the server has started)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVE_THRESHOLDS)


def watch_pauses(observe: Callable[[int, float], None]) -> Callable[[], None]:
    """Call ``observe(generation, seconds)`` after every collection, from the thread
    that ran it (no collection can start while ``observe`` runs). Returns the function
    that stops watching."""
    started = [0.0]

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            observe(int(info["generation"]), time.perf_counter() - started[0])

    gc.callbacks.append(on_collection)
    return lambda: gc.callbacks.remove(on_collection)
