"""Fetch every page of a paged list call (the collector caps each reply at 2 MiB and
500 items so none exceeds the 4 MiB message limit; docs/limits.md)."""

from __future__ import annotations

from typing import Any, Protocol

MAX_PAGES = 10_000  # a collector that keeps answering with tokens cannot loop us forever


class Caller(Protocol):
    def call(self, method: str, request: Any) -> Any: ...


def fetch_all(
    client: Caller,
    method: str,
    request: Any,
    field: str,
    token_in: str = "page_token",
    token_out: str = "next_page_token",
    limit: int | None = None,
) -> Any:
    """Call ``method`` until the last page; the first reply with ``field`` holding every
    page's items (at most ``limit`` of them when given)."""
    reply = client.call(method, request)
    items = getattr(reply, field)
    for _ in range(MAX_PAGES):
        token = getattr(reply, token_out)
        if not token or (limit is not None and len(items) >= limit):
            break
        setattr(request, token_in, token)
        following = client.call(method, request)
        items.extend(getattr(following, field))
        setattr(reply, token_out, getattr(following, token_out))
    if limit is not None and len(items) > limit:
        del items[limit:]
    return reply
