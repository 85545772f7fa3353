"""Hardware temperatures via ``psutil.sensors_temperatures`` (hwmon / thermal zones).

Hosts without sensors (most VMs) yield no samples, which is not a failure. Whether
there is sensor hardware at all (any hwmon device or thermal zone) is looked up at
most once per ``refresh_seconds``; psutil, which globs several sysfs patterns per
call, is only asked - and only imported (about 1 MiB resident) - where there is.
The ``label`` is the sensor's own label, or ``temp<N>`` (1-based position) when it has
none; a repeated (sensor, label) pair gets
`` #2``, `` #3``... so series stay unique.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from agent.sampler.model import Sample
from agent.sampler.refresh import Refresh
from common.clock import Clock


class Reading(Protocol):
    """The fields used from psutil's ``shwtemp`` entries."""

    @property
    def label(self) -> str: ...

    @property
    def current(self) -> float | None: ...


Reader = Callable[[], Mapping[str, Sequence[Reading]]]


def _has_entries(directory: str, prefix: str = "") -> bool:
    try:
        return any(name.startswith(prefix) for name in os.listdir(directory))
    except OSError:
        return False


def read_sensors() -> Mapping[str, Sequence[Reading]]:
    """``psutil.sensors_temperatures()``: globs and reads hwmon (or thermal zone) files."""
    import psutil  # only on hosts with sensors: it stays resident once imported

    return psutil.sensors_temperatures()


def sensors_present(sys: str = "/sys") -> bool:
    """Whether any hwmon device or thermal zone exists: what psutil reads from."""
    return _has_entries(f"{sys}/class/hwmon") or _has_entries(
        f"{sys}/class/thermal", "thermal_zone"
    )


class TemperatureCheck:
    """Yields ``temperature_celsius{sensor, label}``.

    ``reader``, ``present`` and ``clock`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        reader: Reader = read_sensors,
        present: Callable[[], bool] = sensors_present,
        refresh_seconds: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._reader = reader
        self._present = present
        self._look = Refresh(refresh_seconds, clock)
        self._is_present = False

    def __call__(self) -> list[Sample]:
        """One sample per sensor entry that reports a current value."""
        if self._look.due():
            self._is_present = self._present()
        if not self._is_present:
            return []
        samples: list[Sample] = []
        seen: dict[tuple[str, str], int] = {}
        for sensor, entries in self._reader().items():
            for position, entry in enumerate(entries, start=1):
                if entry.current is None:
                    continue
                label = entry.label or f"temp{position}"
                count = seen[(sensor, label)] = seen.get((sensor, label), 0) + 1
                if count > 1:
                    label = f"{label} #{count}"
                samples.append(
                    Sample("temperature_celsius", {"sensor": sensor, "label": label}, entry.current)
                )
        return samples
