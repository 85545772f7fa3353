"""PostgreSQL LISTEN/NOTIFY for waking replicas: one channel per ``PgWakeups``.

``PgWakeups.notify`` sends a NOTIFY on the channel (after the caller's data is
committed, so a woken replica finds it); ``run_listener`` keeps a listening
connection, sets ``woken`` on every notification and hands its payload to
``on_notify`` (if given), reconnecting after a failure. A lost notification only
delays where the callers also poll (the agent outbox); elsewhere it is best effort
(docs/replicas.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from collector.store.postgres import redact_url

__all__ = ["OUTBOX_CHANNEL", "SESSION_OVER_CHANNEL", "PgWakeups"]

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "aftercare_agent_outbox"
SESSION_OVER_CHANNEL = "aftercare_session_over"
RECONNECT_SECONDS = 2.0


class PgWakeups:
    """NOTIFY and LISTEN on one channel of the database at ``url``."""

    def __init__(
        self,
        url: str,
        channel: str = OUTBOX_CHANNEL,
        on_notify: Callable[[str], None] | None = None,
    ) -> None:
        self._url = url
        self._channel = channel
        self._on_notify = on_notify
        self.woken = asyncio.Event()
        self._sender: psycopg.AsyncConnection[object] | None = None

    async def notify(self, payload: str = "") -> None:
        """Wake every listener (with ``payload``, under 8000 bytes); a failure is logged."""
        try:
            if self._sender is None or self._sender.closed:
                self._sender = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            await self._sender.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))
        except psycopg.Error as exc:
            log.warning("NOTIFY %s on %s failed: %s", self._channel, redact_url(self._url), exc)
            self._sender = None

    async def run_listener(self) -> None:
        """LISTEN until cancelled; reconnect after a lost connection."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{self._channel}"')
                    self.woken.set()  # catch up on what was sent while not listening
                    async for notification in conn.notifies():
                        self.woken.set()
                        if self._on_notify is not None:
                            self._on_notify(notification.payload)
            except psycopg.Error as exc:
                log.warning("LISTEN on %s failed (%s); retrying", redact_url(self._url), exc)
            await asyncio.sleep(RECONNECT_SECONDS)

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
