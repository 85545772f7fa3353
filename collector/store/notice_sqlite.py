"""The approval notices' reads on the SQLite store (a mixin of ``SQLiteStore``, and
through it of ``PostgresStore``; contract in collector/store/notice_base.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from collector.runs.model import RunRecord
from collector.store.run_rows import RUN_COLUMNS, check_limit, run_from_row

__all__ = ["SQLiteNotices"]

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]

_WAITING_RUNS = (
    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs "
    "WHERE state = 'waiting_approval' AND approved_by IS NULL "
    "ORDER BY requested_ms, run_id LIMIT ?"
)


class SQLiteNotices:
    """``NoticeStore`` on the connection of ``SQLiteStore`` (a mixin)."""

    _read: Transaction

    def runs_waiting_approval(self, limit: int) -> list[RunRecord]:
        check_limit(limit)
        with self._read() as db:
            rows = db.execute(_WAITING_RUNS, (limit,)).fetchall()
        return [run_from_row(row) for row in rows]
