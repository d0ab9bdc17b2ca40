"""Time limits count working hours and days on the official calendar, make-up days (调休) included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from spatial.workflow import add_working_time

CST = timezone(timedelta(hours=8))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def test_working_days_skip_the_national_day_holiday() -> None:
    # 2017-09-30 (Saturday) was a make-up working day; 1-8 October were holidays.
    assert add_working_time(at("2017-09-29T10:00"), 1, "working_days") == at("2017-09-30T10:00")
    assert add_working_time(at("2017-09-30T10:00"), 1, "working_days") == at("2017-10-09T10:00")


def test_working_hours_stop_at_lunch_and_night() -> None:
    assert add_working_time(at("2017-03-01T11:00"), 2, "working_hours") == at("2017-03-01T14:00")
    assert add_working_time(at("2017-03-01T17:00"), 2, "working_hours") == at("2017-03-02T10:00")
    # reported on a Saturday evening: the clock starts on Monday morning
    assert add_working_time(at("2017-03-04T20:00"), 4, "working_hours") == at("2017-03-06T14:00")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_time(datetime(2017, 3, 1, 9), 1, "working_days")
