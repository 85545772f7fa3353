"""Garbage-collector settings for the serving collector.

Ingest allocates several hundred small containers per batch (samples, rows, tuples),
so with CPython's default thresholds (700, 10, 10) a young-generation collection ran
about once per batch and, counted in a benchmark store writer, a quarter of its CPU
went to the collector of a heap that is mostly long-lived (rules, caches, the fleet).
Freezing what start-up built and collecting the young generations less often keeps
that below a few percent; memory is still reclaimed (reference counting frees almost
everything; cycles wait longer). See docs/performance.md.
"""

from __future__ import annotations

import gc

__all__ = ["SERVE_THRESHOLDS", "tune_for_serving"]

SERVE_THRESHOLDS = (50_000, 20, 10)  # a young collection every ~50 batches, not every one


def tune_for_serving() -> None:
    """Move everything allocated so far out of the collector's sight and raise the
    young-generation threshold (call once the server has started)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVE_THRESHOLDS)
