"""Case time limits on China's official working calendar.

Time limits are counted in working hours or working days (the catalogue says which). Working days come
from the ``chinese_calendar`` package, which knows the State Council's holidays and the make-up working
days (调休) of each year; the working hours of a working day are 09:00-12:00 and 13:00-18:00 local time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import chinese_calendar

from spatial.catalogue import TimeUnit

WORKING_PERIODS = ((time(9, 0), time(12, 0)), (time(13, 0), time(18, 0)))


def is_working_day(day: date) -> bool:
    """Return True for a working day on the official calendar (调休 Saturdays included)."""
    return bool(chinese_calendar.is_workday(day))


def add_working_time(start: datetime, amount: int, unit: TimeUnit) -> datetime:
    """Return the moment ``amount`` working hours or days after ``start`` (a timezone-aware local time).

    Working days: the same clock time on the ``amount``-th working day after ``start``'s date.
    Working hours: only time inside the working periods of working days counts.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (local time, e.g. +08:00)")
    if amount < 0:
        raise ValueError("amount must not be negative")
    if unit == "working_days":
        day = start.date()
        remaining = amount
        while remaining:
            day += timedelta(days=1)
            if is_working_day(day):
                remaining -= 1
        return datetime.combine(day, start.timetz())
    remaining_s = amount * 3600.0
    cursor = start
    while True:
        if is_working_day(cursor.date()):
            for opens, closes in WORKING_PERIODS:
                period_start = datetime.combine(cursor.date(), opens, cursor.tzinfo)
                period_end = datetime.combine(cursor.date(), closes, cursor.tzinfo)
                begin = max(cursor, period_start)
                if begin >= period_end:
                    continue
                available = (period_end - begin).total_seconds()
                if remaining_s <= available:
                    return begin + timedelta(seconds=remaining_s)
                remaining_s -= available
        cursor = datetime.combine(cursor.date() + timedelta(days=1), time(0, 0), cursor.tzinfo)
