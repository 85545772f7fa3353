"""Long parameter lists cut into statements of bounded size (SQLite allows 32,766
parameters per statement; PostgreSQL 65,535)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = ["IN_LIST", "chunks"]

T = TypeVar("T")

IN_LIST = 500  # values per IN (...) list


def chunks(items: Sequence[T], size: int = IN_LIST) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
