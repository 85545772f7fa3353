"""``Refresh``: when a check's cached answer is due to be looked up again."""

from __future__ import annotations

import time

from common.clock import Clock


class Refresh:
    """Due at the first ``due()`` call, then again once ``seconds`` have passed since the last."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        """Whether to look again now; a True answer starts the next period."""
        now = self._clock()
        if self._last is not None and now - self._last < self._seconds:
            return False
        self._last = now
        return True
