"""Service-desk statistics of one customer and period (the monthly or quarterly
service review): pure, computed from tickets, their timelines and the SLA policy.

Contract: a ticket counts in a period when it was **opened** in it (``created_ms`` in
``[start_ms, end_ms)``, the period's bounds in the given time zone). Its SLA outcome
and times are evaluated as of ``now_ms`` (so a review shows how the period's tickets
fared), with the SLA clocks of ``sla.py``:

- ``sla[clock]``: counts of ``met``, ``breached``, ``open`` (running, warning or
  paused: no outcome yet) and ``not_applicable``. The response clock restarts at each
  re-opening: a ticket counts as breached if any of its response measurements was
  (a later prompt answer does not hide a missed one); otherwise as its latest.
  Resolution time accumulates across re-openings, so its clock is read as is.
- ``time_to_respond_ms``: over tickets that got a first response, the first response
  measurement's elapsed time; ``time_to_resolve_ms``: over tickets whose resolution
  clock has stopped, its elapsed time. Waiting on the customer is excluded, as the
  clocks count it. Each has ``count``, ``median`` and ``p90`` (nearest rank: the
  smallest value with at least 50 % / 90 % of values at or below it; None if none).
- ``reopens``: the sum of re-openings and how many tickets were re-opened.
- ``by_level`` (current level), ``by_kind``, ``by_category``, ``by_source``: counts.
  The category is the rule that raised the ticket (Alertmanager: its ``alertname``
  label), else ``manual``; the kind is ``fault``, ``complaint`` or ``inquiry``.
- ``complaints``: how many tickets are of kind ``complaint``.
- ``ratings``: the customers' satisfaction ratings (``rated`` events; a ticket's
  latest rating counts, once): ``count``, ``mean`` (two decimals; None if none) and
  ``distribution`` (how many of each score 1..5).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from collector.errors import InvalidRequest
from collector.tickets.model import Ticket
from collector.tickets.sla import CLOCK_NAMES, Clock, Event, SlaPolicy, sla_status

__all__ = [
    "Percentiles",
    "Period",
    "Ratings",
    "TicketStats",
    "parse_period",
    "percentiles",
    "ticket_stats",
]

_PERIOD = re.compile(r"^(\d{4})(?:Q([1-4])|-(\d{2}))?$")
_OPEN_STATES = frozenset({"running", "warning", "paused"})


@dataclass(frozen=True)
class Period:
    """A calendar year, quarter or month: ``[start_ms, end_ms)`` in unix ms."""

    label: str  # "2026", "2026Q4", "2026-11"
    start_ms: int
    end_ms: int

    def contains(self, at_ms: int) -> bool:
        """Whether ``at_ms`` falls in the period."""
        return self.start_ms <= at_ms < self.end_ms


def parse_period(text: str, timezone: str = "Asia/Shanghai") -> Period:
    """``2026``, ``2026Q4`` or ``2026-11`` as a ``Period`` in ``timezone``;
    ``InvalidRequest`` naming the accepted forms otherwise."""
    match = _PERIOD.match(text.strip())
    month_text = match.group(3) if match else None
    if match is None or (month_text is not None and not 1 <= int(month_text) <= 12):
        raise InvalidRequest(
            f"period {text!r} is not a year, quarter or month: use e.g. 2026, 2026Q4 or 2026-11"
        )
    year = int(match.group(1))
    if match.group(2):
        first, months = 3 * (int(match.group(2)) - 1) + 1, 3
    elif month_text:
        first, months = int(month_text), 1
    else:
        first, months = 1, 12
    end_year, end_month = year + (first - 1 + months) // 12, (first - 1 + months) % 12 + 1
    zone = ZoneInfo(timezone)
    start = dt.datetime(year, first, 1, tzinfo=zone)
    end = dt.datetime(end_year, end_month, 1, tzinfo=zone)
    return Period(text.strip(), _ms(start), _ms(end))


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Percentiles:
    """Count, median and 90th percentile (nearest rank) of durations in ms."""

    count: int
    median_ms: int | None
    p90_ms: int | None


def percentiles(values: Sequence[int]) -> Percentiles:
    """Nearest-rank median and p90 of ``values`` (None for both when empty)."""
    ordered = sorted(values)
    if not ordered:
        return Percentiles(0, None, None)

    def rank(fraction: float) -> int:
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]

    return Percentiles(len(ordered), rank(0.5), rank(0.9))


@dataclass(frozen=True)
class Ratings:
    """Satisfaction ratings: how many, their mean, how many of each score 1..5."""

    count: int
    mean: float | None
    distribution: Mapping[str, int]


NO_RATINGS = Ratings(0, None, {str(s): 0 for s in range(1, 6)})


def ratings_of(scores: Sequence[int]) -> Ratings:
    """The ``Ratings`` of ``scores`` (each 1..5)."""
    counts = Counter(str(score) for score in scores)
    mean = round(sum(scores) / len(scores), 2) if scores else None
    return Ratings(len(scores), mean, {str(s): counts.get(str(s), 0) for s in range(1, 6)})


def _latest_score(events: Sequence[Event]) -> int | None:
    """The score of the ticket's latest ``rated`` event (a re-rating replaces)."""
    scores = [e.details.get("score") for e in events if e.kind == "rated"]
    return scores[-1] if scores and isinstance(scores[-1], int) else None


