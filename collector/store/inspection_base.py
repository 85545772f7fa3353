"""The inspection aggregate of the store: the contract every backend implements.

See collector/store/inspection_sqlite.py for the SQLite implementation and its
contracts (optimistic updates, the published report written once, nothing deleted).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from collector.inspections.model import (
    ChangeRecord,
    Inspection,
    InspectionEvent,
    NewInspection,
    NewInspectionEvent,
    Plan,
)

__all__ = ["InspectionStore"]


class InspectionStore(Protocol):
    """The inspection aggregate of the store (every backend implements it)."""

    def create_plan(self, plan: Plan) -> Plan:
        """Insert ``plan`` (its id is assigned; version 1)."""
        ...

    def get_plan(self, plan_id: int) -> Plan | None: ...

    def list_plans(self, customer: str | None) -> list[Plan]:
        """Plans (of ``customer`` if given), oldest first."""
        ...

    def update_plan(self, plan: Plan) -> Plan:
        """Store the changed plan if its version is current (else Conflict)."""
        ...

    def create_inspection(self, new: NewInspection, planned: NewInspectionEvent) -> Inspection:
        """Insert one occurrence; Conflict if the plan already has it."""
        ...

    def get_inspection(self, inspection_id: int) -> Inspection | None: ...

    def list_inspections(
        self,
        customer: str | None,
        states: Collection[str] | None,
        limit: int,
        plan_id: int | None = None,
    ) -> list[Inspection]:
        """Newest first (by id), at most ``limit``."""
        ...

    def plan_occurrences(self, plan_id: int) -> int:
        """How many occurrences of the plan exist (the next index)."""
        ...

    def update_inspection(
        self,
        inspection: Inspection,
        events: Sequence[NewInspectionEvent],
        report_json: str | None = None,
    ) -> Inspection:
        """Store the changed inspection and append ``events`` atomically (version check);
        ``report_json`` sets the published report, once."""
        ...

    def inspection_report(self, inspection_id: int) -> str | None:
        """The canonical published report (None before publishing)."""
        ...

    def inspection_events(self, inspection_id: int) -> list[InspectionEvent]: ...

    def add_inspection_events(
        self, inspection_id: int, events: Sequence[NewInspectionEvent]
    ) -> None: ...

    def add_change_records(self, records: Sequence[ChangeRecord]) -> None: ...

    def change_records(self, agent_id: str, since_ms: int = 0) -> list[ChangeRecord]:
        """The host's change records at or after ``since_ms``, oldest first."""
        ...

    def set_customer_language(self, customer: str, language: str, by: str, at_ms: int) -> None: ...

    def customer_language(self, customer: str) -> str | None: ...
