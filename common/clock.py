"""The clock types passed into agent and collector code, so tests can use a fake clock.

``Clock`` returns seconds as a float (``time.time`` or ``time.monotonic``);
``MillisClock`` returns unix milliseconds as an int (``wall_ms``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "MillisClock", "wall_ms"]

Clock = Callable[[], float]
MillisClock = Callable[[], int]


def wall_ms() -> int:
    """Unix time in whole milliseconds."""
    return time.time_ns() // 1_000_000
