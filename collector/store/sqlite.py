"""SQLite store backend: the embedded default (one database file, WAL, one writer at a time).

Concurrency: one connection per ``SQLiteStore``, usable from any thread and serialised by
a lock (the server drives it from one dedicated writer thread). Several processes may
open the same file — the running collector and ``aftercare-collector user add`` — so
every write runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
before reading anything, waiting up to the busy timeout (10 s) for it. Reads spanning
several queries run in one deferred transaction: a consistent WAL snapshot.

Durability: WAL with ``synchronous=FULL`` (the default) fsyncs on every commit, so a
batch is on disk before the agent is acked. ``synchronous="NORMAL"`` is faster but may
lose the last commits on power loss (never corrupts).

The SQL is portable: it runs on PostgreSQL as is, except ``?`` placeholders (``%s``
there) and the type names in the migrations. No SQLite-only functions.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any, Literal

from collector.audit import GENESIS_HASH, canonical_json, entry_hash
from collector.errors import (
    CollectorError,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    StoreError,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    UnknownAgent,
    UnknownUser,
    UserExists,
)
from collector.history.model import HistorySeries
from collector.history.policy import MAX_SERIES_PER_HOST
from collector.outbox import OutboxAudit
from collector.sessions.errors import SessionNotFound
from collector.sessions.model import NewSessionEvent, RemoteSession, SessionEvent, SessionState
from collector.store.base import (
    FINISHED_RUN_STATES,
    ROLES,
    AgentRecord,
    ApproverRecord,
    AuditEntry,
    BatchOutcome,
    GapRecord,
    HelloRecord,
    HistoryRollup,
    IncomingBatch,
    LatestBatch,
    RecordingRecord,
    RevocationRecord,
    Role,
    RunRecord,
    RunState,
    SshKeyRecord,
    StoredFailure,
    StoredSample,
    UnknownRun,
    User,
)
from collector.store.chunks import chunks
from collector.store.history_rows import (
    check_history_query,
    fold_history,
    read_history,
    roll_up_history,
)
from collector.store.ingest_rows import Layout, check_sequence, store_group, values_of
from collector.store.inspection_sqlite import SQLiteInspections
from collector.store.lease_sqlite import SQLiteLeases
from collector.store.migrate import VERSION_TABLE_DDL, Migration, load_migrations, migrate
from collector.store.notice_sqlite import SQLiteNotices
from collector.store.outbox_sqlite import SQLiteOutbox
from collector.store.portal_sqlite import SQLitePortal
from collector.store.routing_sqlite import PRESENCE_UPSERT, SQLiteRouting
from collector.store.run_rows import (
    RUN_COLUMNS,
    check_limit,
    new_run_values,
    run_from_row,
    run_update_values,
)
from collector.store.session_rows import (
    MUTABLE_SESSION_COLUMNS,
    SESSION_COLUMNS,
    SESSION_EVENT_COLUMNS,
    SessionEventRow,
    check_immutable_session,
    check_session_list,
    mutable_session_values,
    new_session_values,
    session_event_from_row,
    session_event_rows,
    session_from_row,
)
from collector.store.ticket_rows import (
    EVENT_COLUMNS,
    IMMUTABLE_COLUMNS,
    MUTABLE_COLUMNS,
    TICKET_COLUMNS,
    EventRow,
    audit_details,
    check_immutable,
    check_list_filter,
    event_from_row,
    event_rows,
    mutable_values,
    new_ticket_values,
    ticket_from_row,
)
from collector.tickets.errors import TicketNotFound
from collector.tickets.model import Level, NewEvent, NewTicket, Ticket, TicketEvent, TicketState
from common.clock import wall_ms

__all__ = ["SQLiteStore", "Synchronous"]

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]
_Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]

_AGENT_COLUMNS = (
    "agent_id, customer, hostname, enrolled_ms, cert_serial, cert_not_after_ms, "
    "revoked_ms, agent_version, last_seen_ms, session_approval, approval_root"
)
_APPROVER_COLUMNS = (
    "customer, key_fingerprint, name, root_fingerprint, issued_ms, expires_ms, "
    "certificate, added_ms, added_by"
)
_REVOCATION_COLUMNS = (
    "customer, key_fingerprint, root_fingerprint, revoked_ms, revocation, added_ms, added_by"
)
_SELECT_APPROVERS = (
    "SELECT "
    + ", ".join(f"a.{c.strip()}" for c in _APPROVER_COLUMNS.split(","))
    + ", r.revoked_ms FROM approvers AS a LEFT JOIN approver_revocations AS r "
    "ON r.customer = a.customer AND r.key_fingerprint = a.key_fingerprint"
)
_SSH_KEY_COLUMNS = "fingerprint, user_name, key_type, key_base64, comment, added_ms"
_RECORDING_COLUMNS = (
    "session_id, part, kind, command, path, started_ms, ended_ms, size_bytes, sha256, "
    "input_recorded"
)
_USER_COLUMNS = "name, role, customer, created_ms, disabled_ms, token_expires_ms, token_created_ms"
_GAP_COLUMNS = (
    "sequence, first_lost_sequence, last_lost_sequence, lost_batches, "
    "start_ms, end_ms, reason, reported_ms"
)
_AUDIT_COLUMNS = "id, at_ms, actor, action, target, details, prev_hash, hash"

_CLAIM_SEQUENCE = (
    "INSERT INTO ingest_log (agent_id, sequence, kind, received_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (agent_id, sequence) DO NOTHING"
)
_PRUNE_BATCHES = (
    "DELETE FROM ingest_log WHERE kind = 'batch' AND received_ms < ? "
    "AND sequence < (SELECT MAX(newest.sequence) FROM ingest_log AS newest "
    "WHERE newest.agent_id = ingest_log.agent_id) "
    "AND NOT EXISTS (SELECT 1 FROM latest_batches AS lb "
    "WHERE lb.agent_id = ingest_log.agent_id AND lb.sequence = ingest_log.sequence)"
)

_SELECT_TICKET = f"SELECT {', '.join(TICKET_COLUMNS)} FROM tickets"
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM ticket_events"
_INSERT_EVENT = (
    "INSERT INTO ticket_events (ticket_id, at_ms, actor, kind, details) VALUES (?, ?, ?, ?, ?)"
)
_UPDATE_TICKET = (
    f"UPDATE tickets SET {', '.join(f'{c} = ?' for c in MUTABLE_COLUMNS)}, "
    f"updated_ms = ?, version = version + 1 WHERE id = ? AND version = ?"
)
_ACTIVE_BY_DEDUP = (
    "SELECT id FROM tickets WHERE customer = ? AND dedup_key = ? AND state <> 'closed' "
    "ORDER BY id DESC LIMIT 1"
)

_SELECT_RUN = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_RUN_MARKS = ", ".join("?" * len(RUN_COLUMNS))
_INSERT_RUN = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({_RUN_MARKS})"

_SELECT_SESSION = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"
_INSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(SESSION_COLUMNS))})"
)
_UPDATE_SESSION = (
    f"UPDATE sessions SET {', '.join(f'{c} = ?' for c in MUTABLE_SESSION_COLUMNS)}, "
    f"version = version + 1 WHERE session_id = ? AND version = ?"
)
_SELECT_SESSION_EVENTS = f"SELECT {', '.join(SESSION_EVENT_COLUMNS)} FROM session_events"
_INSERT_SESSION_EVENT = (
    "INSERT INTO session_events (session_id, at_ms, actor, kind, details) VALUES (?, ?, ?, ?, ?)"
)


class SQLiteStore(
    SQLiteInspections, SQLitePortal, SQLiteLeases, SQLiteNotices, SQLiteOutbox, SQLiteRouting
):
    """``Store`` on one SQLite file; opening it creates the file and migrates the schema.

    Raises StoreError if the file cannot be opened, MigrationError if its schema is
    newer than this code.
    """

    fold_beside_writer = False  # one connection: the fold waits its turn on the writer

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 10.0,
        history_max_series: int = MAX_SERIES_PER_HOST,
    ) -> None:
        self._path = Path(path)
        self._init_state(history_max_series)
        self._conn: sqlite3.Connection | None = _connect(self._path, synchronous, busy_timeout_s)
        try:
            migrate(_Migrator(self._write), load_migrations("sqlite"), str(self._path), wall_ms())
        except BaseException:
            self.close()
            raise

    def _init_state(self, history_max_series: int) -> None:
        """The in-process state every backend sharing this class's methods needs."""
        self._history_max_series = history_max_series
        self._history_refusals: dict[str, int] = {}
        self._refusals_lock = threading.Lock()  # read at scrape time, off the writer
        # agent id -> its history series ids; written only after a commit, cleared when
        # the roll-up drops series
        self._series_cache: dict[str, Mapping[tuple[str, str], int]] = {}
        # agent id -> what its stored latest batch holds; written only after a commit
        self._latest_layouts: dict[str, Layout] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- transactions -----------------------------------------------------------------

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("BEGIN IMMEDIATE")

    def _history_write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction that also excludes any fold (the roll-up's)."""
        return self._write()  # SQLite folds on the writer too

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("BEGIN")

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """Run the body in one transaction; commit, or roll back on any exception."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"store {self._path} is closed; open it again")
            conn = self._conn
            try:
                conn.execute(begin)
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _store_error(self._path, exc) from exc

    # -- join tokens ------------------------------------------------------------------

    def create_join_token(
        self, token_hash: str, customer: str, expires_ms: int, created_by: str, now_ms: int
    ) -> None:
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO join_tokens "
                    "(token_hash, customer, expires_ms, created_by, created_ms, used_ms) "
                    "VALUES (?, ?, ?, ?, ?, NULL)",
                    (token_hash, customer, expires_ms, created_by, now_ms),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("this join token already exists; generate a new one") from exc

    def consume_join_token(self, token_hash: str, now_ms: int) -> str:
        with self._write() as db:
            row = db.execute(
                "SELECT customer, expires_ms, used_ms FROM join_tokens WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            if row is None:
                raise TokenUnknown()
            customer, expires_ms, used_ms = row
            if used_ms is not None:
                raise TokenUsed(used_ms)
            if now_ms >= expires_ms:
                raise TokenExpired(expires_ms)
            db.execute(
                "UPDATE join_tokens SET used_ms = ? WHERE token_hash = ?", (now_ms, token_hash)
            )
            return str(customer)

    # -- users ------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        role: Role,
        customer: str | None,
        token_hash: str,
        now_ms: int,
        token_expires_ms: int | None = None,
    ) -> User:
        _check_user(role, customer)
        user = User(name, role, customer, now_ms, None, token_expires_ms, now_ms)
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserExists(name)
            try:
                db.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}, token_hash) VALUES ({_marks(8)})",
                    (*_user_row(user), token_hash),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    "this API token is already held by another user; generate a new token"
                ) from exc
        return user

    def get_user(self, name: str) -> User | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)
            ).fetchone()
        return _user(row) if row else None

    def set_user_disabled(self, name: str, disabled_ms: int | None) -> User:
        with self._write() as db:
            updated = db.execute(
                "UPDATE users SET disabled_ms = ? WHERE name = ?", (disabled_ms, name)
            )
            if updated.rowcount == 0:
                raise UnknownUser(name)
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)
            ).fetchone()
        return _user(row)

    def replace_user_token(
        self, name: str, token_hash: str, token_expires_ms: int | None, now_ms: int
    ) -> User:
        with self._write() as db:
            try:
                updated = db.execute(
                    "UPDATE users SET token_hash = ?, token_expires_ms = ?, token_created_ms = ? "
                    "WHERE name = ?",
                    (token_hash, token_expires_ms, now_ms, name),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    "this API token is already held by another user; generate a new token"
                ) from exc
            if updated.rowcount == 0:
                raise UnknownUser(name)
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)
            ).fetchone()
        return _user(row)

    def remove_user(self, name: str) -> User:
        with self._write() as db:
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise UnknownUser(name)
            db.execute("DELETE FROM ssh_keys WHERE user_name = ?", (name,))
            db.execute("DELETE FROM users WHERE name = ?", (name,))
        return _user(row)

    def user_by_token_hash(self, token_hash: str) -> User | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        return _user(row) if row else None

    def list_users(self) -> list[User]:
        with self._read() as db:
            rows = db.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
        return [_user(row) for row in rows]

    # -- agents -----------------------------------------------------------------------

    def add_agent(self, agent: AgentRecord) -> None:
        with self._write() as db:
            try:
                db.execute(
                    f"INSERT INTO agents ({_AGENT_COLUMNS}) VALUES ({_marks(11)})",
                    _agent_row(agent),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    f"agent {agent.agent_id!r} is already enrolled; "
                    f"revoke it first or use a new agent id"
                ) from exc

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        with self._read() as db:
            return _select_agent(db, agent_id)

    def get_agents(self, agent_ids: Sequence[str]) -> list[AgentRecord | None]:
        with self._read() as db:
            rows = _select_in(db, f"SELECT {_AGENT_COLUMNS} FROM agents WHERE agent_id", agent_ids)
        found = {agent.agent_id: agent for agent in (AgentRecord(*row) for row in rows)}
        return [found.get(agent_id) for agent_id in agent_ids]

    def list_agents(self, customer: str | None = None) -> list[AgentRecord]:
        query = f"SELECT {_AGENT_COLUMNS} FROM agents"
        params: tuple[str, ...] = ()
        if customer is not None:
            query += " WHERE customer = ?"
            params = (customer,)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY customer, hostname, agent_id", params)
            return [AgentRecord(*row) for row in rows.fetchall()]

    def revoke_agent(self, agent_id: str, now_ms: int) -> AgentRecord:
        with self._write() as db:
            db.execute(
                "UPDATE agents SET revoked_ms = ? WHERE agent_id = ? AND revoked_ms IS NULL",
                (now_ms, agent_id),
            )
            agent = _select_agent(db, agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    def update_agent_certificate(
        self, agent_id: str, cert_serial: str, cert_not_after_ms: int
    ) -> None:
        self._update_agent(
            agent_id,
            "cert_serial = ?, cert_not_after_ms = ?",
            (cert_serial, cert_not_after_ms),
        )

    def record_hello(
        self,
        agent_id: str,
        hostname: str,
        agent_version: str,
        now_ms: int,
        session_approval: str = "",
        approval_root: str = "",
    ) -> None:
        hello = HelloRecord(
            agent_id, hostname, agent_version, now_ms, session_approval, approval_root
        )
        if self.record_hellos([hello]) == [None]:
            raise UnknownAgent(agent_id)

    def record_hellos(
        self, hellos: Sequence[HelloRecord], replica: str | None = None
    ) -> list[int | None]:
        latest = {h.agent_id: h for h in hellos}  # one row per agent: the last hello wins
        known: set[str] = set()
        last: dict[str, int] = {}
        with self._write() as db:
            ids = sorted(latest)
            for start in range(0, len(ids), 500):  # agent ids per IN (...) list
                chunk = ids[start : start + 500]
                marks = _marks(len(chunk))
                rows = db.execute(f"SELECT agent_id FROM agents WHERE agent_id IN ({marks})", chunk)
                known.update(str(row[0]) for row in rows)
                rows = db.execute(
                    "SELECT agent_id, MAX(sequence) FROM ingest_log "
                    f"WHERE agent_id IN ({marks}) GROUP BY agent_id",
                    chunk,
                )
                last.update((str(agent_id), int(sequence)) for agent_id, sequence in rows)
            found = [h for agent_id, h in sorted(latest.items()) if agent_id in known]
            db.executemany(
                "UPDATE agents SET hostname = ?, agent_version = ?, last_seen_ms = ?, "
                "session_approval = ?, approval_root = ? WHERE agent_id = ?",
                [
                    (
                        h.hostname,
                        h.agent_version,
                        h.seen_ms,
                        h.session_approval,
                        h.approval_root,
                        h.agent_id,
                    )
                    for h in found
                ],
            )
            if replica:
                db.executemany(PRESENCE_UPSERT, [(h.agent_id, replica, h.seen_ms) for h in found])
        return [last.get(h.agent_id, 0) if h.agent_id in known else None for h in hellos]

    def _update_agent(self, agent_id: str, assignments: str, values: tuple[Any, ...]) -> None:
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE agents SET {assignments} WHERE agent_id = ?", (*values, agent_id)
            )
            if cursor.rowcount == 0:
                raise UnknownAgent(agent_id)

    # -- ingest -----------------------------------------------------------------------

    def store_batch(
        self,
        agent_id: str,
        sequence: int,
        collected_ms: int,
        received_ms: int,
        samples: Sequence[StoredSample],
        failures: Sequence[StoredFailure],
    ) -> bool:
        batch = IncomingBatch(
            agent_id, sequence, collected_ms, received_ms, lambda: (samples, failures)
        )
        (outcome,) = self.store_batches([batch])
        if outcome.error is not None:
            raise outcome.error
        return outcome.stored

    def store_batches(self, batches: Sequence[IncomingBatch]) -> list[BatchOutcome]:
        try:
            return self._store_group(batches)
        except CollectorError as exc:
            if len(batches) == 1:
                return [BatchOutcome(False, error=exc)]
        # one batch spoiled the group: store each alone so only that one fails
        outcomes = []
        for batch in batches:
            try:
                outcomes += self._store_group([batch])
            except CollectorError as exc:
                outcomes.append(BatchOutcome(False, error=exc))
        return outcomes

    def _store_group(self, batches: Sequence[IncomingBatch]) -> list[BatchOutcome]:
        """Store ``batches`` in one write transaction (all or none,
        ``collector.store.ingest_rows``); then update the in-process series cache and
        refusal counts from what was committed."""
        with self._write() as db:
            result = store_group(
                db, batches, self._series_cache, self._latest_layouts, self._history_max_series
            )
        self._latest_layouts.update(result.layouts)
        for agent_id, outcome in result.history.items():
            self._series_cache[agent_id] = outcome.known
            if outcome.refused_samples:
                self._count_refusal(agent_id, outcome.refused_series, outcome.refused_samples)
        return [
            BatchOutcome(False) if samples is None else BatchOutcome(True, samples)
            for samples in result.samples
        ]

    def _count_refusal(
        self, agent_id: str, series: Sequence[tuple[str, str]], samples: int
    ) -> None:
        with self._refusals_lock:
            first = agent_id not in self._history_refusals
            self._history_refusals[agent_id] = self._history_refusals.get(agent_id, 0) + samples
        if first:
            log.warning(
                "metric history of agent %s is at its bound of %d series: %d new series "
                "left out (first: %s %s); raise the bound or drop labels (docs/metric-history.md)",
                agent_id,
                self._history_max_series,
                len(series),
                series[0][0],
                series[0][1],
            )

    def store_gap(self, agent_id: str, gap: GapRecord) -> bool:
        check_sequence(gap.sequence)
        with self._write() as db:
            if not _claim_sequence(db, agent_id, gap.sequence, "gap", gap.reported_ms):
                return False
            db.execute(
                f"INSERT INTO gaps (agent_id, {_GAP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    agent_id,
                    gap.sequence,
                    gap.first_lost_sequence,
                    gap.last_lost_sequence,
                    gap.lost_batches,
                    gap.start_ms,
                    gap.end_ms,
                    gap.reason,
                    gap.reported_ms,
                ),
            )
            return True

    def last_sequence(self, agent_id: str) -> int:
        with self._read() as db:
            row = db.execute(
                "SELECT MAX(sequence) FROM ingest_log WHERE agent_id = ?", (agent_id,)
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def latest(self, agent_id: str) -> LatestBatch | None:
        with self._read() as db:
            row = db.execute(
                "SELECT sequence, collected_ms, series, value_bytes, sample_values, failures "
                "FROM latest_batches WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()
        if row is None:
            return None
        sequence, collected_ms, series, value_bytes, values, failures = row
        return LatestBatch(
            sequence=int(sequence),
            collected_ms=int(collected_ms),
            samples=[
                StoredSample(name, labels, value)
                for (name, labels), value in zip(
                    json.loads(series), values_of(value_bytes, values), strict=True
                )
            ],
            failures=[StoredFailure(check, error) for check, error in json.loads(failures)],
        )

    def gaps(self, agent_id: str) -> list[GapRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_GAP_COLUMNS} FROM gaps WHERE agent_id = ? ORDER BY sequence",
                (agent_id,),
            ).fetchall()
        return [GapRecord(*row) for row in rows]

    def stored_sequences(self, agent_id: str) -> list[int]:
        with self._read() as db:
            rows = db.execute(
                "SELECT sequence FROM ingest_log WHERE agent_id = ? AND kind = 'batch' "
                "ORDER BY sequence",
                (agent_id,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def prune_batches(self, older_than_ms: int) -> int:
        with self._write() as db:
            return db.execute(_PRUNE_BATCHES, (older_than_ms,)).rowcount

    # -- metric history ---------------------------------------------------------------

    def metric_history(
        self,
        agent_id: str,
        names: Collection[str],
        since_ms: int,
        until_ms: int,
        labels: Mapping[str, str] | None = None,
        step_ms: int | None = None,
    ) -> list[HistorySeries]:
        check_history_query(since_ms, until_ms, step_ms)
        with self._read() as db:
            return read_history(db, agent_id, set(names), labels or {}, since_ms, until_ms, step_ms)

    def roll_up_history(
        self, now_ms: int, after_series_id: int = 0, max_series: int = 1000
    ) -> HistoryRollup:
        after: str | None = ""
        while after_series_id == 0 and after is not None:  # a pass starts: staged rows first
            _, after = self.fold_history(now_ms, after)
        with self._history_write() as db:
            step = roll_up_history(db, now_ms, after_series_id, max_series)
        if step.series_dropped:
            self._series_cache.clear()
        return step

    def fold_history(
        self, now_ms: int, from_agent: str = "", max_rows: int = 1000
    ) -> tuple[int, str | None]:
        with self._write() as db:
            return fold_history(db, now_ms, from_agent, max_rows)

    def history_refusals(self) -> Mapping[str, int]:
        with self._refusals_lock:
            return dict(self._history_refusals)

    # -- audit log --------------------------------------------------------------------

    def append_audit(
        self, actor: str, action: str, target: str, details: Mapping[str, Any], at_ms: int
    ) -> AuditEntry:
        with self._write() as db:
            return _append_audit(db, actor, action, target, details, at_ms)

    def audit_entries(self, after_id: int = 0) -> list[AuditEntry]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id", (after_id,)
            ).fetchall()
        return [_audit_entry(row) for row in rows]

    def audit_hashes(self, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT id, prev_hash, hash FROM audit_log WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [(int(row[0]), str(row[1]), str(row[2])) for row in rows]

    # -- tickets ----------------------------------------------------------------------

    def create_ticket(self, new: NewTicket, opened: NewEvent) -> Ticket:
        return self.create_tickets([(new, opened)])[0]

    def create_tickets(self, items: Sequence[tuple[NewTicket, NewEvent]]) -> list[Ticket]:
        rows = [
            (new, new_ticket_values(new, opened.at_ms), event_rows([opened])[0])
            for new, opened in items
        ]
        with self._write() as db:
            return [_insert_ticket(db, new, values, event) for new, values, event in rows]

    def get_ticket(self, ticket_id: int) -> Ticket | None:
        with self._read() as db:
            row = db.execute(f"{_SELECT_TICKET} WHERE id = ?", (ticket_id,)).fetchone()
        return ticket_from_row(row) if row else None

    def find_ticket_by_dedup(self, customer: str, dedup_key: str) -> Ticket | None:
        with self._read() as db:
            row = db.execute(
                f"{_SELECT_TICKET} WHERE customer = ? AND dedup_key = ? ORDER BY id DESC LIMIT 1",
                (customer, dedup_key),
            ).fetchone()
        return ticket_from_row(row) if row else None

    def find_tickets_by_dedup(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], Ticket]:
        by_customer: dict[str, list[str]] = {}
        for customer, dedup_key in keys:
            by_customer.setdefault(customer, []).append(dedup_key)
        found: dict[tuple[str, str], Ticket] = {}
        with self._read() as db:
            for customer, dedup_keys in by_customer.items():
                head = f"{_SELECT_TICKET} WHERE customer = ? AND dedup_key"
                rows = _select_in(db, head, dedup_keys, " ORDER BY id", before=(customer,))
                for row in rows:  # ascending ids in each IN list: the newest per key is kept
                    ticket = ticket_from_row(row)
                    found[(customer, str(ticket.dedup_key))] = ticket
        return found

    def list_tickets(
        self,
        customer: str | None = None,
        states: Collection[TicketState] | None = None,
        level: Level | None = None,
        limit: int = 500,
    ) -> list[Ticket]:
        check_list_filter(states, level, limit)
        if states is not None and not states:
            return []
        where, params = _ticket_filter(customer, states, level)
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_TICKET}{where} ORDER BY id DESC LIMIT ?", (*params, limit)
            ).fetchall()
        return [ticket_from_row(row) for row in rows]

    def update_ticket(self, ticket: Ticket, events: Sequence[NewEvent]) -> Ticket:
        values = mutable_values(ticket)
        rows = event_rows(events)
        with self._write() as db:
            stored = _ticket_head(db, ticket.id)
            check_immutable(ticket, stored)
            if stored["version"] != ticket.version:
                raise _version_conflict(ticket.id)
            updated_ms = max([stored["updated_ms"], *(e.at_ms for e in rows)])
            try:
                cursor = db.execute(
                    _UPDATE_TICKET, (*values, updated_ms, ticket.id, ticket.version)
                )
            except sqlite3.IntegrityError as exc:
                raise _dedup_conflict(ticket.customer, ticket.dedup_key) from exc
            if cursor.rowcount != 1:
                raise _version_conflict(ticket.id)
            _insert_events(db, ticket.id, rows)
            return _select_ticket(db, ticket.id)

    def add_ticket_events(self, ticket_id: int, events: Sequence[NewEvent]) -> list[TicketEvent]:
        rows = event_rows(events)
        with self._write() as db:
            _ticket_head(db, ticket_id)
            return _insert_events(db, ticket_id, rows)

    def _ticket_events_in(
        self, db: sqlite3.Connection, ticket_id: int, events: Sequence[NewEvent]
    ) -> None:
        """Add ``events`` to a ticket inside the caller's write transaction (the outbox
        records a delivery on the ticket together with its mark)."""
        _ticket_head(db, ticket_id)
        _insert_events(db, ticket_id, event_rows(events))

    def _audits_in(self, db: sqlite3.Connection, audits: Sequence[OutboxAudit]) -> None:
        """Chain ``audits`` (actor "system") onto the audit log inside the caller's write
        transaction (the outbox records a delivery together with its mark)."""
        for audit in audits:
            _append_audit(db, "system", audit.action, audit.target, audit.details, audit.at_ms)

    def ticket_events(self, ticket_id: int) -> list[TicketEvent]:
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_EVENTS} WHERE ticket_id = ? ORDER BY id", (ticket_id,)
            ).fetchall()
        return [event_from_row(row) for row in rows]

    def ticket_events_many(self, ticket_ids: Collection[int]) -> dict[int, list[TicketEvent]]:
        timelines: dict[int, list[TicketEvent]] = {int(i): [] for i in ticket_ids}
        if not timelines:
            return timelines
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_EVENTS} WHERE ticket_id IN (SELECT value FROM json_each(?)) ORDER BY id",
                (json.dumps(sorted(timelines)),),
            ).fetchall()
        for row in rows:
            event = event_from_row(row)
            timelines[event.ticket_id].append(event)
        return timelines

    # -- playbook runs ----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> RunRecord:
        stored, values = new_run_values(run)
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone():
                raise _run_exists(run.run_id)
            try:
                db.execute(_INSERT_RUN, values)
            except sqlite3.IntegrityError as exc:  # another writer won the race
                raise _run_exists(run.run_id) from exc
        return stored

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._read() as db:
            row = db.execute(f"{_SELECT_RUN} WHERE run_id = ?", (run_id,)).fetchone()
        return run_from_row(row) if row else None

    def list_runs(
        self,
        customer: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        *,
        ticket_id: int | None = None,
    ) -> list[RunRecord]:
        check_limit(limit)
        conditions: list[str] = []
        params: list[Any] = []
        filters = (("customer", customer), ("agent_id", agent_id), ("ticket_id", ticket_id))
        for column, value in filters:
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_RUN}{where} ORDER BY requested_ms DESC, run_id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [run_from_row(row) for row in rows]

    def update_run(
        self,
        run_id: str,
        *,
        state: RunState | None = None,
        message: str | None = None,
        at_ms: int,
        finished_ms: int | None = None,
        result: Mapping[str, Any] | None = None,
        output_bytes: int | None = None,
        output_sha256: str | None = None,
        approved_by: str | None = None,
        signed_approval: bytes | None = None,
    ) -> RunRecord:
        with self._write() as db:
            current = _select_run(db, run_id)
            if current.state in FINISHED_RUN_STATES:
                raise _run_finished(current)
            values = run_update_values(
                run_id,
                current.state,
                state=state,
                message=message,
                at_ms=at_ms,
                finished_ms=finished_ms,
                result=result,
                output_bytes=output_bytes,
                output_sha256=output_sha256,
                approved_by=approved_by,
                signed_approval=signed_approval,
            )
            # The state guard keeps a finished run final even where another writer
            # could finish it between the read and the update (PostgreSQL).
            finished = sorted(FINISHED_RUN_STATES)
            cursor = db.execute(
                f"UPDATE runs SET {', '.join(f'{c} = ?' for c in values)} "
                f"WHERE run_id = ? AND state NOT IN ({_marks(len(finished))})",
                (*values.values(), run_id, *finished),
            )
            if cursor.rowcount != 1:
                raise _run_finished(_select_run(db, run_id))
            return _select_run(db, run_id)

    # -- remote sessions --------------------------------------------------------------

    def create_session(self, session: RemoteSession, requested: NewSessionEvent) -> RemoteSession:
        stored, values = new_session_values(session)
        rows = session_event_rows([requested])
        with self._write() as db:
            if _session_row(db, session.session_id) is not None:
                raise _session_exists(session.session_id)
            try:
                db.execute(_INSERT_SESSION, values)
            except sqlite3.IntegrityError as exc:  # another writer won the race
                raise _session_exists(session.session_id) from exc
            _insert_session_events(db, session.session_id, rows)
        return stored

    def get_session(self, session_id: str) -> RemoteSession | None:
        with self._read() as db:
            return _session_row(db, session_id)

    def list_sessions(
        self,
        customer: str | None = None,
        engineer: str | None = None,
        states: Collection[SessionState] | None = None,
        limit: int = 100,
        agent_id: str | None = None,
    ) -> list[RemoteSession]:
        check_session_list(states, limit)
        if states is not None and not states:
            return []
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("customer", customer),
            ("engineer", engineer),
            ("agent_id", agent_id),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if states is not None:
            chosen = sorted(set(states))
            conditions.append(f"state IN ({_marks(len(chosen))})")
            params.extend(chosen)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_SESSION}{where} ORDER BY requested_ms DESC, session_id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [session_from_row(row) for row in rows]

    def pending_sessions_of(self, agent_ids: Sequence[str]) -> list[list[RemoteSession]]:
        head = f"{_SELECT_SESSION} WHERE state = 'pending' AND agent_id"
        with self._read() as db:
            rows = _select_in(db, head, agent_ids, " ORDER BY requested_ms DESC, session_id")
        found: dict[str, list[RemoteSession]] = {}
        for session in map(session_from_row, rows):
            found.setdefault(session.agent_id, []).append(session)
        return [found.get(agent_id, []) for agent_id in agent_ids]

    def update_session(
        self, session: RemoteSession, events: Sequence[NewSessionEvent]
    ) -> RemoteSession:
        values = mutable_session_values(session)
        rows = session_event_rows(events)
        with self._write() as db:
            stored = _session_row(db, session.session_id)
            if stored is None:
                raise SessionNotFound(session.session_id)
            check_immutable_session(session, stored)
            cursor = db.execute(_UPDATE_SESSION, (*values, session.session_id, session.version))
            if cursor.rowcount != 1:
                raise Conflict(
                    f"session {session.session_id} changed meanwhile (stored version "
                    f"{stored.version}, given {session.version}); read it again and retry"
                )
            _insert_session_events(db, session.session_id, rows)
            updated = _session_row(db, session.session_id)
        if updated is None:  # pragma: no cover - just updated in this transaction
            raise SessionNotFound(session.session_id)
        return updated

    def session_events(self, session_id: str) -> list[SessionEvent]:
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_SESSION_EVENTS} WHERE session_id = ? ORDER BY id", (session_id,)
            ).fetchall()
        return [session_event_from_row(row) for row in rows]

    # -- customer approvers -----------------------------------------------------------

    def add_approver(self, approver: ApproverRecord) -> ApproverRecord:
        _check_approver(approver)
        with self._write() as db:
            revoked = db.execute(
                "SELECT revoked_ms FROM approver_revocations "
                "WHERE customer = ? AND key_fingerprint = ?",
                (approver.customer, approver.key_fingerprint),
            ).fetchone()
            if revoked:
                raise Conflict(
                    f"approver key {approver.key_fingerprint} of {approver.customer} is "
                    "revoked; certify a new key (`aftercare approvers key`)"
                )
            db.execute(
                "DELETE FROM approvers WHERE customer = ? AND key_fingerprint = ?",
                (approver.customer, approver.key_fingerprint),
            )
            db.execute(
                f"INSERT INTO approvers ({_APPROVER_COLUMNS}) VALUES ({_marks(9)})",
                astuple(replace(approver, revoked_ms=None))[:9],
            )
        return replace(approver, revoked_ms=None)

    def list_approvers(self, customer: str | None = None) -> list[ApproverRecord]:
        where, params = (" WHERE a.customer = ?", (customer,)) if customer is not None else ("", ())
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_APPROVERS}{where} ORDER BY a.customer, a.name, a.key_fingerprint",
                params,
            ).fetchall()
        return [_approver(row) for row in rows]

    def add_revocation(self, revocation: RevocationRecord) -> RevocationRecord:
        _check_revocation(revocation)
        key = (revocation.customer, revocation.key_fingerprint)
        with self._write() as db:
            db.execute(
                f"INSERT INTO approver_revocations ({_REVOCATION_COLUMNS}) "
                f"VALUES ({_marks(7)}) ON CONFLICT (customer, key_fingerprint) DO NOTHING",
                astuple(revocation),
            )
            row = db.execute(
                f"SELECT {_REVOCATION_COLUMNS} FROM approver_revocations "
                "WHERE customer = ? AND key_fingerprint = ?",
                key,
            ).fetchone()
        return _revocation(row)

    def list_revocations(self, customer: str | None = None) -> list[RevocationRecord]:
        where, params = (" WHERE customer = ?", (customer,)) if customer is not None else ("", ())
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_REVOCATION_COLUMNS} FROM approver_revocations{where} "
                "ORDER BY customer, added_ms, key_fingerprint",
                params,
            ).fetchall()
        return [_revocation(row) for row in rows]

    def revocations_of(self, customers: Sequence[str]) -> list[list[RevocationRecord]]:
        head = f"SELECT {_REVOCATION_COLUMNS} FROM approver_revocations WHERE customer"
        with self._read() as db:
            rows = _select_in(db, head, customers, " ORDER BY customer, added_ms, key_fingerprint")
        found: dict[str, list[RevocationRecord]] = {}
        for revocation in map(_revocation, rows):
            found.setdefault(revocation.customer, []).append(revocation)
        return [found.get(customer, []) for customer in customers]

    # -- SSH keys and session recordings ----------------------------------------------

    def add_ssh_key(self, key: SshKeyRecord) -> SshKeyRecord:
        with self._write() as db:
            try:
                db.execute(
                    f"INSERT INTO ssh_keys ({_SSH_KEY_COLUMNS}) VALUES ({_marks(6)})",
                    (
                        key.fingerprint,
                        key.user,
                        key.key_type,
                        key.key_base64,
                        key.comment,
                        key.added_ms,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    f"key {key.fingerprint} is already registered; each key belongs to one "
                    f"user (`aftercare keys list` shows yours)"
                ) from exc
        return key

    def ssh_key(self, fingerprint: str) -> SshKeyRecord | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_SSH_KEY_COLUMNS} FROM ssh_keys WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
        return SshKeyRecord(*row) if row else None

    def list_ssh_keys(self, user: str | None = None) -> list[SshKeyRecord]:
        query = f"SELECT {_SSH_KEY_COLUMNS} FROM ssh_keys"
        params: tuple[str, ...] = ()
        if user is not None:
            query += " WHERE user_name = ?"
            params = (user,)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY user_name, added_ms, fingerprint", params)
            return [SshKeyRecord(*row) for row in rows.fetchall()]

    def remove_ssh_key(self, fingerprint: str, user: str | None = None) -> SshKeyRecord:
        with self._write() as db:
            row = db.execute(
                f"SELECT {_SSH_KEY_COLUMNS} FROM ssh_keys WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            if row is None or (user is not None and row[1] != user):
                raise NotFound(f"no key {fingerprint} is registered for you")
            db.execute("DELETE FROM ssh_keys WHERE fingerprint = ?", (fingerprint,))
        return SshKeyRecord(*row)

    def add_recording(self, recording: RecordingRecord) -> RecordingRecord:
        with self._write() as db:
            if _session_row(db, recording.session_id) is None:
                raise SessionNotFound(recording.session_id)
            (last,) = db.execute(
                "SELECT COALESCE(MAX(part), 0) FROM session_recordings WHERE session_id = ?",
                (recording.session_id,),
            ).fetchone()
            stored = replace(recording, part=int(last) + 1)
            db.execute(
                f"INSERT INTO session_recordings ({_RECORDING_COLUMNS}) VALUES ({_marks(10)})",
                astuple(stored),
            )
        return stored

    def finish_recording(
        self, session_id: str, part: int, ended_ms: int, size_bytes: int, sha256: str
    ) -> RecordingRecord:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE session_recordings SET ended_ms = ?, size_bytes = ?, sha256 = ? "
                "WHERE session_id = ? AND part = ?",
                (ended_ms, size_bytes, sha256, session_id, part),
            )
            if cursor.rowcount != 1:
                raise NotFound(f"session {session_id} has no recording part {part}")
            row = db.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM session_recordings "
                "WHERE session_id = ? AND part = ?",
                (session_id, part),
            ).fetchone()
        return _recording(row)

    def list_recordings(self, session_id: str) -> list[RecordingRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM session_recordings "
                "WHERE session_id = ? ORDER BY part",
                (session_id,),
            ).fetchall()
        return [_recording(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise _store_error(self._path, exc) from exc


class _Migrator:
    """``MigrationTarget`` over a store's write transactions."""

    def __init__(self, write: _Transaction) -> None:
        self._write = write

    def applied_version(self) -> int:
        with self._write() as db:
            db.execute(VERSION_TABLE_DDL)
            return _applied_version(db)

    def apply(self, migration: Migration, now_ms: int) -> None:
        with self._write() as db:
            if _applied_version(db) >= migration.version:
                return  # another process got there first
            for statement in migration.statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                (migration.version, now_ms),
            )


