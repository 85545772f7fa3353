"""Reconnect backoff grows exponentially, is capped, and is jittered."""

from __future__ import annotations

from agent.stream import backoff_delay


def test_backoff_grows_is_capped_and_jittered() -> None:
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0), (500, 60.0)]:
        delays = {backoff_delay(attempt, 1.0, 60.0) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1, "jitter: agents must not reconnect in lockstep"
