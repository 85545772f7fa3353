"""Inspection plans, inspections and their timeline events (frozen; times are unix ms).

A ``Plan`` (one per customer schedule) generates one ``Inspection`` per occurrence.
Stored states of an inspection::

    planned ──announce──▶ announced ──consent──▶ consented ──run──▶ running
       │  ▲                  │  ▲                                     │
       │  └── reschedule ────┤  │ consent                              ▼
       │                     ▼  │                         awaiting_report (analysed)
       └──consent──▶      declined                                 │ publish
                                                                    ▼
            failed ◀── (analysis failed; run again)       awaiting_signoff (published)
                                                            │ sign          │ reject
                                                            ▼               ▼
                                                          signed         rejected
    any state before running ──cancel (plan cancelled / changed)──▶ cancelled

Two more states are computed, never stored (``status``): ``due`` (consented and the
date has come: the next tick runs it) and ``overdue`` (the date passed without
consent, or the report is past its due date).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from collector.inspections.inputs import HostOutcome

__all__ = [
    "ACTIVE_STATES",
    "EVENT_KINDS",
    "INSPECTION_STATES",
    "LISTABLE_STATES",
    "PLAN_EVERY",
    "REPORT_LANGUAGES",
    "EventKind",
    "Every",
    "HostResult",
    "Inspection",
    "InspectionEvent",
    "InspectionState",
    "NewInspection",
    "NewInspectionEvent",
    "Plan",
    "PlanChange",
    "is_due",
    "is_overdue",
]

Every = Literal["quarter", "month"]
PLAN_EVERY: tuple[Every, ...] = get_args(Every)
REPORT_LANGUAGES: tuple[str, ...] = ("zh-CN", "en")

InspectionState = Literal[
    "planned",
    "announced",
    "consented",
    "declined",
    "running",
    "awaiting_report",
    "awaiting_signoff",
    "signed",
    "rejected",
    "failed",
    "cancelled",
]
INSPECTION_STATES: tuple[InspectionState, ...] = get_args(InspectionState)
# Before the run: the plan still governs these (a plan change re-plans them).
NOT_STARTED: frozenset[InspectionState] = frozenset(
    {"planned", "announced", "consented", "declined"}
)
ACTIVE_STATES: frozenset[InspectionState] = frozenset(INSPECTION_STATES) - {
    "signed",
    "rejected",
    "cancelled",
}
# What `aftercare inspections --state` accepts: stored states plus the computed ones.
LISTABLE_STATES: tuple[str, ...] = (*INSPECTION_STATES, "due", "overdue")

HostResultOutcome = HostOutcome | Literal["pending"]

EventKind = Literal[
    "planned",
    "announced",
    "notification",
    "consented",
    "declined",
    "rescheduled",
    "cancelled",
    "run_started",
    "host_result",
    "analysed",
    "analysis_failed",
    "ticket_opened",
    "published",
    "report_late",
    "signed",
    "rejected",
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)


@dataclass(frozen=True)
class Plan:
    """A customer's inspection schedule: the first date, then every quarter or month."""

    id: int
    customer: str
    every: Every
    first_ms: int
    hosts: str  # host selector ("" = every host of the customer), see selector.py
    engineer: str
    notice_ms: int
    config_files: tuple[str, ...]
    state: Literal["active", "cancelled"]
    created_ms: int
    created_by: str
    updated_ms: int
    version: int = 1


@dataclass(frozen=True)
class PlanChange:
    """What a plan modification changes (None: unchanged)."""

    every: Every | None = None
    first_ms: int | None = None
    hosts: str | None = None
    engineer: str | None = None
    notice_ms: int | None = None
    config_files: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HostResult:
    """One host in an inspection's scope and what its inspection run gave."""

    agent_id: str
    hostname: str
    outcome: HostResultOutcome
    detail: str = ""
    run_id: str | None = None


@dataclass(frozen=True)
class NewInspection:
    """One occurrence of a plan, before the store numbers it."""

    plan_id: int
    customer: str
    occurrence: int  # 0 for the plan's first date
    scheduled_ms: int
    engineer: str
    hosts: str
    notice_ms: int
    config_files: tuple[str, ...]


@dataclass(frozen=True)
class Inspection:
    """One inspection of one customer (one occurrence of a plan)."""

    id: int
    plan_id: int
    customer: str
    occurrence: int
    scheduled_ms: int
    state: InspectionState
    engineer: str
    hosts: str
    notice_ms: int
    config_files: tuple[str, ...]
    created_ms: int
    updated_ms: int
    announced_ms: int | None = None
    consented_ms: int | None = None
    consented_by: str = ""
    decline_reason: str = ""
    proposed_ms: int | None = None
    run_started_ms: int | None = None
    run_finished_ms: int | None = None
    period_start_ms: int | None = None
    host_results: tuple[HostResult, ...] = ()
    report_due_ms: int | None = None
    late_notified_ms: int | None = None
    draft: Mapping[str, Any] | None = None  # analyse()'s document, before publishing
    ticket_ids: tuple[int, ...] = ()
    summary: str = ""
    published_ms: int | None = None
    published_by: str = ""
    report_sha256: str = ""  # of the canonical published bytes (immutable once set)
    signoff: Mapping[str, Any] | None = None
    version: int = 1


@dataclass(frozen=True)
class InspectionEvent:
    """One timeline entry of an inspection."""

    id: int
    inspection_id: int
    at_ms: int
    actor: str
    kind: EventKind
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewInspectionEvent:
    """A timeline entry before the store numbers it."""

    at_ms: int
    actor: str
    kind: EventKind
    details: Mapping[str, Any] = field(default_factory=dict)


def is_due(inspection: Inspection, now_ms: int) -> bool:
    """Consented and its date has come: the next tick starts its run."""
    return inspection.state == "consented" and inspection.scheduled_ms <= now_ms


def is_overdue(inspection: Inspection, now_ms: int) -> bool:
    """The date passed without consent, or the report is past its due date."""
    if inspection.state in ("planned", "announced", "declined"):
        return inspection.scheduled_ms <= now_ms
    if inspection.state in ("running", "awaiting_report", "failed"):
        due = inspection.report_due_ms
        return due is not None and due < now_ms
    return False


def status(inspection: Inspection, now_ms: int) -> str:
    """The state to show: ``overdue`` or ``due`` when they apply, else the stored state."""
    if is_overdue(inspection, now_ms):
        return "overdue"
    if is_due(inspection, now_ms):
        return "due"
    return inspection.state


@dataclass(frozen=True)
class ChangeRecord:
    """One configuration change in a host's archive (设备档案)."""

    agent_id: str
    at_ms: int
    source: str  # "inspection"
    kind: str  # e.g. "package", "kernel", "unit", "port", "mount", "config_file"
    item: str
    before: str | None
    after: str | None
    inspection_id: int | None = None
    id: int = 0  # assigned by the store