# -- helpers --------------------------------------------------------------------------


def _connect(path: Path, synchronous: Synchronous, busy_timeout_s: float) -> sqlite3.Connection:
    """Open the file in autocommit mode (transactions are explicit) with our pragmas."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ConfigError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
    try:
        _create_private(path)  # SQLite gives -wal and -shm the database file's mode
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open SQLite database {path}: {exc}; check that its directory exists "
            f"and is writable by this user"
        ) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        _enable_wal(conn, path, busy_timeout_s)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise _store_error(path, exc) from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _create_private(path: Path) -> None:
    """Create a missing database file with mode 0600 (an existing one is left as is)."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot create {path}: {exc.strerror or exc}") from exc


def _enable_wal(conn: sqlite3.Connection, path: Path, timeout_s: float) -> None:
    """Switch to WAL (persistent in the file). While another connection is switching
    the same new file, SQLite reports "locked" at once without using the busy
    handler, so retry here until the busy timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
    if str(mode).lower() != "wal":
        raise StoreError(
            f"SQLite database {path} cannot use WAL mode (got {mode!r}); "
            f"put the data directory on a local filesystem"
        )


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"SQLite database {path} is busy ({text}): another process held the write "
            f"lock past the busy timeout; retry, and look for a stuck aftercare command"
        )
    return StoreError(f"SQLite error on {path}: {text}")


def _applied_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _check_user(role: str, customer: str | None) -> None:
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if role == "customer" and not customer:
        raise InvalidRequest("a customer user needs a customer; name the customer it belongs to")


def _as_role(value: str) -> Role:
    for role in ROLES:
        if role == value:
            return role
    raise StoreError(f"users table holds unknown role {value!r}; the database is corrupt")


def _user(row: Sequence[Any]) -> User:
    return User(
        name=row[0],
        role=_as_role(row[1]),
        customer=row[2],
        created_ms=row[3],
        disabled_ms=row[4],
        token_expires_ms=row[5],
        token_created_ms=row[6] if row[6] is not None else row[3],
    )


def _user_row(user: User) -> tuple[Any, ...]:
    return (
        user.name,
        user.role,
        user.customer,
        user.created_ms,
        user.disabled_ms,
        user.token_expires_ms,
        user.token_created_ms,
    )


def _recording(row: Sequence[Any]) -> RecordingRecord:
    session_id, part, kind, command, path, started, ended, size, sha256, input_recorded = row
    return RecordingRecord(
        session_id, part, kind, command, path, started, ended, size, sha256, bool(input_recorded)
    )


def _agent_row(agent: AgentRecord) -> tuple[Any, ...]:
    return (
        agent.agent_id,
        agent.customer,
        agent.hostname,
        agent.enrolled_ms,
        agent.cert_serial,
        agent.cert_not_after_ms,
        agent.revoked_ms,
        agent.agent_version,
        agent.last_seen_ms,
        agent.session_approval,
        agent.approval_root,
    )


def _check_approver(approver: ApproverRecord) -> None:
    for name in ("customer", "key_fingerprint", "name", "root_fingerprint", "added_by"):
        if not getattr(approver, name):
            raise InvalidRequest(f"approver: {name} must not be empty")
    if not approver.certificate:
        raise InvalidRequest("approver: certificate must not be empty")


def _check_revocation(revocation: RevocationRecord) -> None:
    for name in ("customer", "key_fingerprint", "root_fingerprint", "added_by"):
        if not getattr(revocation, name):
            raise InvalidRequest(f"revocation: {name} must not be empty")
    if not revocation.revocation:
        raise InvalidRequest("revocation: the signed document must not be empty")


def _approver(row: Sequence[Any]) -> ApproverRecord:
    values = list(row)
    values[6] = bytes(values[6])
    return ApproverRecord(*values)


def _revocation(row: Sequence[Any]) -> RevocationRecord:
    values = list(row)
    values[4] = bytes(values[4])
    return RevocationRecord(*values)


def _select_agent(db: sqlite3.Connection, agent_id: str) -> AgentRecord | None:
    row = db.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE agent_id = ?", (agent_id,)
    ).fetchone()
    return AgentRecord(*row) if row else None


def _claim_sequence(
    db: sqlite3.Connection, agent_id: str, sequence: int, kind: str, received_ms: int
) -> bool:
    """Record (agent, sequence) as stored; False if it already was."""
    try:
        cursor = db.execute(_CLAIM_SEQUENCE, (agent_id, sequence, kind, received_ms))
    except sqlite3.IntegrityError as exc:  # foreign key: no such agent
        raise UnknownAgent(agent_id) from exc
    return cursor.rowcount == 1


def _append_audit(
    db: sqlite3.Connection,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    at_ms: int,
) -> AuditEntry:
    """Chain one entry onto the audit log inside the caller's write transaction."""
    details_json = _details_json(details)
    stored_details: dict[str, Any] = json.loads(details_json)
    row = db.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    prev_id, prev_hash = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
    digest = entry_hash(prev_hash, at_ms, actor, action, target, stored_details)
    entry = AuditEntry(prev_id + 1, at_ms, actor, action, target, stored_details, prev_hash, digest)
    db.execute(
        f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.id, at_ms, actor, action, target, details_json, prev_hash, digest),
    )
    return entry


