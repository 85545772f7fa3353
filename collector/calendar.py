"""Working days: the calendar that "within 3 working days" and similar promises use.

Pure and clock-free. A ``WorkingCalendar`` knows the weekend days, a set of holidays
and extra working days (China's make-up workdays, 调休), and a time zone (the
contracts count days where the customer is). Times are unix milliseconds.

Contract: ``add_working_days(start_ms, n)`` returns the instant ``n`` whole working
days after ``start_ms``: the same wall-clock time on the n-th working day after the
day of ``start_ms`` (a start on a non-working day counts from the next working day's
beginning). ``n`` must be >= 0; ``n == 0`` returns ``start_ms`` unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CalendarError", "WorkingCalendar", "calendar_from_mapping", "parse_day"]

MAX_WORKING_DAYS = 3660  # ten years: far beyond any promise, keeps loops bounded


class CalendarError(ValueError):
    """A calendar setting is invalid; the message names it."""


def parse_day(text: str, where: str = "holiday") -> dt.date:
    """``YYYY-MM-DD`` as a date; ``CalendarError`` naming ``where`` otherwise."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise CalendarError(f"{where}: {text!r} is not a date like 2027-10-01") from exc


@dataclass(frozen=True)
class WorkingCalendar:
    """Weekends, holidays and make-up working days in one time zone."""

    timezone: str = "Asia/Shanghai"
    weekend: frozenset[int] = frozenset({5, 6})  # Monday is 0
    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    extra_working_days: frozenset[dt.date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"timezone: unknown time zone {self.timezone!r}") from exc
        if not self.weekend <= set(range(7)):
            raise CalendarError("weekend: days are 0 (Monday) to 6 (Sunday)")

    @classmethod
    def build(
        cls,
        timezone: str = "Asia/Shanghai",
        weekend: Iterable[int] = (5, 6),
        holidays: Iterable[str] = (),
        extra_working_days: Iterable[str] = (),
    ) -> WorkingCalendar:
        """From config values: holidays and make-up days as ``YYYY-MM-DD`` strings."""
        return cls(
            timezone=timezone,
            weekend=frozenset(weekend),
            holidays=frozenset(parse_day(d) for d in holidays),
            extra_working_days=frozenset(
                parse_day(d, "extra working day") for d in extra_working_days
            ),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: dt.date) -> bool:
        """A make-up day works; otherwise weekends and holidays do not."""
        if day in self.extra_working_days:
            return True
        return day.weekday() not in self.weekend and day not in self.holidays

    def local(self, at_ms: int) -> dt.datetime:
        """``at_ms`` as an aware datetime in the calendar's zone."""
        return dt.datetime.fromtimestamp(at_ms / 1000, self.zone)

    def add_working_days(self, start_ms: int, days: int) -> int:
        """The instant ``days`` working days after ``start_ms`` (see the module contract)."""
        if days < 0:
            raise CalendarError(f"working days cannot be negative, got {days}")
        if days == 0:
            return start_ms
        start = self.local(start_ms)
        if not self.is_working_day(start.date()):
            start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        day = start.date()
        for _ in range(MAX_WORKING_DAYS):
            day += dt.timedelta(days=1)
            if self.is_working_day(day):
                days -= 1
                if days == 0:
                    end = dt.datetime.combine(day, start.timetz().replace(tzinfo=None))
                    return int(end.replace(tzinfo=self.zone).timestamp() * 1000)
        raise CalendarError("no working day within ten years: check weekend and holidays")

    def working_days_between(self, start_ms: int, end_ms: int) -> int:
        """Whole working days from the day after ``start_ms`` up to the day of ``end_ms``."""
        first, last = self.local(start_ms).date(), self.local(end_ms).date()
        count, day = 0, first
        while day < last:
            day += dt.timedelta(days=1)
            count += self.is_working_day(day)
        return count


CALENDAR_KEYS = frozenset({"timezone", "weekend", "holidays", "extra_working_days"})


def calendar_from_mapping(value: object) -> WorkingCalendar:
    """A calendar from a config section ``{timezone, weekend, holidays,
    extra_working_days}`` (the inspections config's format; every key optional);
    ``CalendarError`` naming the key otherwise."""
    if value is None:
        return WorkingCalendar()
    if not isinstance(value, dict):
        raise CalendarError(f"must be a mapping, not {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in CALENDAR_KEYS)
    if unknown:
        raise CalendarError(
            f"{unknown[0]}: unknown key; expected one of: {', '.join(sorted(CALENDAR_KEYS))}"
        )
    lists = {}
    for key in ("weekend", "holidays", "extra_working_days"):
        items = value.get(key, [5, 6] if key == "weekend" else [])
        if not isinstance(items, list):
            raise CalendarError(f"{key}: must be a list")
        lists[key] = items
    try:
        weekend = [int(day) for day in lists["weekend"]]
    except (TypeError, ValueError):
        raise CalendarError("weekend: days are 0 (Monday) to 6 (Sunday)") from None
    return WorkingCalendar.build(
        timezone=str(value.get("timezone", "Asia/Shanghai")),
        weekend=weekend,
        holidays=[str(day) for day in lists["holidays"]],
        extra_working_days=[str(day) for day in lists["extra_working_days"]],
    )
