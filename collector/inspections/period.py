"""The period under review: ticket and SLA statistics, alerts fired, recurrence (pure).

``ticket_statistics`` counts the period's tickets by level with their SLA outcome
(response and resolution met, breached, or still running) and time to resolve.
``recurrence`` re-checks the faults of the period's resolved tickets against this
inspection's findings and against later tickets with the same de-duplication key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from collector.inspections.inputs import AlertSummary, TicketSummary

__all__ = ["LEVELS", "alert_statistics", "recurrence", "ticket_statistics"]

LEVELS = ("1", "2", "3", "4", "consult", "other")
MAX_LISTED = 500
# ticket rule name prefix -> the checklist item that re-checks its fault
_RULE_ITEMS = (
    ("filesystem_", "filesystem"),
    ("memory_", "memory"),
    ("swap_", "memory"),
    ("oom_", "memory"),
    ("systemd_unit", "services"),
    ("clock_", "time"),
    ("host_unreachable", "host"),
    ("disk_", "hardware"),
    ("smart_", "hardware"),
)


def ticket_statistics(tickets: Sequence[TicketSummary]) -> dict[str, Any]:
    """Counts by level (every level listed, zeros included), totals, and the tickets."""
    rows = [_level_row(level, [t for t in tickets if t.level == level]) for level in LEVELS]
    others = [t for t in tickets if t.level not in LEVELS]
    if others:
        rows.append(_level_row("unknown", others))
    ordered = sorted(tickets, key=lambda t: (t.created_ms, t.id))
    return {
        "total": len(tickets),
        "by_level": rows,
        "all": _level_row("all", list(tickets)),
        "list": [_ticket(t) for t in ordered[:MAX_LISTED]],
        "listed": min(len(ordered), MAX_LISTED),
    }


def _level_row(level: str, tickets: Sequence[TicketSummary]) -> dict[str, Any]:
    durations = sorted(t.resolved_ms - t.created_ms for t in tickets if t.resolved_ms is not None)
    return {
        "level": level,
        "count": len(tickets),
        "resolved": len(durations),
        "open": len(tickets) - len(durations),
        "response": _sla([t.response_met for t in tickets]),
        "resolution": _sla([t.resolution_met for t in tickets]),
        "resolve_ms": {
            "median": durations[(len(durations) - 1) // 2] if durations else None,
            "mean": sum(durations) // len(durations) if durations else None,
            "max": durations[-1] if durations else None,
        },
    }


def _sla(outcomes: Iterable[bool | None]) -> dict[str, int]:
    values = list(outcomes)
    return {
        "met": sum(1 for v in values if v is True),
        "breached": sum(1 for v in values if v is False),
        "pending": sum(1 for v in values if v is None),
    }


def _ticket(ticket: TicketSummary) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "level": ticket.level,
        "title": ticket.title,
        "state": ticket.state,
        "source": ticket.source,
        "hostname": ticket.hostname,
        "created_ms": ticket.created_ms,
        "resolved_ms": ticket.resolved_ms,
        "response_met": ticket.response_met,
        "resolution_met": ticket.resolution_met,
    }


def alert_statistics(alerts: Sequence[AlertSummary]) -> dict[str, Any]:
    """How many alerts fired, and the most frequent ones (at most 100 listed)."""
    ordered = sorted(alerts, key=lambda a: (-a.count, a.first_ms, a.name, a.hostname))
    return {
        "distinct": len(alerts),
        "firings": sum(a.count for a in alerts),
        "list": [
            {
                "name": a.name,
                "hostname": a.hostname,
                "level": a.level,
                "first_ms": a.first_ms,
                "count": a.count,
                "ticket_id": a.ticket_id,
            }
            for a in ordered[:100]
        ],
    }


def recurrence(
    tickets: Sequence[TicketSummary], hosts: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per resolved fault ticket (levels 1-4) of the period (see module doc).

    ``hosts`` are the report's host entries (with their findings).
    """
    by_name = {host["hostname"]: host for host in hosts}
    by_agent = {host["agent_id"]: host for host in hosts}
    entries = []
    for ticket in sorted(tickets, key=lambda t: t.id):
        if ticket.resolved_ms is None or ticket.level not in LEVELS[:4]:
            continue
        key = ticket.dedup_key or ticket.rule or f"ticket:{ticket.id}"
        entries.append(_recheck(ticket, key, tickets, by_name, by_agent))
    return entries


def _recheck(
    ticket: TicketSummary,
    key: str,
    tickets: Sequence[TicketSummary],
    by_name: Mapping[str, Mapping[str, Any]],
    by_agent: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ticket_id": ticket.id,
        "key": key,
        "recurred": False,
        "rechecked": True,
    }
    assert ticket.resolved_ms is not None
    again = [
        t
        for t in tickets
        if t.id != ticket.id and t.created_ms > ticket.resolved_ms and _same_fault(t, ticket)
    ]
    if again:
        first = min(again, key=lambda t: t.created_ms)
        return {
            **entry,
            "recurred": True,
            "evidence": f"the same fault opened ticket #{first.id} again",
        }
    host, wanted = _host_and_findings(ticket, by_name, by_agent)
    if host is None:
        return {**entry, "rechecked": False, "evidence": "the host was not part of this inspection"}
    if host["outcome"] != "collected" and wanted != "host":
        return {
            **entry,
            "rechecked": False,
            "evidence": f"the host was not inspected ({host['outcome']})",
        }
    present = [f for f in host["findings"] if f["state"] != "ok" and _matches(f, wanted)]
    if present:
        titles = "; ".join(f["title"]["en"] for f in present[:3])
        return {**entry, "recurred": True, "evidence": f"found again by this inspection: {titles}"}
    if wanted is None:
        return {
            **entry,
            "evidence": "no later ticket for the same fault (no inspection check covers it)",
        }
    return {**entry, "evidence": "not found again: no later ticket and the inspection finds it ok"}


def _same_fault(one: TicketSummary, other: TicketSummary) -> bool:
    if one.dedup_key and other.dedup_key:
        return one.dedup_key == other.dedup_key
    return bool(one.rule) and one.rule == other.rule and one.hostname == other.hostname


def _host_and_findings(
    ticket: TicketSummary,
    by_name: Mapping[str, Mapping[str, Any]],
    by_agent: Mapping[str, Mapping[str, Any]],
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The report host of the ticket, and what to look for: a finding key ("key:…"),
    a checklist item, or None (no check covers the fault)."""
    dedup = ticket.dedup_key or ""
    if dedup.startswith("inspection:"):
        for agent_id, host in by_agent.items():
            prefix = f"inspection:{agent_id}:"
            if dedup.startswith(prefix):
                return host, "key:" + dedup[len(prefix) :]
    rule = ticket.rule or ""
    item = next((item for prefix, item in _RULE_ITEMS if rule.startswith(prefix)), None)
    return by_name.get(ticket.hostname), item


def _matches(finding: Mapping[str, Any], wanted: str | None) -> bool:
    if wanted is None:
        return False
    if wanted.startswith("key:"):
        return bool(finding["key"] == wanted[4:])
    return bool(finding["item"] == wanted)
