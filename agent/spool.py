"""The agent's on-disk spool: metric batches kept until the collector acknowledges them.

Store and forward. Every batch the sampler produces is appended here first, with the
next per-agent sequence number, as a serialized ``AgentMessage``; the stream sends
``pending()`` entries and calls ``ack()`` once the collector says an entry is durable.

Durability: one SQLite file (``STATE/spool.db``), WAL, ``synchronous=FULL``, one small
transaction per append, so an entry that ``append_batch`` returned survives a crash or
power loss - and only then may it be sent.

Lazy acks: ``ack_later`` only notes an acknowledged sequence in memory (no I/O, no
lock: safe from the event loop); the next append, ``advance_sequence`` or ``close``
deletes the noted entries in its own transaction, so a cycle costs one fsynced commit,
not two. An acknowledged entry that a crash kept is sent again after the restart and
the collector de-duplicates it by sequence. ``ack`` deletes at once (its own commit).

The file is created 0600. While a Spool is open it holds an exclusive ``flock`` on
``spool.db.lock``, so a second agent on the same state
directory fails with SpoolError instead of reusing sequence numbers; ``read_stats``
reads the file without that lock (for ``aftercare-agent status`` while the agent runs).

Bounds and loss. The spool holds at most ``max_bytes`` of payload and no batch older
than ``max_age_seconds`` (collection time against ``clock``). Beyond that the oldest
batches are dropped and the loss is written as a ``Gap`` entry with its own sequence
("spool size limit" / "spool age limit"): loss is never silent. Rules:

* Gap entries are never dropped (they are tiny), so with nothing but gaps left the
  spool may stay above ``max_bytes``.
* A drop extends the newest gap entry instead of adding another when that gap has the
  same reason, has not been handed out by ``pending()`` yet (it could already be stored
  by the collector, which de-duplicates by sequence) and has a higher sequence than
  the dropped batch. A long outage with a full spool therefore adds one gap per
  spool-full of dropped batches, not one per batch.
* Gap ranges: every batch in ``[first_lost_sequence, last_lost_sequence]`` was dropped
  unless the collector has it already (an entry in flight when it was dropped);
  other sequences in the range belong to gap entries. ``lost_batches`` is exact.
* A single batch larger than ``max_bytes`` is not stored; it is recorded as lost.

Write failures (disk full, I/O error): ``append_batch`` does not raise. The batch's
sequence is consumed, the loss is kept in memory (sequences, count, collection times,
error) and logged, and the next append that succeeds also writes a Gap entry (reason
"spool write failed: <error>") covering it. A loss still in memory when the agent
stops is only logged. ``ack`` failures are logged too: the entry is simply sent
again and the collector de-duplicates it.

Corrupt file: when opening finds the file is not a usable SQLite database (or fails
``PRAGMA quick_check``), it is moved aside to ``spool.db.corrupt-<unix time>`` (with
its -wal/-shm files), a fresh spool is started, and its first entry is a Gap with
reason "spool file corrupt: ..." and ``lost_batches == 0`` meaning "unknown".
Problems that are not corruption (permissions, a locked file, a newer schema) raise
SpoolError and touch nothing.

Sequence reuse. The next sequence is stored in the file and never reused, even
after every entry is acked. A spool created fresh (new or moved-aside file) does not
know what the collector already holds; ``advance_sequence`` (called with the
Welcome's ``last_sequence`` before anything is sent) moves the next sequence past it
and, for a fresh spool only, renumbers the entries written meanwhile so the collector
does not discard them as duplicates.

Thread-safe: every method takes an internal lock, so the agent can call it from
worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from agent.batch_encoding import agent_message_with_sequence
from agent.errors import SpoolError
from common.clock import Clock
from proto import agent_pb2

__all__ = [
    "REASON_AGE",
    "REASON_CORRUPT",
    "REASON_SIZE",
    "REASON_WRITE_FAILED",
    "Spool",
    "SpoolEntry",
    "SpoolStats",
    "read_stats",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REASON_SIZE = "spool size limit"
REASON_AGE = "spool age limit"
REASON_WRITE_FAILED = "spool write failed"  # followed by ": <error>"
REASON_CORRUPT = "spool file corrupt"  # followed by ": moved aside to <path> (<error>)"

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE entries (
    sequence INTEGER PRIMARY KEY,   -- the AgentMessage's sequence
    kind     TEXT    NOT NULL CHECK (kind IN ('batch', 'gap')),
    unix_ms  INTEGER NOT NULL,      -- batch: collection time; gap: when recorded
    size     INTEGER NOT NULL,      -- length(payload)
    payload  BLOB    NOT NULL       -- serialized aftercare.v1.AgentMessage
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
_INSERT = "INSERT INTO entries (sequence, kind, unix_ms, size, payload) VALUES (?, ?, ?, ?, ?)"
_BUSY_TIMEOUT_MS = 1000
_WAL_SIZE_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class SpoolEntry:
    """One message waiting for the collector's ack."""

    sequence: int
    payload: bytes  # serialized aftercare.v1.AgentMessage (batch or gap), sequence set


