"""Hardware temperatures via ``psutil.sensors_temperatures`` (hwmon / thermal zones).

Hosts without sensors (most VMs) yield no samples, which is not a failure. The
``label`` is the sensor's own label, or ``temp<N>`` (1-based position) when it has
none; a repeated (sensor, label) pair gets `` #2``, `` #3``... so series stay unique.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import psutil

from agent.sampler.model import Sample


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


def read_sensors(sys: str = "/sys") -> Mapping[str, Sequence[Reading]]:
    """``psutil.sensors_temperatures()``, skipped when no hwmon/thermal device exists.

    psutil globs several sysfs patterns on every call; two directory listings settle
    the common sensorless case (virtual machines) far more cheaply.
    """
    if _has_entries(f"{sys}/class/hwmon") or _has_entries(f"{sys}/class/thermal", "thermal_zone"):
        return psutil.sensors_temperatures()
    return {}


class TemperatureCheck:
    """Yields ``temperature_celsius{sensor, label}``; ``reader`` is injectable for tests."""

    def __init__(self, *, reader: Reader = read_sensors) -> None:
        self._reader = reader

    def __call__(self) -> list[Sample]:
        """One sample per sensor entry that reports a current value."""
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