def _details_json(details: Mapping[str, Any]) -> str:
    try:
        return canonical_json(dict(details))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"audit details must be plain JSON data: {exc}") from exc


def _audit_entry(row: Sequence[Any]) -> AuditEntry:
    entry_id, at_ms, actor, action, target, details, prev_hash, digest = row
    try:
        parsed = json.loads(details)
    except ValueError as exc:
        raise StoreError(
            f"audit entry {entry_id} has unreadable details: the audit log is corrupt "
            f"or was tampered with"
        ) from exc
    return AuditEntry(entry_id, at_ms, actor, action, target, parsed, prev_hash, digest)


# -- ticket helpers -------------------------------------------------------------------


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _select_in(
    db: sqlite3.Connection,
    head: str,
    keys: Collection[str],
    tail: str = "",
    before: Sequence[Any] = (),
) -> list[Any]:
    """Rows of ``{head} IN (keys){tail}`` for every distinct key, one IN list of bounded
    size at a time (``before``: the parameters of ``head``). ``tail``'s order holds
    within each list, so rows of one key keep it."""
    rows: list[Any] = []
    for chunk in chunks(sorted(set(keys))):
        sql = f"{head} IN ({_marks(len(chunk))}){tail}"
        rows += db.execute(sql, (*before, *chunk)).fetchall()
    return rows


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id the database gave the inserted row (PostgreSQL: ``RETURNING id``; here
    ``lastrowid``, as RETURNING needs SQLite 3.35)."""
    if cursor.lastrowid is None:  # pragma: no cover - an INSERT always sets it
        raise StoreError("SQLite returned no id for an inserted row")
    return cursor.lastrowid


def _ticket_filter(
    customer: str | None, states: Collection[str] | None, level: str | None
) -> tuple[str, list[Any]]:
    """The WHERE clause (empty, or with a leading space) and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    if customer is not None:
        conditions.append("customer = ?")
        params.append(customer)
    if states is not None:
        chosen = sorted(set(states))
        conditions.append(f"state IN ({_marks(len(chosen))})")
        params.extend(chosen)
    if level is not None:
        conditions.append("level = ?")
        params.append(level)
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


