"""The collector reports every garbage collection's pause (``watch_pauses``)."""

from __future__ import annotations

import gc

from collector.server.gc_tuning import watch_pauses


def test_each_collection_is_reported_with_its_generation_until_the_watch_stops() -> None:
    pauses: list[tuple[int, float]] = []
    stop = watch_pauses(lambda generation, seconds: pauses.append((generation, seconds)))
    try:
        garbage = [[] for _ in range(100_000)]
        for item in garbage:
            item.append(item)  # cycles: only the collector frees them
        del garbage, item
        gc.collect(2)
        gc.collect(1)
    finally:
        stop()
    assert [generation for generation, _ in pauses[-2:]] == [2, 1]
    full = pauses[-2][1]
    assert 0 < full < 60  # the seconds of that collection, not a timestamp
    count = len(pauses)
    gc.collect(0)
    assert len(pauses) == count  # stopped: no longer called
