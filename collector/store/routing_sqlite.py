"""The routing tables of the SQLite store (a mixin of ``SQLiteStore``, and through it
of ``PostgresStore``; contract in collector/store/routing_base.py).

Each method is one short transaction. ``take_agent_messages`` selects and deletes in
one write transaction, which every process serialises (SQLite's ``BEGIN IMMEDIATE``,
PostgreSQL's write advisory lock), so a message is handed to one replica only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from collector.errors import InvalidRequest
from collector.store.routing_base import AgentLocation, LiveReplica, OutboxMessage

__all__ = ["PRESENCE_UPSERT", "SQLiteRouting"]

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]

MAX_TAKEN = 500  # messages handed out per call; the rest wait for the next one

_BEAT = (
    "INSERT INTO replicas (replica, relay_address, expires_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (replica) DO UPDATE SET relay_address = excluded.relay_address, "
    "expires_ms = excluded.expires_ms"
)
PRESENCE_UPSERT = (
    "INSERT INTO agent_presence (agent_id, replica, connected_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (agent_id) DO UPDATE SET replica = excluded.replica, "
    "connected_ms = excluded.connected_ms"
)
_LIVE = (
    "SELECT p.agent_id, p.replica, r.relay_address FROM agent_presence p "
    "JOIN replicas r ON r.replica = p.replica WHERE r.expires_ms > ?"
)


class SQLiteRouting:
    """``RoutingStore`` on the connection of ``SQLiteStore`` (a mixin)."""

    _write: Transaction
    _read: Transaction

    def beat_replica(self, replica: str, relay_address: str, now_ms: int, ttl_ms: int) -> None:
        if not replica:
            raise InvalidRequest("a replica needs an id")
        if ttl_ms <= 0:
            raise InvalidRequest(f"a heartbeat's time to live must be positive, not {ttl_ms} ms")
        with self._write() as db:
            db.execute(_BEAT, (replica, relay_address, now_ms + ttl_ms))

    def drop_replica(self, replica: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM agent_presence WHERE replica = ?", (replica,))
            db.execute("DELETE FROM replicas WHERE replica = ?", (replica,))

    def set_presence(self, agent_id: str, replica: str, now_ms: int) -> None:
        if not agent_id or not replica:
            raise InvalidRequest("a presence needs an agent id and a replica")
        with self._write() as db:
            db.execute(PRESENCE_UPSERT, (agent_id, replica, now_ms))

    def clear_presence(self, agent_ids: Sequence[str], replica: str) -> None:
        with self._write() as db:
            db.executemany(
                "DELETE FROM agent_presence WHERE agent_id = ? AND replica = ?",
                [(agent_id, replica) for agent_id in agent_ids],
            )

    def live_presence(self, now_ms: int) -> list[AgentLocation]:
        with self._read() as db:
            rows = db.execute(_LIVE + " ORDER BY p.agent_id", (now_ms,)).fetchall()
        return [AgentLocation(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def live_replicas(self, now_ms: int) -> list[LiveReplica]:
        with self._read() as db:
            rows = db.execute(
                "SELECT replica, relay_address FROM replicas WHERE expires_ms > ? ORDER BY replica",
                (now_ms,),
            ).fetchall()
        return [LiveReplica(str(r[0]), str(r[1])) for r in rows]

    def agent_location(self, agent_id: str, now_ms: int) -> AgentLocation | None:
        with self._read() as db:
            row = db.execute(_LIVE + " AND p.agent_id = ?", (now_ms, agent_id)).fetchone()
        return AgentLocation(str(row[0]), str(row[1]), str(row[2])) if row else None

    def queue_agent_message(self, agent_id: str, message: bytes, now_ms: int) -> int:
        if not agent_id or not message:
            raise InvalidRequest("an outbox message needs an agent id and a body")
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO agent_outbox (agent_id, message, created_ms) VALUES (?, ?, ?)",
                (agent_id, message, now_ms),
            )
            assert cursor.lastrowid is not None  # an INSERT always sets it
            return int(cursor.lastrowid)

    def take_agent_messages(
        self, agent_ids: Sequence[str], newer_than_ms: int
    ) -> list[OutboxMessage]:
        with self._write() as db:
            db.execute("DELETE FROM agent_outbox WHERE created_ms <= ?", (newer_than_ms,))
            if not agent_ids:
                return []
            marks = ", ".join("?" * len(agent_ids))
            rows = db.execute(
                "SELECT id, agent_id, message, created_ms FROM agent_outbox "
                f"WHERE agent_id IN ({marks}) ORDER BY id LIMIT {MAX_TAKEN}",
                tuple(agent_ids),
            ).fetchall()
            taken = [OutboxMessage(int(r[0]), str(r[1]), bytes(r[2]), int(r[3])) for r in rows]
            if taken:
                ids = ", ".join("?" * len(taken))
                db.execute(
                    f"DELETE FROM agent_outbox WHERE id IN ({ids})", tuple(m.id for m in taken)
                )
        return taken

    def put_shared_file(self, path: str, data: bytes, sha256: str, now_ms: int) -> None:
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise InvalidRequest(
                f"a shared file needs a relative path inside the data dir: {path!r}"
            )
        with self._write() as db:
            db.execute(
                "INSERT INTO shared_files (path, data, sha256, stored_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (path) DO UPDATE SET data = excluded.data, "
                "sha256 = excluded.sha256, stored_ms = excluded.stored_ms",
                (path, data, sha256, now_ms),
            )

    def get_shared_file(self, path: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM shared_files WHERE path = ?", (path,)).fetchone()
        return bytes(row[0]) if row else None
