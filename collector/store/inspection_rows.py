"""Inspection rows: input checks and the mapping between inspection records and rows.

Backend-neutral (no driver imports). Column names are the ``Plan``/``Inspection``
field names (the table ``inspections`` has one more, ``report_json``: the canonical
published report). Bad input becomes ``InvalidRequest`` before any SQL runs; a row
the code cannot read back becomes ``StoreError``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

from collector.audit import canonical_json
from collector.errors import InvalidRequest, StoreError
from collector.inspections.model import (
    EVENT_KINDS,
    INSPECTION_STATES,
    PLAN_EVERY,
    REPORT_LANGUAGES,
    ChangeRecord,
    HostResult,
    Inspection,
    InspectionEvent,
    NewInspection,
    NewInspectionEvent,
    Plan,
)
from collector.store.row_checks import (
    check_choice,
    check_text,
    decode_choice,
    decode_json,
    event_details_json,
)

__all__ = [
    "CHANGE_COLUMNS",
    "EVENT_COLUMNS",
    "INSPECTION_COLUMNS",
    "MUTABLE_INSPECTION_COLUMNS",
    "MUTABLE_PLAN_COLUMNS",
    "PLAN_COLUMNS",
    "change_from_row",
    "change_values",
    "check_language",
    "event_from_row",
    "event_values",
    "inspection_from_row",
    "inspection_values",
    "new_inspection_values",
    "plan_from_row",
    "plan_values",
]

PLAN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Plan))
INSPECTION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Inspection))
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(InspectionEvent))
CHANGE_COLUMNS: tuple[str, ...] = (
    "id",
    "agent_id",
    "at_ms",
    "source",
    "inspection_id",
    "kind",
    "item",
    "before_value",
    "after_value",
)
_STORE_MANAGED = ("id", "version", "updated_ms")
MUTABLE_PLAN_COLUMNS: tuple[str, ...] = tuple(
    c for c in PLAN_COLUMNS if c not in (*_STORE_MANAGED, "customer", "created_ms", "created_by")
)
MUTABLE_INSPECTION_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in INSPECTION_COLUMNS
    if c not in (*_STORE_MANAGED, "plan_id", "customer", "occurrence", "created_ms")
)
_JSON_LIST_COLUMNS = ("config_files", "ticket_ids")


# -- input (InvalidRequest) ------------------------------------------------------------


def plan_values(plan: Plan, columns: Sequence[str]) -> tuple[Any, ...]:
    """The plan's values for ``columns`` after checking them."""
    check_text("customer", plan.customer)
    check_choice("every", plan.every, PLAN_EVERY)
    check_choice("state", plan.state, ("active", "cancelled"))
    if plan.notice_ms < 0:
        raise InvalidRequest("notice cannot be negative")
    encoded = {"config_files": _json(list(plan.config_files))}
    return tuple(encoded.get(c, getattr(plan, c)) for c in columns)


def new_inspection_values(new: NewInspection, at_ms: int) -> dict[str, Any]:
    """Column values of a new inspection (state planned, version 1)."""
    check_text("customer", new.customer)
    if new.occurrence < 0:
        raise InvalidRequest("occurrence cannot be negative")
    return {
        "plan_id": new.plan_id,
        "customer": new.customer,
        "occurrence": new.occurrence,
        "scheduled_ms": new.scheduled_ms,
        "state": "planned",
        "engineer": new.engineer,
        "hosts": new.hosts,
        "notice_ms": new.notice_ms,
        "config_files": _json(list(new.config_files)),
        "created_ms": at_ms,
        "updated_ms": at_ms,
        "version": 1,
    }


def inspection_values(inspection: Inspection, columns: Sequence[str]) -> tuple[Any, ...]:
    """The inspection's values for ``columns`` after checking them."""
    check_choice("state", inspection.state, INSPECTION_STATES)
    encoded: dict[str, Any] = {
        "config_files": _json(list(inspection.config_files)),
        "ticket_ids": _json(list(inspection.ticket_ids)),
        "host_results": _json([asdict(h) for h in inspection.host_results]),
        "draft": None if inspection.draft is None else _json(dict(inspection.draft)),
        "signoff": None if inspection.signoff is None else _json(dict(inspection.signoff)),
    }
    return tuple(encoded.get(c, getattr(inspection, c)) for c in columns)


