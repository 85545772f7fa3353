"""The inspection tables of the SQLite store (a mixin of ``SQLiteStore``).

Kept apart from sqlite.py so the inspection aggregate stays one module. The SQL is
portable like the rest of the store (``?`` placeholders). Contracts:

- ``update_inspection`` is optimistic: it applies only if the stored version is the
  one read (else ``Conflict``: read again and retry).
- The published report (``report_json`` and ``report_sha256``) is written once:
  an update that would change either after it is set is refused (``Conflict``).
- Nothing here deletes an inspection, its events or its report (5-year retention).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any

from collector.errors import Conflict, InvalidRequest
from collector.inspections.errors import InspectionNotFound, PlanNotFound
from collector.inspections.model import (
    ChangeRecord,
    Inspection,
    InspectionEvent,
    NewInspection,
    NewInspectionEvent,
    Plan,
)
from collector.store.inspection_rows import (
    CHANGE_COLUMNS,
    EVENT_COLUMNS,
    INSPECTION_COLUMNS,
    MUTABLE_INSPECTION_COLUMNS,
    MUTABLE_PLAN_COLUMNS,
    PLAN_COLUMNS,
    change_from_row,
    change_values,
    check_language,
    event_from_row,
    event_values,
    inspection_from_row,
    inspection_values,
    new_inspection_values,
    plan_from_row,
    plan_values,
)

__all__ = ["SQLiteInspections"]

_SELECT_PLAN = f"SELECT {', '.join(PLAN_COLUMNS)} FROM inspection_plans"
_SELECT_INSPECTION = f"SELECT {', '.join(INSPECTION_COLUMNS)} FROM inspections"
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM inspection_events"
_INSERT_EVENT = (
    "INSERT INTO inspection_events (inspection_id, at_ms, actor, kind, details) "
    "VALUES (?, ?, ?, ?, ?)"
)
_INSERT_CHANGE = (
    f"INSERT INTO change_records ({', '.join(CHANGE_COLUMNS[1:])}) "
    f"VALUES ({', '.join('?' * (len(CHANGE_COLUMNS) - 1))})"
)
_INSERTED_PLAN_COLUMNS = tuple(c for c in PLAN_COLUMNS if c != "id")

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]


class SQLiteInspections:
    """``InspectionStore`` on the SQLite connection of ``SQLiteStore`` (a mixin)."""

    _write: Transaction
    _read: Transaction

    # -- plans -------------------------------------------------------------------------

    def create_plan(self, plan: Plan) -> Plan:
        values = plan_values(plan, _INSERTED_PLAN_COLUMNS)
        insert = (
            f"INSERT INTO inspection_plans ({', '.join(_INSERTED_PLAN_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(values))})"
        )
        with self._write() as db:
            plan_id = _inserted_id(db.execute(insert, values))
            return _select_plan(db, plan_id)

    def get_plan(self, plan_id: int) -> Plan | None:
        with self._read() as db:
            row = db.execute(f"{_SELECT_PLAN} WHERE id = ?", (plan_id,)).fetchone()
        return None if row is None else plan_from_row(row)

    def list_plans(self, customer: str | None) -> list[Plan]:
        query, params = _SELECT_PLAN, tuple[str, ...]()
        if customer is not None:
            query, params = f"{query} WHERE customer = ?", (customer,)
        with self._read() as db:
            rows = db.execute(f"{query} ORDER BY id", params).fetchall()
        return [plan_from_row(row) for row in rows]

    def update_plan(self, plan: Plan) -> Plan:
        values = plan_values(plan, MUTABLE_PLAN_COLUMNS)
        assignments = ", ".join(f"{c} = ?" for c in MUTABLE_PLAN_COLUMNS)
        update = (
            f"UPDATE inspection_plans SET {assignments}, updated_ms = ?, "
            "version = version + 1 WHERE id = ? AND version = ?"
        )
        with self._write() as db:
            cursor = db.execute(update, (*values, plan.updated_ms, plan.id, plan.version))
            if cursor.rowcount != 1:
                _select_plan(db, plan.id)  # PlanNotFound if it is gone
                raise Conflict(f"inspection plan {plan.id} changed meanwhile; try again")
            return _select_plan(db, plan.id)

    # -- inspections -------------------------------------------------------------------

    def create_inspection(self, new: NewInspection, planned: NewInspectionEvent) -> Inspection:
        values = new_inspection_values(new, planned.at_ms)
        insert = (
            f"INSERT INTO inspections ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"
        )
        with self._write() as db:
            try:
                inspection_id = _inserted_id(db.execute(insert, tuple(values.values())))
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    f"plan {new.plan_id} already has occurrence {new.occurrence}"
                ) from exc
            db.executemany(_INSERT_EVENT, event_values(inspection_id, [planned]))
            return _select_inspection(db, inspection_id)

    def get_inspection(self, inspection_id: int) -> Inspection | None:
        with self._read() as db:
            row = db.execute(f"{_SELECT_INSPECTION} WHERE id = ?", (inspection_id,)).fetchone()
        return None if row is None else inspection_from_row(row)

    def list_inspections(
        self,
        customer: str | None,
        states: Collection[str] | None,
        limit: int,
        plan_id: int | None = None,
    ) -> list[Inspection]:
        if limit < 1:
            raise InvalidRequest(f"limit must be at least 1, got {limit}")
        conditions: list[str] = []
        params: list[Any] = []
        if customer is not None:
            conditions.append("customer = ?")
            params.append(customer)
        if plan_id is not None:
            conditions.append("plan_id = ?")
            params.append(plan_id)
        if states is not None:
            chosen = sorted(set(states))
            if not chosen:
                return []
            conditions.append(f"state IN ({', '.join('?' * len(chosen))})")
            params.extend(chosen)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"{_SELECT_INSPECTION}{where} ORDER BY id DESC LIMIT ?"
        with self._read() as db:
            rows = db.execute(query, (*params, limit)).fetchall()
        return [inspection_from_row(row) for row in rows]

    def plan_occurrences(self, plan_id: int) -> int:
        with self._read() as db:
            row = db.execute(
                "SELECT MAX(occurrence) FROM inspections WHERE plan_id = ?", (plan_id,)
            ).fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def update_inspection(
        self,
        inspection: Inspection,
        events: Sequence[NewInspectionEvent],
        report_json: str | None = None,
    ) -> Inspection:
        values = inspection_values(inspection, MUTABLE_INSPECTION_COLUMNS)
        rows = event_values(inspection.id, events)
        assignments = ", ".join(f"{c} = ?" for c in MUTABLE_INSPECTION_COLUMNS)
        update = (
            f"UPDATE inspections SET {assignments}, updated_ms = ?, version = version + 1"
            f"{', report_json = ?' if report_json is not None else ''} "
            "WHERE id = ? AND version = ?"
        )
        at_ms = max([inspection.updated_ms, *(e.at_ms for e in events)])
        extra = (report_json,) if report_json is not None else ()
        with self._write() as db:
            stored = _select_inspection(db, inspection.id)
            if stored.report_sha256 and (
                inspection.report_sha256 != stored.report_sha256 or report_json is not None
            ):
                raise Conflict(
                    f"inspection {inspection.id}: the published report is immutable "
                    f"(sha256 {stored.report_sha256})"
                )
            cursor = db.execute(update, (*values, at_ms, *extra, inspection.id, inspection.version))
            if cursor.rowcount != 1:
                raise Conflict(f"inspection {inspection.id} changed meanwhile; try again")
            db.executemany(_INSERT_EVENT, rows)
            return _select_inspection(db, inspection.id)

    def inspection_report(self, inspection_id: int) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT report_json FROM inspections WHERE id = ?", (inspection_id,)
            ).fetchone()
        if row is None:
            raise InspectionNotFound(inspection_id)
        return None if row[0] is None else str(row[0])

    def inspection_events(self, inspection_id: int) -> list[InspectionEvent]:
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_EVENTS} WHERE inspection_id = ? ORDER BY id", (inspection_id,)
            ).fetchall()
        return [event_from_row(row) for row in rows]

    def add_inspection_events(
        self, inspection_id: int, events: Sequence[NewInspectionEvent]
    ) -> None:
        rows = event_values(inspection_id, events)
        with self._write() as db:
            _select_inspection(db, inspection_id)
            db.executemany(_INSERT_EVENT, rows)

    # -- change records and customer settings ---------------------------------------------

    def add_change_records(self, records: Sequence[ChangeRecord]) -> None:
        rows = [change_values(record) for record in records]
        with self._write() as db:
            db.executemany(_INSERT_CHANGE, rows)

    def change_records(self, agent_id: str, since_ms: int = 0) -> list[ChangeRecord]:
        query = (
            f"SELECT {', '.join(CHANGE_COLUMNS)} FROM change_records "
            "WHERE agent_id = ? AND at_ms >= ? ORDER BY at_ms, id"
        )
        with self._read() as db:
            rows = db.execute(query, (agent_id, since_ms)).fetchall()
        return [change_from_row(row) for row in rows]

    def set_customer_language(self, customer: str, language: str, by: str, at_ms: int) -> None:
        check_language(language)
        with self._write() as db:
            db.execute(
                "INSERT INTO customer_settings (customer, language, updated_ms, updated_by) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (customer) DO UPDATE SET "
                "language = excluded.language, updated_ms = excluded.updated_ms, "
                "updated_by = excluded.updated_by",
                (customer, language, at_ms, by),
            )

    def customer_language(self, customer: str) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT language FROM customer_settings WHERE customer = ?", (customer,)
            ).fetchone()
        return None if row is None else str(row[0])


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None  # an INSERT always sets it
    return cursor.lastrowid


def _select_plan(db: sqlite3.Connection, plan_id: int) -> Plan:
    row = db.execute(f"{_SELECT_PLAN} WHERE id = ?", (plan_id,)).fetchone()
    if row is None:
        raise PlanNotFound(plan_id)
    return plan_from_row(row)


def _select_inspection(db: sqlite3.Connection, inspection_id: int) -> Inspection:
    row = db.execute(f"{_SELECT_INSPECTION} WHERE id = ?", (inspection_id,)).fetchone()
    if row is None:
        raise InspectionNotFound(inspection_id)
    return inspection_from_row(row)
