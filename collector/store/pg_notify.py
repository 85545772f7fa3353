"""PostgreSQL LISTEN/NOTIFY for waking replicas: one channel, no payload.

``PgWakeups.notify`` sends a NOTIFY on the channel (after the caller's data is
committed, so a woken replica finds it); ``run_listener`` keeps a listening
connection and sets ``woken`` on every notification, reconnecting after a failure.
A lost notification only delays: the callers also poll (docs/replicas.md).
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from collector.store.postgres import redact_url

__all__ = ["OUTBOX_CHANNEL", "PgWakeups"]

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "aftercare_agent_outbox"
RECONNECT_SECONDS = 2.0


class PgWakeups:
    """NOTIFY and LISTEN on one channel of the database at ``url``."""

    def __init__(self, url: str, channel: str = OUTBOX_CHANNEL) -> None:
        self._url = url
        self._channel = channel
        self.woken = asyncio.Event()
        self._sender: psycopg.AsyncConnection[object] | None = None

    async def notify(self) -> None:
        """Wake every listener; a failure is logged (the listeners' poll still runs)."""
        try:
            if self._sender is None or self._sender.closed:
                self._sender = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            await self._sender.execute("SELECT pg_notify(%s, '')", (self._channel,))
        except psycopg.Error as exc:
            log.warning("NOTIFY on %s failed (%s): the poll delivers", redact_url(self._url), exc)
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
                    async for _ in conn.notifies():
                        self.woken.set()
            except psycopg.Error as exc:
                log.warning("LISTEN on %s failed (%s); retrying", redact_url(self._url), exc)
            await asyncio.sleep(RECONNECT_SECONDS)

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
