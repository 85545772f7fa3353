"""Checks shared by the row codecs (tickets, runs, sessions): input → InvalidRequest,
corrupt stored rows → StoreError. No SQL driver here, so every backend reuses them."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from collector.errors import InvalidRequest, StoreError

S = TypeVar("S", bound=str)


def check_text(field: str, value: object) -> None:
    """``value`` must be a non-empty string."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{field}: expected a non-empty string, got {value!r}")


def check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    """``value`` must be one of ``allowed``."""
    if value not in allowed:
        raise InvalidRequest(f"{field}: {value!r} is not one of {', '.join(allowed)}")


def decode_choice(where: str, column: str, value: object, allowed: tuple[S, ...]) -> S:
    """The stored ``value`` as one of ``allowed``; StoreError if the row holds anything else."""
    for item in allowed:
        if item == value:
            return item
    raise StoreError(f"{where} has unknown {column} {value!r}; the database is corrupt")


def decode_json(where: str, column: str, text: object) -> dict[str, Any]:
    """A stored JSON object; StoreError if it is not one."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError as exc:
        raise StoreError(f"{where} has unreadable {column}; the database is corrupt") from exc
    if not isinstance(value, dict):
        raise StoreError(f"{where} has unreadable {column}; the database is corrupt")
    return value