@dataclass(frozen=True)
class SpoolStats:
    """A snapshot for logs and metrics."""

    entries: int
    bytes: int  # payload bytes of all entries
    oldest_unix_ms: int | None  # time of the lowest-sequence entry (see _SCHEMA.unix_ms)
    next_sequence: int
    dropped_batches_total: int  # ever, including losses not yet written as a gap


@dataclass
class _State:
    """Counters mirrored from the file; persisted fields live in the meta table."""

    next_sequence: int = 1
    dropped_batches_total: int = 0
    open_gap: int = 0  # sequence of the gap entry drops may extend; 0 = none
    confirmed: int = 0  # 1 once advance_sequence ran: the numbering is the collector's
    entries: int = 0  # not persisted (derived from the entries table)
    bytes: int = 0  # not persisted

    PERSISTED: ClassVar[tuple[str, ...]] = (
        "next_sequence",
        "dropped_batches_total",
        "open_gap",
        "confirmed",
    )


@dataclass
class _Loss:
    """Batches that could not be written, kept in memory until a write succeeds."""

    first: int
    last: int
    count: int
    start_ms: int
    end_ms: int
    error: str


@dataclass(frozen=True)
class _Row:
    sequence: int
    unix_ms: int
    size: int


class Spool:
    """The spool file at ``path``; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_age_seconds: float,
        clock: Clock = time.time,
        max_file_bytes: int | None = None,
    ) -> None:
        """Open (or create) the spool; raise SpoolError if it cannot be used.

        ``max_file_bytes`` optionally caps the database file (SQLite
        ``max_page_count``); past it, appends fail exactly as on a full disk.
        """
        self._path = path
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_seconds * 1000)
        self._clock = clock
        self._max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._acked: collections.deque[int] = collections.deque()  # see ack_later
        self._loss: _Loss | None = None
        self._conn: sqlite3.Connection | None = None
        self._state = _State()
        self._lock_fd = _lock_exclusively(path)
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._enforce_at_open()

    # --- public API --------------------------------------------------------------

    def append_batch(self, batch: agent_pb2.MetricBatch) -> int:
        """Set ``batch.sequence`` to the next sequence, store the batch, enforce the bounds.

        Returns the sequence. Never raises for write failures (see module docstring).
        """
        return self.append_entry(batch)[0]

    def append_entry(self, batch: agent_pb2.MetricBatch) -> tuple[int, SpoolEntry | None]:
        """``append_batch``, also returning the stored entry: durable once this returns.

        The entry is None when the batch was not stored (write failure, or larger than
        the spool's bound). Deletes the entries noted by ``ack_later`` in the same
        transaction.
        """

        def payload(sequence: int) -> bytes:
            batch.sequence = sequence
            return agent_pb2.AgentMessage(batch=batch).SerializeToString()

        return self._append(batch.collected_unix_ms, payload)

    def append_encoded(self, collected_ms: int, body: bytes) -> tuple[int, SpoolEntry | None]:
        """``append_entry`` for a batch already encoded (``agent.batch_encoding``).

        ``body`` is a ``MetricBatch``'s wire bytes without its sequence.
        """
        return self._append(
            collected_ms, lambda sequence: agent_message_with_sequence(body, sequence)
        )

    def _append(
        self, collected_ms: int, payload_for: Callable[[int], bytes]
    ) -> tuple[int, SpoolEntry | None]:
        with self._lock:
            self._require_open()
            sequence = self._state.next_sequence
            payload = payload_for(sequence)
            acked = self._take_acked()
            try:
                with self._transaction() as state:
                    self._delete_acked(state, acked)
                    stored = self._store_batch(state, sequence, collected_ms, payload)
            except (sqlite3.DatabaseError, OSError) as exc:
                self._acked.extendleft(reversed(acked))
                self._state = dataclasses.replace(self._state, next_sequence=sequence + 1)
                self._note_write_failure(sequence, collected_ms, exc)
                return sequence, None
            self._note_write_success()
            return sequence, SpoolEntry(sequence, payload) if stored else None

    def pending(self, after_sequence: int = 0, limit: int = 100) -> list[SpoolEntry]:
        """Up to ``limit`` entries with sequence > ``after_sequence``, oldest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with self._lock:
            rows = self._guard(
                "read pending entries",
                lambda conn: conn.execute(
                    "SELECT sequence, payload FROM entries WHERE sequence > ?"
                    " ORDER BY sequence LIMIT ?",
                    (after_sequence, limit),
                ).fetchall(),
            )
            entries = [SpoolEntry(sequence, bytes(payload)) for sequence, payload in rows]
            if any(entry.sequence == self._state.open_gap for entry in entries):
                self._seal_open_gap()
            return entries

    def ack(self, sequence: int) -> None:
        """Remove the entry ``sequence`` (the collector stored it); unknown ones are ignored."""
        with self._lock:
            self._require_open()
            try:
                with self._transaction() as state:
                    self._delete_acked(state, [sequence])
            except (sqlite3.DatabaseError, OSError) as exc:
                log.warning("spool %s: cannot remove acked entry %d: %s", self._path, sequence, exc)

    def ack_later(self, sequence: int) -> None:
        """Note that the collector stored ``sequence``; deleted with the next write.

        No I/O and no lock, so the event loop may call it directly.
        """
        self._acked.append(sequence)

    def advance_sequence(self, last_stored: int) -> None:
        """Make the next sequence greater than ``last_stored`` (the collector's Welcome).

        Call it before sending anything. On a fresh spool, entries already numbered
        at or below ``last_stored`` are renumbered above it. Raises SpoolError.
        """
        with self._lock:
            self._require_open()
            acked = self._take_acked()
            try:
                with self._transaction() as state:
                    self._delete_acked(state, acked)
                    if not state.confirmed:
                        self._renumber_above(state, last_stored)
                    state.confirmed = 1
                    state.next_sequence = max(state.next_sequence, last_stored + 1)
            except (sqlite3.DatabaseError, OSError) as exc:
                self._acked.extendleft(reversed(acked))
                raise SpoolError(
                    f"spool {self._path}: cannot advance the sequence: {exc}", path=self._path
                ) from exc

    def stats(self) -> SpoolStats:
        """Counts for logs and metrics (one indexed read)."""
        with self._lock:
            row = self._guard(
                "read statistics",
                lambda conn: conn.execute(
                    "SELECT unix_ms FROM entries ORDER BY sequence LIMIT 1"
                ).fetchone(),
            )
            state, loss = self._state, self._loss
            return SpoolStats(
                entries=state.entries,
                bytes=state.bytes,
                oldest_unix_ms=row[0] if row else None,
                next_sequence=state.next_sequence,
                dropped_batches_total=state.dropped_batches_total + (loss.count if loss else 0),
            )

    def close(self) -> None:
        """Close the file (idempotent). An unwritten loss is logged, then forgotten."""
        with self._lock:
            if self._conn is None:
                return
            self._flush_acked()
            if self._loss is not None:
                log.error(
                    "spool %s: closing with %d lost batches not recorded as a gap",
                    self._path,
                    self._loss.count,
                )
            self._conn.close()
            self._conn = None
            os.close(self._lock_fd)  # releases the flock

    # --- opening -----------------------------------------------------------------

    def _open(self) -> None:
        """Set ``_conn`` and ``_state`` from the file, replacing a corrupt one."""
        try:
            self._open_file()
        except sqlite3.OperationalError as exc:
            raise self._unusable(exc) from exc
        except sqlite3.DatabaseError as exc:
            aside = self._move_aside()
            log.error("spool %s is corrupt (%s); moved it aside to %s", self._path, exc, aside)
            try:
                self._open_file()
                self._record_corruption(f"moved aside to {aside} ({exc})")
            except sqlite3.DatabaseError as again:
                raise self._unusable(again) from again

    def _open_file(self) -> None:
        created = _create_private_file(self._path)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            version = _schema_version(conn, self._path)  # before anything writes to the file
            self._configure(conn)
            self._state = _load_state(conn, version)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if created:
            _fsync_directory(self._path.parent)

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        if self._max_file_bytes is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, self._max_file_bytes // page_size)}")
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check: {'; '.join(problems[:3])}")

    def _unusable(self, exc: sqlite3.DatabaseError) -> SpoolError:
        return SpoolError(
            f"cannot open the spool {self._path}: {exc}; check that the state directory "
            f"exists and is writable by the agent",
            path=self._path,
        )

    def _move_aside(self) -> Path:
        aside = self._path.with_name(f"{self._path.name}.corrupt-{int(self._clock())}")
        try:
            for suffix in ("-wal", "-shm", ""):
                source = Path(f"{self._path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
        except OSError as exc:
            raise SpoolError(
                f"the spool {self._path} is corrupt and cannot be moved aside ({exc}); "
                f"stop the agent and move it away by hand",
                path=self._path,
            ) from exc
        return aside

    def _record_corruption(self, detail: str) -> None:
        """First entry of the replacement spool: a gap of unknown size (lost_batches 0)."""
        now_ms = self._now_ms()
        gap = agent_pb2.Gap(
            start_unix_ms=now_ms, end_unix_ms=now_ms, reason=f"{REASON_CORRUPT}: {detail}"
        )
        with self._transaction() as state:
            self._insert_gap(state, gap)

    def _enforce_at_open(self) -> None:
        """Apply the bounds now (they may have shrunk, or time passed while stopped)."""
        try:
            with self._transaction() as state:
                self._enforce_bounds(state)
        except (sqlite3.DatabaseError, OSError) as exc:
            log.warning("spool %s: cannot enforce the bounds at start: %s", self._path, exc)

    # --- writing -----------------------------------------------------------------

    def _store_batch(self, state: _State, sequence: int, collected_ms: int, payload: bytes) -> bool:
        """Insert the batch (or record it lost when too large); True if it was inserted."""
        state.next_sequence = sequence + 1
        stored = len(payload) <= self._max_bytes
        if stored:
            self._insert(state, sequence, "batch", collected_ms, payload)
        else:
            self._record_drop(state, _Row(sequence, collected_ms, len(payload)), REASON_SIZE)
        if self._loss is not None:
            self._insert_gap(state, self._loss_gap(self._loss))
            state.dropped_batches_total += self._loss.count
        self._enforce_bounds(state)
        return stored

    def _enforce_bounds(self, state: _State) -> None:
        """Drop the oldest batches while the spool is too old or too big."""
        now_ms = self._now_ms()
        while (oldest := self._oldest_batch()) is not None:
            if now_ms - oldest.unix_ms > self._max_age_ms:
                reason = REASON_AGE
            elif state.bytes > self._max_bytes:
                reason = REASON_SIZE
            else:
                return
            self._delete(state, oldest.sequence)
            self._record_drop(state, oldest, reason)

    def _record_drop(self, state: _State, lost: _Row, reason: str) -> None:
        """Count ``lost`` in the open gap if it can take it, else in a new gap entry."""
        state.dropped_batches_total += 1
        gap = self._mergeable_gap(state, lost.sequence, reason)
        if gap is None:
            gap = agent_pb2.Gap(
                first_lost_sequence=lost.sequence,
                start_unix_ms=lost.unix_ms,
                end_unix_ms=lost.unix_ms,
                reason=reason,
            )
        gap.last_lost_sequence = max(gap.last_lost_sequence, lost.sequence)
        gap.lost_batches += 1
        gap.start_unix_ms = min(gap.start_unix_ms, lost.unix_ms)
        gap.end_unix_ms = max(gap.end_unix_ms, lost.unix_ms)
        if gap.sequence:
            self._replace_payload(state, gap.sequence, _gap_payload(gap))
        else:
            state.open_gap = self._insert_gap(state, gap)

    def _mergeable_gap(
        self, state: _State, lost_sequence: int, reason: str
    ) -> agent_pb2.Gap | None:
        if not state.open_gap or lost_sequence > state.open_gap:
            return None
        row = self._db.execute(
            "SELECT payload FROM entries WHERE sequence = ?", (state.open_gap,)
        ).fetchone()
        if row is None:
            return None
        gap = agent_pb2.AgentMessage.FromString(row[0]).gap
        return gap if gap.reason == reason else None

    def _insert_gap(self, state: _State, gap: agent_pb2.Gap) -> int:
        gap.sequence = state.next_sequence
        state.next_sequence += 1
        self._insert(state, gap.sequence, "gap", self._now_ms(), _gap_payload(gap))
        return gap.sequence

    def _insert(
        self, state: _State, sequence: int, kind: str, unix_ms: int, payload: bytes
    ) -> None:
        self._db.execute(_INSERT, (sequence, kind, unix_ms, len(payload), payload))
        state.entries += 1
        state.bytes += len(payload)

    def _replace_payload(self, state: _State, sequence: int, payload: bytes) -> None:
        old_size = self._size_of(sequence)
        self._db.execute(
            "UPDATE entries SET size = ?, payload = ? WHERE sequence = ?",
            (len(payload), payload, sequence),
        )
        state.bytes += len(payload) - (old_size or 0)

    def _delete(self, state: _State, sequence: int) -> None:
        size = self._size_of(sequence)
        if size is not None:
            self._db.execute("DELETE FROM entries WHERE sequence = ?", (sequence,))
            state.entries -= 1
            state.bytes -= size

    def _size_of(self, sequence: int) -> int | None:
        row = self._db.execute(
            "SELECT size FROM entries WHERE sequence = ?", (sequence,)
        ).fetchone()
        return int(row[0]) if row else None

    def _oldest_batch(self) -> _Row | None:
        row = self._db.execute(
            "SELECT sequence, unix_ms, size FROM entries WHERE kind = 'batch'"
            " ORDER BY sequence LIMIT 1"
        ).fetchone()
        return _Row(*row) if row else None

    def _take_acked(self) -> list[int]:
        """The sequences noted by ``ack_later`` so far, removed from the note."""
        taken: list[int] = []
        while self._acked:
            taken.append(self._acked.popleft())
        return taken

    def _delete_acked(self, state: _State, acked: list[int]) -> None:
        for sequence in acked:
            self._delete(state, sequence)
            if sequence == state.open_gap:
                state.open_gap = 0

    def _flush_acked(self) -> None:
        """Delete the noted acks now (at close); a failure only means a re-send later."""
        acked = self._take_acked()
        if not acked:
            return
        try:
            with self._transaction() as state:
                self._delete_acked(state, acked)
        except (sqlite3.DatabaseError, OSError) as exc:
            log.warning("spool %s: cannot remove %d acked entries: %s", self._path, len(acked), exc)

    def _seal_open_gap(self) -> None:
        """The open gap was handed out: it may reach the collector, so never change it."""
        try:
            with self._transaction() as state:
                state.open_gap = 0
        except (sqlite3.DatabaseError, OSError) as exc:
            # Still sealed in memory; after a restart the open gap could be extended
            # once more, which at worst hides part of the loss from the collector.
            self._state.open_gap = 0
            log.warning("spool %s: cannot persist the sealed gap: %s", self._path, exc)

    def _renumber_above(self, state: _State, last_stored: int) -> None:
        """Shift every sequence of a fresh spool above ``last_stored``, keeping order."""
        stored_lowest = self._db.execute("SELECT MIN(sequence) FROM entries").fetchone()[0]
        lost_lowest = self._loss.first if self._loss is not None else None
        used = [s for s in (stored_lowest, lost_lowest) if s is not None]
        if not used or min(used) > last_stored:
            return
        lowest = min(used)
        delta = last_stored + 1 - lowest
        rows = self._db.execute("SELECT sequence, kind, unix_ms, payload FROM entries").fetchall()
        self._db.execute("DELETE FROM entries")
        for sequence, kind, unix_ms, payload in rows:
            shifted = _shift_payload(payload, delta)
            self._db.execute(_INSERT, (sequence + delta, kind, unix_ms, len(shifted), shifted))
        state.bytes = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        state.next_sequence += delta
        state.open_gap = state.open_gap + delta if state.open_gap else 0
        if self._loss is not None:
            self._loss.first += delta
            self._loss.last += delta
        log.warning("spool %s: renumbered %d entries by +%d", self._path, len(rows), delta)

    # --- write failures ----------------------------------------------------------

    def _note_write_failure(self, sequence: int, collected_ms: int, exc: BaseException) -> None:
        loss = self._loss
        if loss is None:
            log.error("spool %s: cannot store batch %d: %s", self._path, sequence, exc)
            self._loss = _Loss(sequence, sequence, 1, collected_ms, collected_ms, str(exc))
            return
        loss.last = sequence
        loss.count += 1
        loss.start_ms = min(loss.start_ms, collected_ms)
        loss.end_ms = max(loss.end_ms, collected_ms)

    def _note_write_success(self) -> None:
        if self._loss is not None:
            log.warning(
                "spool %s: writing again; recorded %d lost batches as a gap",
                self._path,
                self._loss.count,
            )
            self._loss = None

    @staticmethod
    def _loss_gap(loss: _Loss) -> agent_pb2.Gap:
        return agent_pb2.Gap(
            first_lost_sequence=loss.first,
            last_lost_sequence=loss.last,
            lost_batches=loss.count,
            start_unix_ms=loss.start_ms,
            end_unix_ms=loss.end_ms,
            reason=f"{REASON_WRITE_FAILED}: {loss.error}",
        )

    # --- plumbing ----------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError(f"spool {self._path} is closed", path=self._path)
        return self._conn

    def _require_open(self) -> None:
        _ = self._db

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextmanager
    def _transaction(self) -> Iterator[_State]:
        """Yield a working copy of the state; on commit it (and its meta rows) take effect."""
        db = self._db
        state = dataclasses.replace(self._state)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield state
            self._write_meta(state)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._state = state

    def _write_meta(self, state: _State) -> None:
        for key in _State.PERSISTED:
            value = getattr(state, key)
            if value != getattr(self._state, key):
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                )

    def _guard(self, action: str, read: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return read(self._db)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise SpoolError(
                f"spool {self._path}: cannot {action}: {exc}", path=self._path
            ) from exc


def read_stats(path: Path) -> SpoolStats:
    """Statistics of the spool file at ``path``, read-only and without taking its lock.

    Safe while the agent has the spool open. Raises SpoolError if there is no
    usable spool file at ``path``.
    """
    if not path.is_file():
        raise SpoolError(f"no spool at {path}", path=path)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            version = _schema_version(conn, path)
            if version == 0:  # created, never written
                return SpoolStats(0, 0, None, 1, 0)
            state = _load_state(conn, version)
            row = conn.execute("SELECT unix_ms FROM entries ORDER BY sequence LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise SpoolError(f"cannot read the spool {path}: {exc}", path=path) from exc
    return SpoolStats(
        entries=state.entries,
        bytes=state.bytes,
        oldest_unix_ms=row[0] if row else None,
        next_sequence=state.next_sequence,
        dropped_batches_total=state.dropped_batches_total,
    )


def _lock_exclusively(path: Path) -> int:
    """Hold an exclusive flock on ``<path>.lock``; SpoolError if another process holds it."""
    lock_path = Path(f"{path}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SpoolError(
            f"cannot create {lock_path}: {exc.strerror}; check that the state directory "
            f"exists and is writable by the agent",
            path=path,
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise SpoolError(
            f"the spool {path} is in use ({lock_path} is locked); "
            f"is another aftercare-agent using this state directory?",
            path=path,
        ) from exc
    return fd


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version (0: empty file); SpoolError if this agent cannot use it."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
        raise SpoolError(
            f"{path} is an SQLite file but not an aftercare spool; move it away", path=path
        )
    if version > SCHEMA_VERSION:
        raise SpoolError(
            f"the spool {path} was written by a newer agent (schema {version}, this agent "
            f"knows {SCHEMA_VERSION}); upgrade the agent or move the file away",
            path=path,
        )
    return version


def _load_state(conn: sqlite3.Connection, version: int) -> _State:
    """Create the tables in a new file, then read the persisted state and the counters."""
    if version == 0:
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    state = _State()
    for key, value in conn.execute("SELECT key, value FROM meta"):
        if key in _State.PERSISTED:
            setattr(state, key, value)
    count, total, highest = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(sequence), 0) FROM entries"
    ).fetchone()
    state.entries, state.bytes = count, total
    state.next_sequence = max(state.next_sequence, highest + 1)
    return state


def _create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True if it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot create {path}: {exc.strerror}") from exc
    os.close(fd)
    return True


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable (best effort, POSIX only)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _gap_payload(gap: agent_pb2.Gap) -> bytes:
    return agent_pb2.AgentMessage(gap=gap).SerializeToString()


def _shift_payload(payload: bytes, delta: int) -> bytes:
    message = agent_pb2.AgentMessage.FromString(payload)
    if message.HasField("batch"):
        message.batch.sequence += delta
    else:
        message.gap.sequence += delta
        if message.gap.lost_batches:  # 0 = unknown range (corrupt spool): leave it at 0
            message.gap.first_lost_sequence += delta
            message.gap.last_lost_sequence += delta
    return message.SerializeToString()
