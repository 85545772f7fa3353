"""The live terminal as a robust Server-Sent Events stream (``/sessions/ID/live``).

On top of the player's messages (player.py: the size header, ``[seconds, "o"|"r",
data]``, the ``done`` event):

- every output or resize message carries ``id: PART:TIME`` (the recording part and
  the event's time in it). A browser that lost the connection reconnects with
  ``Last-Event-ID``; the stream then resumes after that event: no size header (it
  would reset the terminal), nothing already shown sent again. An id that does not
  parse is ignored: the stream starts over with the header and the whole session.
- a comment line ``: keep-alive`` after ``KEEPALIVE_S`` seconds without a message, so
  proxies and load balancers do not cut an idle stream.
- at each keep-alive the session is looked at: once it is over the stream sends
  ``done`` and ends, also when its end was not signalled here (e.g. it ended through
  another replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from collector.gateway.recording import WatchItem
from collector.portal.player import KEPT_EVENTS, live_message

__all__ = ["DONE", "KEEPALIVE", "KEEPALIVE_S", "follow", "resume_point"]

KEEPALIVE_S = 15.0
KEEPALIVE = ": keep-alive\n\n"
DONE = "event: done\ndata: {}\n\n"
_ID = re.compile(r"(\d{1,6}):(\d{1,12}(?:\.\d{1,12})?(?:e-?\d{1,3})?)")

Position = tuple[int, float]


def resume_point(last_event_id: str) -> Position | None:
    """The (part, time) a reconnecting browser saw last, or None (start over)."""
    match = _ID.fullmatch(last_event_id.strip())
    if match is None:
        return None
    return int(match.group(1)), float(match.group(2))


async def follow(
    items: AsyncIterator[WatchItem],
    header: str,
    resume_after: Position | None,
    is_over: Callable[[], Awaitable[bool]],
) -> AsyncGenerator[str, None]:
    """The SSE messages of one watch (see the module docstring); ends after ``done``."""
    started = time.monotonic()
    if resume_after is None:
        yield header
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                if await is_over():
                    yield DONE
                    return
                yield KEEPALIVE
                continue
            try:
                item: WatchItem = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            if _seen(item, resume_after):
                continue
            message = live_message(item, started)
            if message and item.type in KEPT_EVENTS:
                message = f"{message[:-1]}id: {item.part}:{item.time!r}\n\n"
            if message:
                yield message
            if item.type == "end":
                return
    finally:
        await _close(items, pending)


async def _close(items: AsyncIterator[WatchItem], pending: asyncio.Future[Any] | None) -> None:
    """Stop waiting for the next item and close the watch (it unsubscribes)."""
    if pending is not None:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()


def _seen(item: WatchItem, resume_after: Position | None) -> bool:
    return (
        resume_after is not None
        and item.type in KEPT_EVENTS
        and (item.part, item.time) <= resume_after
    )
