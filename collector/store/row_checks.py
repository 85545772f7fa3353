"""Checks shared by the row codecs (tickets, runs, sessions): input → InvalidRequest,
corrupt stored rows → StoreError. No SQL driver here, so every backend reuses them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from collector.audit import canonical_json
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


def event_details_json(
    where: str, actor: object, kind: object, kinds: tuple[str, ...], details: object
) -> str:
    """Check one new timeline event (actor, kind among ``kinds``, plain-JSON details) and
    return its details as canonical JSON; InvalidRequest naming ``where`` otherwise."""
    check_text(f"{where}.actor", actor)
    check_choice(f"{where}.kind", kind, kinds)
    if not isinstance(details, Mapping):
        raise InvalidRequest(f"{where}.details: expected a mapping")
    try:
        return canonical_json(dict(details))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where}.details must be plain JSON data: {exc}") from exc


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