def _select_ticket(db: sqlite3.Connection, ticket_id: int) -> Ticket:
    row = db.execute(f"{_SELECT_TICKET} WHERE id = ?", (ticket_id,)).fetchone()
    if row is None:
        raise _unknown_ticket(ticket_id)
    return ticket_from_row(row)


def _ticket_head(db: sqlite3.Connection, ticket_id: int) -> dict[str, Any]:
    """The columns an update checks; raises NotFound for an unknown ticket."""
    columns = (*IMMUTABLE_COLUMNS, "updated_ms", "version")
    row = db.execute(
        f"SELECT {', '.join(columns)} FROM tickets WHERE id = ?", (ticket_id,)
    ).fetchone()
    if row is None:
        raise _unknown_ticket(ticket_id)
    return dict(zip(columns, row, strict=True))


def _insert_ticket(
    db: sqlite3.Connection, new: NewTicket, values: dict[str, Any], event: EventRow
) -> Ticket:
    """Insert one ticket and its opening event (with its audit entry); Conflict if its
    fault already has an active ticket."""
    if new.dedup_key is not None:
        _refuse_second_active(db, new.customer, new.dedup_key)
    insert = f"INSERT INTO tickets ({', '.join(values)}) VALUES ({_marks(len(values))})"
    try:
        ticket_id = _inserted_id(db.execute(insert, tuple(values.values())))
    except sqlite3.IntegrityError as exc:  # another writer won the race
        raise _dedup_conflict(new.customer, new.dedup_key) from exc
    _insert_events(db, ticket_id, [event])
    return _select_ticket(db, ticket_id)


