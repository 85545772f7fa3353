"""Human-friendly durations ("15s", "1h30m") and sizes ("64MiB") used in configuration.

Shared by the agent, the collector and the playbook format. Both parsers raise
ValueError with a message that quotes the input and shows the accepted syntax,
ready to be prefixed with the name of the config key that held it.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_size"]

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_HELP = 'use a number with a unit: ms, s, m, h, d, w (e.g. "15s")'
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# "ms" must come before "m" so that "500ms" is not read as 500 minutes + "s".
_DURATION_TERM = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d|w)\s*")
_DURATION = re.compile(rf"(?:{_DURATION_TERM.pattern})+")

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_HELP = 'use a number with a unit: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. "64MiB")'
_SIZE = re.compile(rf"({_NUMBER})\s*([a-zA-Z]*)")


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: "500ms", "15s", "5m", "1h30m", "2d", "1w", or a number of seconds.

    Terms may be combined ("1h30m", "1m 30s"). Negative, infinite and NaN values
    are rejected.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if not isinstance(value, str):
        return _non_negative_seconds(float(value), value)
    text = value.strip()
    if text == "0":
        return 0.0
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    if not _DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    return sum(
        float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_TERM.findall(text)
    )


def _non_negative_seconds(seconds: float, original: object) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {original!r}: must be a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {original!r}: must not be negative")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes in ``value``: "64MiB", "1GiB", "500KB", "1024" (bytes), or an int.

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024; units are
    case-insensitive. Fractions are allowed ("1.5GiB") and rounded down to whole bytes.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"invalid size {value!r}: {_SIZE_HELP}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid size {value!r}: must not be negative")
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _SIZE_UNITS):
        raise ValueError(f"invalid size {value!r}: {_SIZE_HELP}")
    from decimal import Decimal  # only while parsing the config: not kept by the agent's imports

    return int(Decimal(match.group(1)) * _SIZE_UNITS[unit or "b"])
