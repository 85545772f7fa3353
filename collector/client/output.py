"""Formatting shared by the client's commands: API times as ISO 8601."""

from __future__ import annotations

import datetime as dt
from typing import Any


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