def _refuse_second_active(db: sqlite3.Connection, customer: str, dedup_key: str) -> None:
    row = db.execute(_ACTIVE_BY_DEDUP, (customer, dedup_key)).fetchone()
    if row is not None:
        raise Conflict(
            f"ticket {row[0]} is already active for customer {customer!r} and "
            f"de-duplication key {dedup_key!r}; add to that ticket instead"
        )


def _insert_events(
    db: sqlite3.Connection, ticket_id: int, rows: Sequence[EventRow]
) -> list[TicketEvent]:
    """Insert the events and, in the same transaction, one audit entry per event
    (action ``ticket.KIND``, target ``ticket:ID``): every ticket act is also in the
    hash-chained audit log."""
    stored = []
    for row in rows:
        event_id = _inserted_id(db.execute(_INSERT_EVENT, row.values(ticket_id)))
        event = row.event(event_id, ticket_id)
        stored.append(event)
        _append_audit(
            db,
            row.actor,
            f"ticket.{row.kind}",
            f"ticket:{ticket_id}",
            audit_details(event),
            row.at_ms,
        )
    return stored


def _unknown_ticket(ticket_id: int) -> TicketNotFound:
    return TicketNotFound(ticket_id)


def _version_conflict(ticket_id: int) -> Conflict:
    return Conflict(f"ticket {ticket_id} changed meanwhile; retry")


