"""When a plan's inspections fall, when they are announced, when their report is due.

Pure and clock-free (times are unix ms). Occurrence ``n`` of a plan is its first date
plus ``n`` quarters (3 months) or months, at the same local wall-clock time in the
calendar's time zone, keeping the day of month where the month has it and the
month's last day otherwise (first 2027-01-31: then 2027-04-30, 2027-07-31, ...: each
occurrence counts from the first date, so a short month never shifts the later ones).
"""

from __future__ import annotations

import calendar as month_calendar
import datetime as dt

from collector.calendar import WorkingCalendar
from collector.errors import InvalidRequest
from collector.inspections.model import PLAN_EVERY, Every, Plan
from common.durations import parse_duration

__all__ = [
    "MAX_OCCURRENCES",
    "REPORT_DUE_WORKING_DAYS",
    "announce_at_ms",
    "due_occurrences",
    "occurrence_ms",
    "parse_every",
    "parse_local_time",
    "parse_notice",
    "report_due_ms",
]

REPORT_DUE_WORKING_DAYS = 3  # SERVICE-COMMITMENTS.md: the report within 3 working days
MAX_OCCURRENCES = 1200  # a hundred years of monthly inspections: bounds every loop
MAX_NOTICE_MS = 90 * 86_400_000


def _months(every: Every) -> int:
    return 3 if every == "quarter" else 1


def occurrence_ms(first_ms: int, every: Every, index: int, zone: WorkingCalendar) -> int:
    """The instant of occurrence ``index`` (0 = the first date) in ``zone``'s time zone."""
    if index < 0:
        raise ValueError(f"occurrence index cannot be negative, got {index}")
    first = zone.local(first_ms)
    months = first.month - 1 + index * _months(every)
    year, month = first.year + months // 12, months % 12 + 1
    day = min(first.day, month_calendar.monthrange(year, month)[1])
    wall = dt.datetime(year, month, day, first.hour, first.minute, first.second)
    return int(wall.replace(tzinfo=zone.zone).timestamp() * 1000)


def due_occurrences(plan: Plan, existing: int, until_ms: int, zone: WorkingCalendar) -> list[int]:
    """Indexes of occurrences to create now, given ``existing`` already created (0..n-1).

    Every occurrence whose date is at or before ``until_ms``, plus the next future one,
    so a plan always shows its upcoming inspection (and a collector that was down for
    a quarter creates the one it missed, which then shows overdue).
    """
    wanted = []
    for index in range(existing, MAX_OCCURRENCES):
        if index > 0 and occurrence_ms(plan.first_ms, plan.every, index - 1, zone) > until_ms:
            break
        wanted.append(index)
    return wanted


def parse_every(value: str) -> Every:
    """``quarter`` or ``month``; InvalidRequest otherwise."""
    for every in PLAN_EVERY:
        if every == value:
            return every
    raise InvalidRequest(f"--every {value!r}: use quarter or month")


def announce_at_ms(scheduled_ms: int, notice_ms: int) -> int:
    """When the customer is told: ``notice`` before the date."""
    return scheduled_ms - notice_ms


def report_due_ms(run_finished_ms: int, zone: WorkingCalendar) -> int:
    """The report's due time: 3 working days after the run (holidays and make-up days
    from the calendar)."""
    return zone.add_working_days(run_finished_ms, REPORT_DUE_WORKING_DAYS)


def parse_local_time(text: str, zone: WorkingCalendar, where: str = "--first") -> int:
    """``2027-01-15T09:00`` (the calendar's zone) or with an offset, as unix ms."""
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidRequest(
            f"{where}: {text!r} is not a date and time like 2027-01-15T09:00"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone.zone)
    return int(parsed.timestamp() * 1000)


def parse_notice(text: str) -> int:
    """A notice period like ``7d`` or ``36h`` as ms (0 to 90 days)."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidRequest(f"--notice: {exc}") from exc
    notice_ms = round(seconds * 1000)
    if not 0 <= notice_ms <= MAX_NOTICE_MS:
        raise InvalidRequest(f"--notice: {text!r} must be between 0 and 90d")
    return notice_ms
