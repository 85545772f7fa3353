"""The outbox table of the SQLite store (a mixin of ``SQLiteStore``, and through it of
``PostgresStore``; contract in collector/outbox.py ``OutboxStore``).

``enqueue_in`` is the row helper other store methods call inside their own write
transaction, so a notice commits together with the state change that causes it.
A claim is one conditional ``UPDATE`` inside a write transaction (serialised across
processes), so two senders never hold one notice at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from collector.errors import InvalidRequest
from collector.outbox import STATES, Notice, OutboxAudit, OutboxEntry, new_delivery_id
from collector.tickets.model import NewEvent

__all__ = ["SQLiteOutbox", "enqueue_in"]

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]

_COLUMNS = (
    "id, delivery_id, kind, dedup, channel, target, subject, payload, body, target_label, "
    "ticket_id, meta, created_ms, state, attempts, next_attempt_ms, last_error, sent_ms, "
    "claimed_by, claimed_until_ms"
)
_INSERT = (
    "INSERT INTO outbox (dedup, delivery_id, kind, channel, target, target_label, subject, "
    "payload, body, meta, ticket_id, created_ms, next_attempt_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup) DO NOTHING"
)
_DUE = (
    f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ? "
    "AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?) AND kind IN ({kinds}) "
    "ORDER BY id LIMIT 1"
)


def enqueue_in(db: sqlite3.Connection, notices: Sequence[Notice], at_ms: int) -> int:
    """Insert the notices not stored yet, inside the caller's write transaction."""
    added = 0
    for notice in notices:
        cursor = db.execute(
            _INSERT,
            (
                notice.dedup,
                new_delivery_id(),
                notice.kind,
                notice.channel,
                notice.target,
                notice.target_label,
                notice.subject,
                _json(notice.payload, "payload"),
                notice.body,
                _json(notice.meta, "meta"),
                notice.ticket_id,
                at_ms,
                at_ms,
            ),
        )
        added += max(cursor.rowcount, 0)
    return added