def _dedup_conflict(customer: str, dedup_key: str | None) -> Conflict:
    return Conflict(
        f"another ticket is already active for customer {customer!r} and "
        f"de-duplication key {dedup_key!r} (one fault, one ticket); look the key up "
        f"again and update that ticket"
    )


# -- run helpers ----------------------------------------------------------------------


def _select_run(db: sqlite3.Connection, run_id: str) -> RunRecord:
    row = db.execute(f"{_SELECT_RUN} WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(run_id)
    return run_from_row(row)


def _run_exists(run_id: str) -> Conflict:
    return Conflict(f"run {run_id!r} already exists; start the run under a new id")


def _run_finished(run: RunRecord) -> Conflict:
    return Conflict(
        f"run {run.run_id!r} already finished ({run.state}); a finished run never "
        f"changes again, so this late update was not stored"
    )


# -- session helpers ------------------------------------------------------------------


def _session_row(db: sqlite3.Connection, session_id: str) -> RemoteSession | None:
    row = db.execute(f"{_SELECT_SESSION} WHERE session_id = ?", (session_id,)).fetchone()
    return session_from_row(row) if row else None


def _insert_session_events(
    db: sqlite3.Connection, session_id: str, rows: Sequence[SessionEventRow]
) -> list[SessionEvent]:
    stored = []
    for row in rows:
        event_id = _inserted_id(db.execute(_INSERT_SESSION_EVENT, row.values(session_id)))
        stored.append(row.event(event_id, session_id))
    return stored


def _session_exists(session_id: str) -> Conflict:
    return Conflict(f"session {session_id} already exists; request it again under a new id")
