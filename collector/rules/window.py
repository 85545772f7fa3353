"""One series' recent history for ``rate`` and ``predict`` conditions, in bounded memory.

A ``Window`` keeps the points of the last ``seconds`` (pruned by the newest point's
time, not the wall clock) in flat ``array('d')`` columns, about 24 bytes per point,
and thins them so that it never holds more than ``2 * max_points + 2`` points
whatever the agent's interval: a new point replaces the newest one while it is closer
than ``seconds / max_points`` to the one before.

Costs are O(1) amortised per point added and per question asked:

- ``rate()``: counters are stored reset-adjusted (a value below the previous one
  means the counter restarted from 0, as after a reboot, so the increase is the new
  value), hence the increase over the window is last minus first, whatever was thinned.
- ``fit()``: the least-squares sums (n, Σt, Σy, Σt², Σty) are kept up to date as
  points come and go, and recomputed exactly (with a new time origin, to keep the
  floating-point error small) every few hundred changes.

Points not newer than the newest one (duplicates, out-of-order batches) are ignored.
"""

from __future__ import annotations

from array import array

__all__ = ["Window"]


class Window:
    """Sliding-window history of one series (see the module docstring)."""

    __slots__ = (
        "_adjusted",
        "_changes",
        "_origin",
        "_raw",
        "_st",
        "_stt",
        "_sty",
        "_sy",
        "_times",
        "max_points",
        "seconds",
    )

    def __init__(self, seconds: float, max_points: int = 128) -> None:
        if seconds <= 0 or max_points < 2:
            raise ValueError("a window needs seconds > 0 and max_points >= 2")
        self.seconds = float(seconds)
        self.max_points = max_points
        self._times = array("d")  # seconds since self._origin
        self._raw = array("d")
        self._adjusted = array("d")  # counter value with resets undone
        self._origin = 0.0  # unix seconds
        self._changes = 0
        self._st = self._sy = self._stt = self._sty = 0.0

    def __len__(self) -> int:
        return len(self._times)

    @property
    def last_ms(self) -> int | None:
        """Time of the newest point (unix ms), or None when empty."""
        if not self._times:
            return None
        return round((self._times[-1] + self._origin) * 1000)

    def add(self, at_ms: int, value: float) -> None:
        """Record ``value`` observed at ``at_ms``; ignored unless newer than the newest."""
        at = at_ms / 1000.0
        if not self._times:
            self._origin = at
            self._append(0.0, value, value)
            return
        t = at - self._origin
        if t <= self._times[-1]:
            return
        adjusted = self._adjusted[-1] + _increase(self._raw[-1], value)
        if len(self._times) >= 2 and t - self._times[-2] < self.seconds / self.max_points:
            self._drop_last()
        self._append(t, value, adjusted)
        self._prune(t - self.seconds)
        if self._changes > 4 * self.max_points or t > 4 * self.seconds:
            self._rebase()

    def ready(self) -> bool:
        """At least two points spanning at least half the window."""
        return len(self._times) >= 2 and self.span() >= self.seconds / 2

    def span(self) -> float:
        """Seconds between the oldest and the newest point."""
        return self._times[-1] - self._times[0] if self._times else 0.0

    def latest(self) -> float | None:
        """The newest raw value."""
        return self._raw[-1] if self._raw else None

    def rate(self) -> float | None:
        """Per-second increase of a counter over the window (resets handled), or None
        unless ``ready()``."""
        if not self.ready():
            return None
        return (self._adjusted[-1] - self._adjusted[0]) / self.span()

    def fit(self) -> tuple[float, float] | None:
        """Least-squares line through the raw values: (its value at the newest point,
        slope per second), or None unless ``ready()``."""
        if not self.ready():
            return None
        n = len(self._times)
        denominator = n * self._stt - self._st * self._st
        if denominator <= 0:
            return None
        slope = (n * self._sty - self._st * self._sy) / denominator
        intercept = (self._sy - slope * self._st) / n
        return intercept + slope * self._times[-1], slope

    def _append(self, t: float, raw: float, adjusted: float) -> None:
        self._times.append(t)
        self._raw.append(raw)
        self._adjusted.append(adjusted)
        self._account(t, raw, 1.0)

    def _drop_last(self) -> None:
        self._account(self._times.pop(), self._raw.pop(), -1.0)
        self._adjusted.pop()

    def _prune(self, oldest: float) -> None:
        count = 0
        while count < len(self._times) and self._times[count] < oldest:
            self._account(self._times[count], self._raw[count], -1.0)
            count += 1
        if count:
            del self._times[:count], self._raw[:count], self._adjusted[:count]

    def _account(self, t: float, y: float, sign: float) -> None:
        self._st += sign * t
        self._sy += sign * y
        self._stt += sign * t * t
        self._sty += sign * t * y
        self._changes += 1

    def _rebase(self) -> None:
        shift = self._times[0]
        self._origin += shift
        for i in range(len(self._times)):
            self._times[i] -= shift
        self._st = sum(self._times)
        self._sy = sum(self._raw)
        self._stt = sum(t * t for t in self._times)
        self._sty = sum(t * y for t, y in zip(self._times, self._raw, strict=True))
        self._changes = 0


def _increase(previous: float, current: float) -> float:
    """Counter increase between two readings; a drop means a reset to zero."""
    return current - previous if current >= previous else current