class SQLiteOutbox:
    """``OutboxStore`` on the connection of ``SQLiteStore`` (a mixin)."""

    _write: Transaction
    _read: Transaction

    def _ticket_events_in(
        self, db: sqlite3.Connection, ticket_id: int, events: Sequence[NewEvent]
    ) -> None:
        raise NotImplementedError  # SQLiteStore: insert ticket events (and audit them)

    def _audits_in(self, db: sqlite3.Connection, audits: Sequence[OutboxAudit]) -> None:
        raise NotImplementedError  # SQLiteStore: chain the entries onto the audit log

    def enqueue_notices(self, notices: Sequence[Notice], at_ms: int) -> int:
        with self._write() as db:
            return enqueue_in(db, notices, at_ms)

    def claim_notice(
        self, kinds: Collection[str], holder: str, now_ms: int, hold_ms: int
    ) -> OutboxEntry | None:
        if not holder or hold_ms <= 0:
            raise InvalidRequest("a claim needs a holder and a positive hold time")
        chosen = sorted(kinds)
        if not chosen:
            return None
        due = _DUE.format(kinds=_marks(len(chosen)))
        with self._write() as db:
            row = db.execute(due, (now_ms, now_ms, *chosen)).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE outbox SET claimed_by = ?, claimed_until_ms = ? WHERE id = ?",
                (holder, now_ms + hold_ms, row[0]),
            )
        return replace(_entry(row), claimed_by=holder, claimed_until_ms=now_ms + hold_ms)

    def claim_named_notice(
        self, dedup: str, holder: str, now_ms: int, hold_ms: int
    ) -> OutboxEntry | None:
        if not holder or hold_ms <= 0:
            raise InvalidRequest("a claim needs a holder and a positive hold time")
        with self._write() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE dedup = ?", (dedup,)).fetchone()
            if row is None:
                return None
            entry = _entry(row)
            held = entry.claimed_until_ms is not None and entry.claimed_until_ms > now_ms
            if entry.state != "pending" or (held and entry.claimed_by != holder):
                return entry
            db.execute(
                "UPDATE outbox SET claimed_by = ?, claimed_until_ms = ? WHERE id = ?",
                (holder, now_ms + hold_ms, entry.id),
            )
        return replace(entry, claimed_by=holder, claimed_until_ms=now_ms + hold_ms)

    def notice_sent(
        self,
        entry_id: int,
        at_ms: int,
        events: Sequence[NewEvent] = (),
        audits: Sequence[OutboxAudit] = (),
    ) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'sent', sent_ms = ?, attempts = attempts + 1, "
                "last_error = '', claimed_by = NULL, claimed_until_ms = NULL "
                "WHERE id = ? AND state = 'pending'",
                (at_ms, entry_id),
            )
            if cursor.rowcount != 1:
                return False
            self._outcome_events(db, entry_id, events)
            self._audits_in(db, audits)
            return True

    def notice_failed(
        self,
        entry_id: int,
        error: str,
        retry_at_ms: int,
        events: Sequence[NewEvent] = (),
        audits: Sequence[OutboxAudit] = (),
    ) -> None:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_ms = ?, claimed_by = NULL, claimed_until_ms = NULL "
                "WHERE id = ? AND state = 'pending'",
                (error[:2000], retry_at_ms, entry_id),
            )
            if cursor.rowcount == 1:
                self._outcome_events(db, entry_id, events)
                self._audits_in(db, audits)

    def notice_cancelled(self, entry_id: int, reason: str, at_ms: int) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'cancelled', sent_ms = ?, last_error = ?, "
                "claimed_by = NULL, claimed_until_ms = NULL WHERE id = ? AND state = 'pending'",
                (at_ms, reason[:2000], entry_id),
            )
            return cursor.rowcount == 1

    def list_outbox(
        self, states: Collection[str] | None, limit: int, failing_only: bool = False
    ) -> list[OutboxEntry]:
        if limit <= 0:
            raise InvalidRequest(f"limit must be positive, not {limit}")
        wanted = sorted(STATES if states is None else states)
        unknown = [s for s in wanted if s not in STATES]
        if unknown:
            raise InvalidRequest(f"unknown outbox state {unknown[0]!r}: use {', '.join(STATES)}")
        if not wanted:
            return []
        failing = " AND attempts > 0 AND state = 'pending'" if failing_only else ""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE state IN ({_marks(len(wanted))})"
                f"{failing} ORDER BY id LIMIT ?",
                (*wanted, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        counts = dict.fromkeys((*STATES, "failing"), 0)
        with self._read() as db:
            for state, count in db.execute(
                "SELECT state, COUNT(*) FROM outbox GROUP BY state"
            ).fetchall():
                counts[str(state)] = int(count)
            (failing,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND attempts > 0"
            ).fetchone()
        counts["failing"] = int(failing)
        return counts

    def prune_outbox(self, sent_before_ms: int) -> int:
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'cancelled') AND sent_ms < ?",
                (sent_before_ms,),
            )
            return max(cursor.rowcount, 0)

    def _outcome_events(
        self, db: sqlite3.Connection, entry_id: int, events: Sequence[NewEvent]
    ) -> None:
        if not events:
            return
        row = db.execute("SELECT ticket_id FROM outbox WHERE id = ?", (entry_id,)).fetchone()
        if row is None or row[0] is None:
            raise InvalidRequest(f"notice {entry_id} belongs to no ticket; it takes no events")
        self._ticket_events_in(db, int(row[0]), events)


def _entry(row: Any) -> OutboxEntry:
    notice = Notice(
        kind=str(row[2]),
        dedup=str(row[3]),
        channel=str(row[4]),
        target=str(row[5]),
        subject=str(row[6]),
        payload=json.loads(row[7]),
        body=str(row[8]),
        target_label=str(row[9]),
        ticket_id=None if row[10] is None else int(row[10]),
        meta=json.loads(row[11]),
    )
    return OutboxEntry(
        id=int(row[0]),
        delivery_id=str(row[1]),
        notice=notice,
        created_ms=int(row[12]),
        state=str(row[13]),
        attempts=int(row[14]),
        next_attempt_ms=int(row[15]),
        last_error=str(row[16]),
        sent_ms=None if row[17] is None else int(row[17]),
        claimed_by=None if row[18] is None else str(row[18]),
        claimed_until_ms=None if row[19] is None else int(row[19]),
    )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _json(value: Any, name: str) -> str:
    try:
        return json.dumps(dict(value), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"a notice's {name} must be plain JSON data: {exc}") from exc
