"""Argument types for the client's commands: malformed values are usage errors (exit 2).

Each function is an argparse ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError``, which argparse prints as ``error: argument --x: ...``
and exits 2 — never a traceback, never a value the API cannot carry (its ids are
int64, its durations and times int64 milliseconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time

from common.durations import parse_duration

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# Times and durations beyond this (year 9999) are mistakes, and Python's datetime ends there.
MAX_UNIX_MS = int(dt.datetime(9999, 12, 31, tzinfo=dt.UTC).timestamp() * 1000)


def ticket_id(text: str) -> int:
    """A ticket number: 1 .. 2^63-1."""
    return _integer(text, "a ticket number", 1, INT64_MAX)


def optional_ticket_id(text: str) -> int:
    """A ticket number, or 0 for none."""
    return _integer(text, "a ticket number (0: none)", 0, INT64_MAX)


def count(text: str) -> int:
    """A positive count that fits the API's int32 (``--limit``)."""
    return _integer(text, "a positive number", 1, INT32_MAX)


def part(text: str) -> int:
    """A recording part number, 0 for the first."""
    return _integer(text, "a part number (1, 2, ...)", 0, INT32_MAX)


def duration_ms(text: str) -> int:
    """A duration ("45m", "2h", "1h30m", seconds) as milliseconds, at most until year 9999."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not math.isfinite(seconds) or seconds * 1000 > MAX_UNIX_MS:
        raise argparse.ArgumentTypeError(f"duration {text!r} is too long")
    return int(seconds * 1000)


def until_ms(text: str) -> int:
    """``--until``: a duration from now ("45m") or an ISO time ("2030-01-31T18:00", local
    time without a zone), as Unix milliseconds; "" for unset (0)."""
    if not text:
        return 0
    now_ms = int(time.time() * 1000)
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or now_ms + seconds * 1000 > MAX_UNIX_MS:
            raise argparse.ArgumentTypeError(f"{text!r} is too far in the future")
        return now_ms + int(seconds * 1000)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration from now (45m, 2h) or an ISO time "
            "(2030-01-31T18:00, with or without a zone)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range") from None


def _integer(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range ({low}..{high})")
    return value
