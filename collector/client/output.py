"""Formatting shared by the client's commands: API times as ISO 8601, durations, sizes,
and text from others made safe for the terminal.

``safe(text)`` escapes every control character (a table cell, a name: one line);
``safe_block(text)`` keeps newlines and tabs (a description, playbook output). Every
command's stdout and stderr also pass through ``common.safe_text.SafeStream`` (set up
in ``cli.main``), so nothing raw reaches the terminal even where a field was missed;
``safe`` around fields adds that a newline cannot forge a line. ``--json`` output and
``--raw`` bytes keep the original (``raw_stdout``).
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any, TextIO

from common.safe_text import raw, safe, safe_block

__all__ = [
    "duration_text",
    "iso",
    "raw_stdout",
    "safe",
    "safe_block",
    "size_text",
    "with_times",
]


def raw_stdout() -> TextIO:
    """stdout without the escaping: for output that must keep the original bytes."""
    return raw(sys.stdout)


def iso(ms: int) -> str | None:
    """Unix milliseconds as an ISO 8601 UTC time to the second; None for 0 (unset)."""
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def with_times(info: dict[str, Any]) -> dict[str, Any]:
    """Replace ``*_unix_ms`` fields (int64: strings in proto JSON) by ISO 8601 times."""
    for key in [k for k in info if k.endswith("_unix_ms")]:
        info[key.removesuffix("_unix_ms")] = iso(int(info.pop(key)))
    return info


def duration_text(ms: int) -> str:
    """Milliseconds as "2h", "1h30m", "45s" (whole seconds; "0s" for less)."""
    seconds = max(0, ms) // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)


def size_text(size: int) -> str:
    """Bytes as "512 B", "12.3 KiB", "4.0 MiB"."""
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
