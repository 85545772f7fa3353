"""The lease table of the SQLite store (a mixin of ``SQLiteStore``, and through it of
``PostgresStore``; contract in collector/store/lease_base.py).

One upsert decides a claim: it inserts a free lease, or overwrites the row only when
the claimant already holds it or it has expired; the affected row count says whether
the claim won. The write transaction serialises claimants (SQLite's ``BEGIN
IMMEDIATE``; PostgreSQL's write advisory lock), so two replicas never both win.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from collector.errors import InvalidRequest

__all__ = ["SQLiteLeases"]

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]

_CLAIM = (
    "INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
    "expires_ms = excluded.expires_ms "
    "WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?"
)


class SQLiteLeases:
    """``LeaseStore`` on the connection of ``SQLiteStore`` (a mixin)."""

    _write: Transaction

    def claim_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        if not name or not holder:
            raise InvalidRequest("a lease needs a name and a holder")
        if ttl_ms <= 0:
            raise InvalidRequest(f"a lease's time to live must be positive, not {ttl_ms} ms")
        with self._write() as db:
            cursor = db.execute(_CLAIM, (name, holder, now_ms + ttl_ms, now_ms))
            return cursor.rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
