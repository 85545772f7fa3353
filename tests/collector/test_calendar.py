"""Working days: weekends, holidays, make-up days, time zones, invalid settings."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.calendar import CalendarError, WorkingCalendar

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=SHANGHAI).timestamp() * 1000)  # type: ignore[misc]


def test_three_working_days_skip_the_weekend() -> None:
    calendar = WorkingCalendar()
    friday = ms(2027, 1, 15, 9, 0)
    assert calendar.add_working_days(friday, 3) == ms(2027, 1, 20, 9, 0)  # Wednesday


def test_holidays_do_not_count_and_make_up_days_do() -> None:
    calendar = WorkingCalendar.build(
        holidays=["2027-10-01", "2027-10-04", "2027-10-05"], extra_working_days=["2027-10-09"]
    )
    thursday = ms(2027, 9, 30, 17, 30)
    # Fri 1 holiday, Sat/Sun weekend, Mon 4 and Tue 5 holidays, Wed 6 1st, Thu 7 2nd, Fri 8 3rd
    assert calendar.add_working_days(thursday, 3) == ms(2027, 10, 8, 17, 30)
    # Sat 9 is a make-up working day
    assert calendar.add_working_days(ms(2027, 10, 8, 10, 0), 1) == ms(2027, 10, 9, 10, 0)


def test_start_on_a_weekend_counts_from_the_next_working_day() -> None:
    calendar = WorkingCalendar()
    saturday = ms(2027, 1, 16, 15, 0)
    assert calendar.add_working_days(saturday, 1) == ms(2027, 1, 18, 0, 0)


def test_zero_days_is_the_start_and_negative_is_refused() -> None:
    calendar = WorkingCalendar()
    assert calendar.add_working_days(123_000, 0) == 123_000
    with pytest.raises(CalendarError, match="negative"):
        calendar.add_working_days(123_000, -1)


def test_working_days_between() -> None:
    calendar = WorkingCalendar()
    assert calendar.working_days_between(ms(2027, 1, 15, 9), ms(2027, 1, 20, 8)) == 3


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(CalendarError, match="holiday: '2027-13-01'"):
        WorkingCalendar.build(holidays=["2027-13-01"])
    with pytest.raises(CalendarError, match="timezone"):
        WorkingCalendar(timezone="Mars/Olympus")
    with pytest.raises(CalendarError, match="no working day"):
        WorkingCalendar(weekend=frozenset(range(7))).add_working_days(0, 1)
