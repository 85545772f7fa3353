"""The one fake clock of the tests: time that moves only when a test says so."""

from __future__ import annotations

from typing import Generic, TypeVar

N = TypeVar("N", int, float)

__all__ = ["FakeClock"]


class FakeClock(Generic[N]):
    """A clock to pass where code takes ``clock`` (float seconds) or ``clock_ms`` (int ms).

    Calling it returns ``now``, in whatever unit it was started with; ``advance`` adds
    to it and tests may also set ``now`` directly.
    """

    def __init__(self, now: N) -> None:
        self.now: N = now

    def __call__(self) -> N:
        return self.now

    def advance(self, by: N) -> None:
        self.now += by
