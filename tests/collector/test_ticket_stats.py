"""Service-desk statistics: the pure function against a known fixture, periods, and
the service's scope (a customer sees its own customer only)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from collector.errors import InvalidRequest, PermissionDenied
from collector.tickets.model import Kind, Level, NewEvent, Source, Ticket
from collector.tickets.sla import HOUR_MS, MINUTE_MS, SlaPolicy
from collector.tickets.stats import Percentiles, parse_period, percentiles, ticket_stats
from tests.collector.test_ticket_service import (  # noqa: F401  (fixtures)
    ALICE,
    ENGINEER,
    MALLORY,
    MakeRig,
    make_rig,
    rigs,
    run,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int = 10, year: int = 2026) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=SHANGHAI).timestamp() * 1000)


def ticket(
    ticket_id: int,
    created: int,
    level: Level,
    source: Source,
    customer: str = "acme",
    rule: str | None = None,
    labels: dict[str, str] | None = None,
    kind: Kind = "fault",
    reopen_count: int = 0,
) -> Ticket:
    return Ticket(
        id=ticket_id,
        customer=customer,
        title=f"t{ticket_id}",
        level=level,
        state="open",
        source=source,
        created_ms=created,
        updated_ms=created,
        rule=rule,
        labels=labels or {},
        kind=kind,
        reopen_count=reopen_count,
    )


def timeline(start: int, *steps: tuple[int, str]) -> list[NewEvent]:
    events = [NewEvent(start, "system", "opened")]
    events += [NewEvent(start + offset, "user:erin", kind) for offset, kind in steps]  # type: ignore[arg-type]
    return events


A = at(10, 2)  # level 1 rule: the customer contacted in 10 min, resolved in 2 h, closed
B = at(11, 1)  # level 3 by the customer: answered late (3 h), resolved, rejected, resolved
C = at(12, 5)  # a complaint: answered in 1 h, still open
D = at(12, 10)  # level 2 from Alertmanager: answered in 20 min, unresolved past 8 h
NOW = at(12, 12, 0)
FIXTURE = [
    (
        ticket(1, A, "1", "rule", rule="disk_full"),
        [
            *timeline(
                A,
                (10 * MINUTE_MS, "contacted"),
                (2 * HOUR_MS, "resolved"),
                (3 * HOUR_MS, "closed"),
            ),
            # rated 2, then re-rated 5: the latest counts
            NewEvent(A + 4 * HOUR_MS, "user:alice", "rated", {"score": 2, "comment": "slow"}),
            NewEvent(A + 5 * HOUR_MS, "user:alice", "rated", {"score": 5, "comment": ""}),
        ],
    ),
    (
        ticket(2, B, "3", "customer", reopen_count=1),
        timeline(
            B,
            (3 * HOUR_MS, "contacted"),
            (5 * HOUR_MS, "resolved"),
            (6 * HOUR_MS, "rejected"),
            (6 * HOUR_MS, "reopened"),
            (7 * HOUR_MS, "resolved"),
        ),
    ),
    (ticket(3, C, "other", "customer", kind="complaint"), timeline(C, (HOUR_MS, "contacted"))),
    (
        ticket(4, D, "2", "alertmanager", labels={"alertname": "HighLoad"}),
        timeline(D, (20 * MINUTE_MS, "contacted")),
    ),
    # not counted: before the quarter (Shanghai time), another customer
    (ticket(5, at(9, 30, 23), "1", "rule", rule="disk_full"), timeline(at(9, 30, 23))),
    (
        ticket(6, A, "1", "rule", customer="globex", rule="x"),
        [*timeline(A), NewEvent(A + 1, "user:mallory", "rated", {"score": 1, "comment": ""})],
    ),
]


def test_statistics_of_a_known_fixture() -> None:
    stats = ticket_stats("acme", parse_period("2026Q4"), FIXTURE, SlaPolicy(), NOW)
    assert stats.tickets == 4
    assert stats.by_level == {"1": 1, "2": 1, "3": 1, "other": 1}
    assert stats.by_kind == {"complaint": 1, "fault": 3}
    assert stats.by_category == {"HighLoad": 1, "disk_full": 1, "manual": 2}
    assert stats.by_source == {"alertmanager": 1, "customer": 2, "rule": 1}
    # B's first answer was late: breached, although its second one was prompt
    assert stats.sla["response"] == {"met": 3, "breached": 1, "open": 0, "not_applicable": 0}
    assert stats.sla["resolution"] == {"met": 2, "breached": 1, "open": 1, "not_applicable": 0}
    assert stats.sla["remote_response"] == {"met": 0, "breached": 0, "open": 0, "not_applicable": 4}
    # first answers: 10 m, 3 h, 1 h, 20 m; resolutions: 2 h, and 5 h + 1 h for B
    assert stats.time_to_respond == Percentiles(4, 20 * MINUTE_MS, 3 * HOUR_MS)
    assert stats.time_to_resolve == Percentiles(2, 2 * HOUR_MS, 6 * HOUR_MS)
    assert (stats.reopens, stats.reopened_tickets, stats.complaints) == (1, 1, 1)
    document = stats.as_dict()
    assert document["format"] == "aftercare-ticket-stats/1"
    assert document["time_to_respond_ms"] == {"count": 4, "median": 1_200_000, "p90": 10_800_000}
    # ticket 1's latest rating only; globex's rating is not acme's
    assert document["ratings"] == {
        "count": 1,
        "mean": 5.0,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1},
    }


def test_a_month_and_a_year_select_their_tickets() -> None:
    policy = SlaPolicy()
    assert ticket_stats("acme", parse_period("2026-12"), FIXTURE, policy, NOW).tickets == 2
    assert ticket_stats("acme", parse_period("2026-09"), FIXTURE, policy, NOW).tickets == 1
    assert ticket_stats("acme", parse_period("2026"), FIXTURE, policy, NOW).tickets == 5
    empty = ticket_stats("acme", parse_period("2025"), FIXTURE, policy, NOW)
    assert empty.tickets == 0
    assert empty.time_to_respond == Percentiles(0, None, None)


def test_periods_are_calendar_spans_in_the_zone() -> None:
    q4 = parse_period("2026Q4")
    assert (q4.start_ms, q4.end_ms) == (at(10, 1, 0), at(1, 1, 0, year=2027))
    november = parse_period("2026-11", "UTC")
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert (november.start_ms, november.end_ms) == (
        int(start.timestamp() * 1000),
        int(end.timestamp() * 1000),
    )
    assert parse_period("2026").end_ms == at(1, 1, 0, year=2027)


@pytest.mark.parametrize("text", ["2026Q5", "2026-13", "26Q1", "Q4", "2026-1", "last month", ""])
def test_bad_periods_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidRequest, match=r"use e\.g\. 2026, 2026Q4 or 2026-11"):
        parse_period(text)


def test_percentiles_use_the_nearest_rank() -> None:
    assert percentiles([5]) == Percentiles(1, 5, 5)
    assert percentiles(list(range(1, 11))) == Percentiles(10, 5, 9)
    assert percentiles([3, 1, 2]) == Percentiles(3, 2, 3)


def test_customers_get_their_own_statistics_only(make_rig: MakeRig) -> None:  # noqa: F811
    rig = make_rig()
    rig.clock.now = at(11, 3)
    rig.create(ALICE, "printer on fire")
    rig.create(ENGINEER, "globex fault", customer="globex")
    own = run(rig.service.stats(ALICE, "", "2026Q4"))
    assert (own.customer, own.tickets) == ("acme", 1)
    assert run(rig.service.stats(ALICE, "acme", "2026-11")).tickets == 1
    with pytest.raises(PermissionDenied):
        run(rig.service.stats(MALLORY, "acme", "2026Q4"))
    with pytest.raises(PermissionDenied):
        run(rig.service.stats(ALICE, "globex", "2026Q4"))
    assert run(rig.service.stats(ENGINEER, "globex", "2026Q4")).tickets == 1
    with pytest.raises(InvalidRequest, match="name the customer"):
        run(rig.service.stats(ENGINEER, "", "2026Q4"))
