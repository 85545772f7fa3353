"""What the analysis of one inspection receives (pure records; times are unix ms).

The inspection service gathers these from the store and from the inspection
playbook's runs; ``analysis`` turns them into findings, drift and the report. Nothing
here is optional by omission: a host that could not be inspected is present with an
``outcome`` other than ``"collected"`` and the reason in ``detail`` — never left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from collector.history.model import HistorySeries

__all__ = [
    "AlertSummary",
    "GapSummary",
    "HostInput",
    "HostOutcome",
    "InspectionInput",
    "TicketSummary",
]

HostOutcome = Literal["collected", "offline", "refused", "failed", "timed_out"]


@dataclass(frozen=True)
class GapSummary:
    """A stretch without data from a host (a reported spool gap or a disconnection)."""

    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True)
class HostInput:
    """One host in scope of the inspection.

    ``step_outputs`` maps each step name of the inspection playbook to its (redacted)
    text output; ``previous_step_outputs`` is the same for this host's previous
    inspection (``None`` when this is its first). ``history`` holds the host's
    downsampled series over the period, keyed by metric name.
    """

    agent_id: str
    hostname: str
    outcome: HostOutcome
    detail: str = ""  # why it was not collected, or "" when collected
    run_id: str | None = None
    playbook_version: str = ""
    step_outputs: Mapping[str, str] = field(default_factory=dict)
    previous_step_outputs: Mapping[str, str] | None = None
    previous_inspection_id: str | None = None
    history: Mapping[str, Sequence[HistorySeries]] = field(default_factory=dict)
    connected_ms: int = 0  # time within the period the host was connected
    gaps: Sequence[GapSummary] = ()


@dataclass(frozen=True)
class TicketSummary:
    """A ticket of the customer opened (or still open) during the period."""

    id: int
    level: str  # "1".."4", "consult", "other"
    title: str
    state: str
    source: str
    hostname: str
    created_ms: int
    acknowledged_ms: int | None
    resolved_ms: int | None
    closed_ms: int | None
    response_due_ms: int | None
    resolution_due_ms: int | None
    response_met: bool | None  # None: not decided yet (still running)
    resolution_met: bool | None
    rule: str | None = None
    dedup_key: str | None = None


@dataclass(frozen=True)
class AlertSummary:
    """An alert that fired during the period (Alertmanager tickets and rule firings)."""

    name: str
    hostname: str
    level: str
    first_ms: int
    count: int
    ticket_id: int | None = None


@dataclass(frozen=True)
class InspectionInput:
    """Everything one inspection's analysis and report need."""

    inspection_id: str
    customer: str
    customer_name: str
    period_start_ms: int  # the previous inspection's run (or the plan's creation)
    period_end_ms: int  # this run
    engineer: str
    hosts: Sequence[HostInput]
    tickets: Sequence[TicketSummary]
    alerts: Sequence[AlertSummary] = ()
    config_files: Sequence[str] = ()  # paths whose checksums are compared for drift