def event_values(inspection_id: int, events: Sequence[NewInspectionEvent]) -> list[tuple[Any, ...]]:
    """Rows for ``INSERT INTO inspection_events (inspection_id, at_ms, actor, kind, details)``."""
    rows = []
    for index, event in enumerate(events):
        details = event_details_json(
            f"events[{index}]", event.actor, event.kind, EVENT_KINDS, event.details
        )
        rows.append((inspection_id, event.at_ms, event.actor, event.kind, details))
    return rows


def change_values(record: ChangeRecord) -> tuple[Any, ...]:
    """Values of ``CHANGE_COLUMNS`` without ``id``."""
    for name in ("agent_id", "source", "kind", "item"):
        check_text(f"change record {name}", getattr(record, name))
    return (
        record.agent_id,
        record.at_ms,
        record.source,
        record.inspection_id,
        record.kind,
        record.item,
        record.before,
        record.after,
    )


def check_language(language: str) -> None:
    """A report language the renderer knows."""
    check_choice("language", language, REPORT_LANGUAGES)


def _json(value: Any) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"not plain JSON data: {exc}") from exc


# -- output (StoreError: the row is corrupt) -------------------------------------------


def plan_from_row(row: Sequence[Any]) -> Plan:
    """Decode a row selected with ``PLAN_COLUMNS``."""
    values = dict(zip(PLAN_COLUMNS, row, strict=True))
    where = f"inspection plan {values['id']}"
    return Plan(
        **{
            **values,
            "every": decode_choice(where, "every", values["every"], PLAN_EVERY),
            "state": decode_choice(where, "state", values["state"], ("active", "cancelled")),
            "config_files": tuple(_decode_list(where, "config_files", values["config_files"])),
        }
    )


def inspection_from_row(row: Sequence[Any]) -> Inspection:
    """Decode a row selected with ``INSPECTION_COLUMNS``."""
    values = dict(zip(INSPECTION_COLUMNS, row, strict=True))
    where = f"inspection {values['id']}"
    hosts = _decode_list(where, "host_results", values["host_results"])
    return Inspection(
        **{
            **values,
            "state": decode_choice(where, "state", values["state"], INSPECTION_STATES),
            "config_files": tuple(_decode_list(where, "config_files", values["config_files"])),
            "ticket_ids": tuple(_decode_list(where, "ticket_ids", values["ticket_ids"])),
            "host_results": tuple(HostResult(**h) for h in hosts),
            "draft": None
            if values["draft"] is None
            else decode_json(where, "draft", values["draft"]),
            "signoff": None
            if values["signoff"] is None
            else decode_json(where, "signoff", values["signoff"]),
        }
    )


def event_from_row(row: Sequence[Any]) -> InspectionEvent:
    """Decode a row selected with ``EVENT_COLUMNS``."""
    event_id, inspection_id, at_ms, actor, kind, details = row
    where = f"inspection event {event_id}"
    return InspectionEvent(
        id=event_id,
        inspection_id=inspection_id,
        at_ms=at_ms,
        actor=actor,
        kind=decode_choice(where, "kind", kind, EVENT_KINDS),
        details=decode_json(where, "details", details),
    )


def change_from_row(row: Sequence[Any]) -> ChangeRecord:
    """Decode a row selected with ``CHANGE_COLUMNS``."""
    record_id, agent_id, at_ms, source, inspection_id, kind, item, before, after = row
    return ChangeRecord(
        agent_id=agent_id,
        at_ms=at_ms,
        source=source,
        kind=kind,
        item=item,
        before=before,
        after=after,
        inspection_id=inspection_id,
        id=record_id,
    )


def _decode_list(where: str, column: str, text: object) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError as exc:
        raise StoreError(f"{where} has unreadable {column}; the database is corrupt") from exc
    if not isinstance(value, list):
        raise StoreError(f"{where} has unreadable {column}; the database is corrupt")
    return value
