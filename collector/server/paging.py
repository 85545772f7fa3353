"""Pages of list replies: bounded by count and by bytes, so none can exceed the
client's 4 MiB message limit (docs/limits.md).

A page token is the offset of the next item in the list as the store orders it
(newest first for tickets, runs and sessions). Lists that change between pages may
repeat or skip an item at the boundary; they never fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.message import Message

from collector import limits

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def page(
    items: Sequence[T],
    offset: int,
    size: int,
    to_message: Callable[[T], M],
    max_bytes: int = limits.PAGE_BYTES,
) -> tuple[list[M], str]:
    """Messages for ``items[offset:]``: at most ``size`` of them and, past the first,
    no more than ``max_bytes`` in all. Returns them and the next page token ("" at the
    end). ``items`` may hold one more than the page to show that more follow."""
    out: list[M] = []
    total = 0
    index = offset
    while index < len(items) and len(out) < size:
        message = to_message(items[index])
        total += message.ByteSize()
        if out and total > max_bytes:
            break
        out.append(message)
        index += 1
    return out, (str(index) if index < len(items) else "")
