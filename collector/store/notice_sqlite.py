"""The approval notices' reads on the SQLite store (a mixin of ``SQLiteStore``, and
through it of ``PostgresStore``; contract in collector/store/notice_base.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager

from collector.runs.model import RunRecord
from collector.store.run_rows import RUN_COLUMNS, check_limit, run_from_row

__all__ = ["SQLiteNotices"]

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]

# customer IN (...) AND requested_ms >= ?: a range of the index runs_by_customer
# (customer, requested_ms), so the cycle reads only the recent runs of the customers
# with contacts, not the whole runs table (there is no index on state)
_WAITING_RUNS = (
    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs "
    "WHERE customer IN ({customers}) AND requested_ms >= ? "
    "AND state = 'waiting_approval' AND approved_by IS NULL "
    "ORDER BY requested_ms, run_id LIMIT ?"
)


class SQLiteNotices:
    """``NoticeStore`` on the connection of ``SQLiteStore`` (a mixin)."""

    _read: Transaction

    def runs_waiting_approval(
        self, customers: Collection[str], since_ms: int, limit: int
    ) -> list[RunRecord]:
        check_limit(limit)
        chosen = sorted(set(customers))
        if not chosen:
            return []
        query = _WAITING_RUNS.format(customers=", ".join("?" * len(chosen)))
        with self._read() as db:
            rows = db.execute(query, (*chosen, since_ms, limit)).fetchall()
        return [run_from_row(row) for row in rows]
