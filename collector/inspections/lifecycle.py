"""The inspection state machine: pure transitions, each with its timeline events.

Every function takes the current ``Inspection`` and returns a ``Transition`` (the
changed inspection and the events to append), or raises ``InspectionStateError``
naming the state and what is possible now. Who may act (engineer or customer) is the
service's concern; this module only knows states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from collector.errors import InvalidRequest
from collector.inspections.errors import InspectionStateError
from collector.inspections.model import (
    NOT_STARTED,
    EventKind,
    HostResult,
    Inspection,
    InspectionState,
    NewInspectionEvent,
)

__all__ = [
    "POSSIBLE",
    "Transition",
    "analysed",
    "analysis_failed",
    "announce",
    "cancel",
    "consent",
    "decline",
    "publish",
    "reject",
    "replan",
    "report_late",
    "reschedule",
    "sign",
    "start_run",
]

MAX_TEXT = 2000

# What each state allows (for messages: "possible now: ...").
POSSIBLE: Mapping[InspectionState, tuple[str, ...]] = {
    "planned": ("consent", "decline", "reschedule"),
    "announced": ("consent", "decline", "reschedule"),
    "consented": ("run", "decline", "reschedule"),
    "declined": ("consent", "reschedule"),
    "running": (),
    "awaiting_report": ("publish",),
    "awaiting_signoff": ("sign", "reject", "report"),
    "signed": ("report",),
    "rejected": ("report",),
    "failed": ("run",),
    "cancelled": (),
}


@dataclass(frozen=True)
class Transition:
    """The inspection after an action and the events that record it."""

    inspection: Inspection
    events: tuple[NewInspectionEvent, ...]


def _require(
    inspection: Inspection, action: str, states: Sequence[InspectionState], hint: str = ""
) -> None:
    if inspection.state not in states:
        raise InspectionStateError(
            inspection.id, inspection.state, action, POSSIBLE[inspection.state], hint
        )


def _event(
    at_ms: int, actor: str, kind: EventKind, details: Mapping[str, Any] | None = None
) -> NewInspectionEvent:
    return NewInspectionEvent(at_ms, actor, kind, dict(details or {}))


def _text(name: str, value: str, required: bool = True) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidRequest(f"give a {name} (--{name})")
    if len(text) > MAX_TEXT:
        raise InvalidRequest(f"{name} is {len(text)} characters; the limit is {MAX_TEXT}")
    return text


def announce(inspection: Inspection, now_ms: int, details: Mapping[str, Any]) -> Transition:
    """planned → announced: the customer was sent the inspection application."""
    _require(inspection, "announce", ("planned",))
    changed = replace(inspection, state="announced", announced_ms=now_ms)
    return Transition(changed, (_event(now_ms, "system", "announced", details),))


def consent(inspection: Inspection, actor: str, now_ms: int) -> Transition:
    """The customer agrees to the inspection at its date."""
    hint = "consent was already given" if inspection.state == "consented" else ""
    _require(inspection, "consent", ("planned", "announced", "declined"), hint)
    changed = replace(
        inspection,
        state="consented",
        consented_ms=now_ms,
        consented_by=actor,
        decline_reason="",
        proposed_ms=None,
    )
    details = {"scheduled_ms": inspection.scheduled_ms}
    return Transition(changed, (_event(now_ms, actor, "consented", details),))


def decline(
    inspection: Inspection, actor: str, reason: str, proposed_ms: int | None, now_ms: int
) -> Transition:
    """The customer declines (withdraws consent), with a reason and maybe another date."""
    _require(inspection, "decline", ("planned", "announced", "consented"))
    why = _text("reason", reason)
    if proposed_ms is not None and proposed_ms <= now_ms:
        raise InvalidRequest("--propose: the proposed date has passed; propose a future one")
    changed = replace(
        inspection,
        state="declined",
        decline_reason=why,
        proposed_ms=proposed_ms,
        consented_ms=None,
        consented_by="",
    )
    details = {"reason": why, "proposed_ms": proposed_ms}
    return Transition(changed, (_event(now_ms, actor, "declined", details),))


def reschedule(inspection: Inspection, actor: str, at_ms: int, now_ms: int) -> Transition:
    """An engineer moves the date; the customer is asked (and must consent) again."""
    _require(inspection, "reschedule", ("planned", "announced", "consented", "declined"))
    if at_ms <= now_ms:
        raise InvalidRequest("--at: the new date has passed; choose a future one")
    changed = replace(
        inspection,
        state="planned",
        scheduled_ms=at_ms,
        announced_ms=None,
        consented_ms=None,
        consented_by="",
        decline_reason="",
        proposed_ms=None,
    )
    details = {"from_ms": inspection.scheduled_ms, "to_ms": at_ms}
    return Transition(changed, (_event(now_ms, actor, "rescheduled", details),))


def replan(
    inspection: Inspection,
    actor: str,
    scheduled_ms: int,
    engineer: str,
    hosts: str,
    notice_ms: int,
    config_files: Sequence[str],
    now_ms: int,
) -> Transition | None:
    """Apply a changed plan to a not yet started occurrence (None if nothing changes).
    A new date needs the customer's consent again."""
    _require(inspection, "replan", tuple(NOT_STARTED))
    changed = replace(
        inspection,
        engineer=engineer,
        hosts=hosts,
        notice_ms=notice_ms,
        config_files=tuple(config_files),
    )
    if scheduled_ms != inspection.scheduled_ms:
        changed = replace(
            changed,
            state="planned",
            scheduled_ms=scheduled_ms,
            announced_ms=None,
            consented_ms=None,
            consented_by="",
            decline_reason="",
            proposed_ms=None,
        )
    if changed == inspection:
        return None
    details = {"plan_changed": True, "from_ms": inspection.scheduled_ms, "to_ms": scheduled_ms}
    return Transition(changed, (_event(now_ms, actor, "rescheduled", details),))


