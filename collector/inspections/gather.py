"""From stored records to the analysis input: tickets, alerts, gaps of a period (pure).

The service reads the records (tickets with their timelines, gap reports); these
functions decide what belongs to the period ``[start_ms, end_ms)`` and summarise it
in the records of ``inputs.py``. SLA clocks are computed with the tickets' own SLA
policy (collector/tickets/sla.py), as of the period's end.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.inspections.inputs import AlertSummary, GapSummary, TicketSummary
from collector.store.base import GapRecord
from collector.tickets.model import Ticket, TicketEvent
from collector.tickets.sla import Clock, SlaPolicy, sla_status

__all__ = [
    "ALERT_SOURCES",
    "alert_summaries",
    "connected_ms",
    "gap_summaries",
    "in_period",
    "ticket_summaries",
]

ALERT_SOURCES = frozenset({"rule", "heartbeat", "alertmanager"})


def in_period(ticket: Ticket, start_ms: int, end_ms: int) -> bool:
    """Opened before the end and not closed before the start."""
    return ticket.created_ms < end_ms and (ticket.closed_ms is None or ticket.closed_ms >= start_ms)


def _met(clock: Clock) -> bool | None:
    if clock.state == "met":
        return True
    if clock.state == "breached":
        return False
    return None


def ticket_summaries(
    tickets: Sequence[tuple[Ticket, Sequence[TicketEvent]]],
    policy: SlaPolicy,
    start_ms: int,
    end_ms: int,
) -> list[TicketSummary]:
    """The period's tickets with their SLA verdicts, oldest first."""
    summaries = []
    for ticket, events in sorted(tickets, key=lambda pair: pair[0].id):
        if not in_period(ticket, start_ms, end_ms):
            continue
        status = sla_status(ticket, events, policy, end_ms)
        summaries.append(
            TicketSummary(
                id=ticket.id,
                level=ticket.level,
                title=ticket.title,
                state=ticket.state,
                source=ticket.source,
                hostname=ticket.hostname,
                created_ms=ticket.created_ms,
                acknowledged_ms=ticket.acknowledged_ms,
                resolved_ms=ticket.resolved_ms,
                closed_ms=ticket.closed_ms,
                response_due_ms=status.response.due_ms,
                resolution_due_ms=status.resolution.due_ms,
                response_met=_met(status.response),
                resolution_met=_met(status.resolution),
                rule=ticket.rule,
                dedup_key=ticket.dedup_key,
            )
        )
    return summaries


def alert_summaries(
    tickets: Sequence[tuple[Ticket, Sequence[TicketEvent]]], start_ms: int, end_ms: int
) -> list[AlertSummary]:
    """Alerts (rule, heartbeat and Alertmanager tickets) that fired in the period: the
    first firing and how often it fired (opened plus re-fired)."""
    alerts = []
    for ticket, events in sorted(tickets, key=lambda pair: pair[0].id):
        if ticket.source not in ALERT_SOURCES:
            continue
        firings = [
            e.at_ms
            for e in events
            if e.kind in ("opened", "refired") and start_ms <= e.at_ms < end_ms
        ]
        if not firings:
            continue
        alerts.append(
            AlertSummary(
                name=ticket.rule or ticket.labels.get("alertname", "") or ticket.title,
                hostname=ticket.hostname,
                level=ticket.level,
                first_ms=min(firings),
                count=len(firings),
                ticket_id=ticket.id,
            )
        )
    return alerts


def gap_summaries(gaps: Sequence[GapRecord], start_ms: int, end_ms: int) -> list[GapSummary]:
    """Reported data gaps overlapping the period, clipped to it."""
    return [
        GapSummary(max(g.start_ms, start_ms), min(g.end_ms, end_ms), g.reason)
        for g in sorted(gaps, key=lambda g: g.start_ms)
        if g.start_ms < end_ms and g.end_ms > start_ms
    ]


def connected_ms(
    gaps: Sequence[GapSummary], start_ms: int, end_ms: int, last_seen_ms: int | None
) -> int:
    """Time with data in the period: the period less its gaps, 0 for a host not seen
    since the period began. An estimate: the store keeps no connection history."""
    if last_seen_ms is None or last_seen_ms < start_ms:
        return 0
    covered, cursor = 0, start_ms
    for gap in sorted(gaps, key=lambda g: g.start_ms):
        begin, finish = max(gap.start_ms, cursor), min(gap.end_ms, end_ms)
        if finish > begin:
            covered += finish - begin
            cursor = finish
    return max(0, end_ms - start_ms - covered)