@dataclass(frozen=True)
class TicketStats:
    """The statistics of one customer and period (see the module docstring)."""

    customer: str
    period: Period
    now_ms: int
    tickets: int
    by_level: Mapping[str, int] = field(default_factory=dict)
    by_kind: Mapping[str, int] = field(default_factory=dict)
    by_category: Mapping[str, int] = field(default_factory=dict)
    by_source: Mapping[str, int] = field(default_factory=dict)
    sla: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    time_to_respond: Percentiles = Percentiles(0, None, None)
    time_to_resolve: Percentiles = Percentiles(0, None, None)
    reopens: int = 0
    reopened_tickets: int = 0
    complaints: int = 0
    ratings: Ratings = NO_RATINGS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--json`` document; docs/statistics.md)."""
        return {
            "format": "aftercare-ticket-stats/1",
            "customer": self.customer,
            "period": self.period.label,
            "from_ms": self.period.start_ms,
            "to_ms": self.period.end_ms,
            "as_of_ms": self.now_ms,
            "tickets": self.tickets,
            "by_level": dict(self.by_level),
            "by_kind": dict(self.by_kind),
            "by_category": dict(self.by_category),
            "by_source": dict(self.by_source),
            "sla": {name: dict(counts) for name, counts in self.sla.items()},
            "time_to_respond_ms": _percentiles_dict(self.time_to_respond),
            "time_to_resolve_ms": _percentiles_dict(self.time_to_resolve),
            "reopens": self.reopens,
            "reopened_tickets": self.reopened_tickets,
            "complaints": self.complaints,
            "ratings": {
                "count": self.ratings.count,
                "mean": self.ratings.mean,
                "distribution": dict(self.ratings.distribution),
            },
        }


def _percentiles_dict(value: Percentiles) -> dict[str, int | None]:
    return {"count": value.count, "median": value.median_ms, "p90": value.p90_ms}


def ticket_stats(
    customer: str,
    period: Period,
    timelines: Sequence[tuple[Ticket, Sequence[Event]]],
    policy: SlaPolicy,
    now_ms: int,
) -> TicketStats:
    """Statistics of ``customer``'s tickets opened in ``period`` (others are ignored)."""
    chosen = [
        (t, events)
        for t, events in timelines
        if t.customer == customer and period.contains(t.created_ms)
    ]
    sla: dict[str, Counter[str]] = {name: Counter() for name in CLOCK_NAMES}
    respond: list[int] = []
    resolve: list[int] = []
    for ticket, events in chosen:
        status = sla_status(ticket, events, policy, now_ms)
        responses = _response_measurements(ticket, events, policy, now_ms)
        for clock in status.clocks:
            state = clock.state
            if clock.name == "response" and any(r.state == "breached" for r in responses):
                state = "breached"
            sla[clock.name]["open" if state in _OPEN_STATES else state] += 1
        if responses[0].stopped:
            respond.append(responses[0].elapsed_ms)
        if status.resolution.stopped:
            resolve.append(status.resolution.elapsed_ms)
    tickets = [t for t, _ in chosen]
    kinds = Counter(_kind(t) for t in tickets)
    return TicketStats(
        customer=customer,
        period=period,
        now_ms=now_ms,
        tickets=len(tickets),
        by_level=_sorted(Counter(t.level for t in tickets)),
        by_kind=_sorted(kinds),
        by_category=_sorted(Counter(_category(t) for t in tickets)),
        by_source=_sorted(Counter(t.source for t in tickets)),
        sla={name: _sla_counts(counts) for name, counts in sla.items()},
        time_to_respond=percentiles(respond),
        time_to_resolve=percentiles(resolve),
        reopens=sum(t.reopen_count for t in tickets),
        reopened_tickets=sum(1 for t in tickets if t.reopen_count > 0),
        complaints=kinds.get("complaint", 0),
        ratings=ratings_of([s for _, e in chosen if (s := _latest_score(e)) is not None]),
    )


def _response_measurements(
    ticket: Ticket, events: Sequence[Event], policy: SlaPolicy, now_ms: int
) -> list[Clock]:
    """The response clock of every measurement: as it stood just before each
    re-opening (which starts a new one), then now."""
    cuts = sorted({e.at_ms for e in events if e.kind == "reopened" and e.at_ms <= now_ms})
    measurements = [
        sla_status(ticket, [e for e in events if e.at_ms < cut], policy, cut - 1).response
        for cut in cuts
    ]
    return [*measurements, sla_status(ticket, events, policy, now_ms).response]


def _kind(ticket: Ticket) -> str:
    return ticket.kind


def _category(ticket: Ticket) -> str:
    if ticket.rule:
        return ticket.rule
    if ticket.source == "alertmanager" and ticket.labels.get("alertname"):
        return ticket.labels["alertname"]
    return "manual"


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def _sla_counts(counts: Counter[str]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("met", "breached", "open", "not_applicable")}
