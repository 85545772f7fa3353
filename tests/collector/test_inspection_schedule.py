"""Inspection scheduling on a fake clock: quarters, months, notice, overdue, due dates."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.calendar import WorkingCalendar
from collector.errors import InvalidRequest
from collector.inspections.model import Inspection, Plan, is_overdue, status
from collector.inspections.schedule import (
    announce_at_ms,
    due_occurrences,
    occurrence_ms,
    parse_local_time,
    parse_notice,
    report_due_ms,
)

SHANGHAI = WorkingCalendar()
DAY = 86_400_000


def at(text: str, zone: WorkingCalendar = SHANGHAI) -> int:
    return parse_local_time(text, zone)


def local(ms: int) -> str:
    return SHANGHAI.local(ms).strftime("%Y-%m-%dT%H:%M")


def plan(first: str, every: str = "quarter") -> Plan:
    return Plan(1, "acme", every, at(first), "", "erin", 7 * DAY, (), "active", 0, "erin", 0)  # type: ignore[arg-type]


def test_quarters_keep_the_day_of_month_where_the_month_has_it() -> None:
    first = at("2027-01-31T09:00")
    dates = [local(occurrence_ms(first, "quarter", n, SHANGHAI)) for n in range(5)]
    assert dates == [
        "2027-01-31T09:00",
        "2027-04-30T09:00",
        "2027-07-31T09:00",
        "2027-10-31T09:00",
        "2028-01-31T09:00",
    ]


def test_months_count_from_the_first_date_so_february_does_not_shift_later_ones() -> None:
    first = at("2027-01-30T14:30")
    dates = [local(occurrence_ms(first, "month", n, SHANGHAI)) for n in range(4)]
    assert dates == ["2027-01-30T14:30", "2027-02-28T14:30", "2027-03-30T14:30", "2027-04-30T14:30"]


def test_the_local_time_holds_across_daylight_saving_in_the_plans_zone() -> None:
    berlin = WorkingCalendar(timezone="Europe/Berlin")
    first = parse_local_time("2027-01-15T09:00", berlin)
    april = occurrence_ms(first, "quarter", 1, berlin)
    assert berlin.local(april).strftime("%H:%M") == "09:00"
    assert april - first != (31 + 28 + 31) * DAY  # an hour shorter: summer time


def test_a_plan_creates_its_next_occurrence_and_any_it_missed() -> None:
    p = plan("2027-01-15T09:00")
    assert due_occurrences(p, 0, at("2026-12-04T10:00"), SHANGHAI) == [0]
    assert due_occurrences(p, 1, at("2027-01-15T08:59"), SHANGHAI) == []
    assert due_occurrences(p, 1, at("2027-01-15T09:00"), SHANGHAI) == [1]
    # the collector was down for most of a year: the missed ones and the next one
    assert due_occurrences(p, 1, at("2027-10-20T00:00"), SHANGHAI) == [1, 2, 3, 4]


def test_the_announcement_comes_notice_before_the_date() -> None:
    scheduled = at("2027-01-15T09:00")
    assert local(announce_at_ms(scheduled, parse_notice("7d"))) == "2027-01-08T09:00"
    assert announce_at_ms(scheduled, parse_notice("0s")) == scheduled
    with pytest.raises(InvalidRequest, match="--notice"):
        parse_notice("100d")
    with pytest.raises(InvalidRequest, match="--notice"):
        parse_notice("soon")


def test_a_report_is_due_three_working_days_after_the_run() -> None:
    friday = at("2027-01-15T17:00")
    assert local(report_due_ms(friday, SHANGHAI)) == "2027-01-20T17:00"  # Mon, Tue, Wed


def test_holidays_push_the_due_date_and_make_up_days_pull_it() -> None:
    national_day = WorkingCalendar.build(
        holidays=[f"2027-10-0{d}" for d in range(1, 8)], extra_working_days=["2027-10-09"]
    )
    thursday = parse_local_time("2027-09-30T10:00", national_day)
    due = national_day.local(report_due_ms(thursday, national_day))
    # Oct 1-7 holidays, Sat Oct 9 a make-up working day: Oct 8, 9, 11
    assert due.date() == dt.date(2027, 10, 11)


def test_missed_consent_and_late_reports_show_overdue() -> None:
    scheduled = at("2027-01-15T09:00")
    base = Inspection(7, 1, "acme", 0, scheduled, "announced", "erin", "", DAY, (), 0, 0)
    assert not is_overdue(base, scheduled - 1)
    assert is_overdue(base, scheduled) and status(base, scheduled) == "overdue"
    consented = Inspection(7, 1, "acme", 0, scheduled, "consented", "erin", "", DAY, (), 0, 0)
    assert status(consented, scheduled) == "due" and not is_overdue(consented, scheduled + DAY)
    due = report_due_ms(scheduled, SHANGHAI)
    waiting = Inspection(
        7, 1, "acme", 0, scheduled, "awaiting_report", "erin", "", DAY, (), 0, 0, report_due_ms=due
    )
    assert not is_overdue(waiting, due) and is_overdue(waiting, due + 1)


def test_dates_without_a_zone_are_read_in_the_calendars_zone() -> None:
    assert at("2027-01-15T09:00") == at("2027-01-15T01:00+00:00")
    with pytest.raises(InvalidRequest, match="2027-01-15T09:00"):
        at("next tuesday")