def cancel(inspection: Inspection, actor: str, reason: str, now_ms: int) -> Transition:
    """A not yet started inspection is dropped (its plan was cancelled or changed)."""
    _require(inspection, "cancel", tuple(NOT_STARTED))
    changed = replace(inspection, state="cancelled")
    return Transition(changed, (_event(now_ms, actor, "cancelled", {"reason": reason}),))


def start_run(
    inspection: Inspection,
    actor: str,
    hosts: Sequence[HostResult],
    period_start_ms: int,
    now_ms: int,
) -> Transition:
    """consented (or failed: run again) → running on ``hosts``."""
    hint = ""
    if inspection.state in ("planned", "announced", "declined"):
        hint = "the customer has not consented (`aftercare inspection consent`)"
    _require(inspection, "run", ("consented", "failed"), hint)
    changed = replace(
        inspection,
        state="running",
        run_started_ms=now_ms,
        run_finished_ms=None,
        period_start_ms=period_start_ms,
        host_results=tuple(hosts),
        report_due_ms=None,
        late_notified_ms=None,
    )
    details = {"hosts": [h.hostname for h in hosts]}
    return Transition(changed, (_event(now_ms, actor, "run_started", details),))


def analysed(
    inspection: Inspection,
    draft: Mapping[str, Any],
    ticket_ids: Sequence[int],
    report_due_ms: int,
    now_ms: int,
) -> Transition:
    """running → awaiting_report: the draft is stored, the report clock starts."""
    _require(inspection, "analyse", ("running",))
    changed = replace(
        inspection,
        state="awaiting_report",
        run_finished_ms=inspection.run_finished_ms or now_ms,
        draft=dict(draft),
        ticket_ids=tuple(ticket_ids),
        report_due_ms=report_due_ms,
    )
    details = {"report_due_ms": report_due_ms, "tickets": list(ticket_ids)}
    return Transition(changed, (_event(now_ms, "system", "analysed", details),))


def analysis_failed(inspection: Inspection, error: str, now_ms: int) -> Transition:
    """running → failed: the analysis raised; an engineer may run it again."""
    _require(inspection, "analyse", ("running",))
    changed = replace(inspection, state="failed", run_finished_ms=now_ms)
    return Transition(changed, (_event(now_ms, "system", "analysis_failed", {"error": error}),))


def publish(
    inspection: Inspection, actor: str, summary: str, sha256: str, now_ms: int
) -> Transition:
    """awaiting_report → awaiting_signoff: the report is fixed (its sha256 stored)."""
    _require(inspection, "publish", ("awaiting_report",))
    changed = replace(
        inspection,
        state="awaiting_signoff",
        summary=_text("summary", summary, required=False),
        published_ms=now_ms,
        published_by=actor,
        report_sha256=sha256,
    )
    details = {"report_sha256": sha256}
    return Transition(changed, (_event(now_ms, actor, "published", details),))


def sign(
    inspection: Inspection,
    actor: str,
    name: str,
    title: str,
    comment: str,
    seen_sha256: str,
    now_ms: int,
) -> Transition:
    """awaiting_signoff → signed, binding the sha256 the signer saw (must match)."""
    _require(inspection, "sign", ("awaiting_signoff",), _not_yet_published(inspection))
    if seen_sha256 != inspection.report_sha256:
        raise InspectionStateError(
            inspection.id,
            inspection.state,
            "sign",
            POSSIBLE[inspection.state],
            f"the report you saw (sha256 {seen_sha256 or 'none'}) is not the published one "
            f"({inspection.report_sha256}); fetch it again and review it before signing",
        )
    signoff = {
        "decision": "signed",
        "name": _text("name", name),
        "title": _text("title", title),
        "comment": _text("comment", comment, required=False),
        "reason": "",
        "at_ms": now_ms,
        "report_sha256": inspection.report_sha256,
        "by": actor,
    }
    changed = replace(inspection, state="signed", signoff=signoff)
    return Transition(changed, (_event(now_ms, actor, "signed", signoff),))


def reject(inspection: Inspection, actor: str, reason: str, now_ms: int) -> Transition:
    """awaiting_signoff → rejected, with the customer's reason."""
    _require(inspection, "reject", ("awaiting_signoff",), _not_yet_published(inspection))
    signoff = {
        "decision": "rejected",
        "name": "",
        "title": "",
        "comment": "",
        "reason": _text("reason", reason),
        "at_ms": now_ms,
        "report_sha256": inspection.report_sha256,
        "by": actor,
    }
    changed = replace(inspection, state="rejected", signoff=signoff)
    return Transition(changed, (_event(now_ms, actor, "rejected", signoff),))


def report_late(inspection: Inspection, now_ms: int, details: Mapping[str, Any]) -> Transition:
    """Record (once) that the report passed its due date and who was told."""
    changed = replace(inspection, late_notified_ms=now_ms)
    return Transition(changed, (_event(now_ms, "system", "report_late", details),))


def _not_yet_published(inspection: Inspection) -> str:
    if inspection.state in ("running", "awaiting_report", "failed") or (
        inspection.state in NOT_STARTED
    ):
        return "the report is not published yet"
    return ""
