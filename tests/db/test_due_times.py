"""Due times in SQL (citygrid_due_times, for a million imported rows at once) equal Python's add_working_time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.catalogue import ITEMS
from spatial.workflow import add_working_time, calendar_days, is_working_day, official_years

CST = timezone(timedelta(hours=8))


def test_the_database_calendar_is_the_packages(conn: Connection) -> None:
    first, last = official_years()
    rows = conn.execute(text("SELECT day, working, official, ordinal FROM working_calendar ORDER BY day")).all()
    assert [tuple(r) for r in rows] == calendar_days()
    assert rows[0].day.isoformat() == f"{first}-01-01" and rows[-1].day.isoformat() == f"{last + 2}-12-31"
    by_day = {r.day.isoformat(): r.working for r in rows}
    assert by_day["2017-09-30"] is True  # a Saturday made a working day (调休) for the National Day week
    assert by_day["2017-10-02"] is False
    assert by_day["2017-01-28"] is False  # Spring Festival
    assert is_working_day(datetime(last + 1, 3, 1).date()) == (datetime(last + 1, 3, 1).weekday() < 5)


def test_the_fixtures_due_times_are_what_sql_computes(conn: Connection) -> None:
    # The generator computed every fixture due time in Python; SQL must find the same 4,746.
    same, total = conn.execute(
        text(
            "WITH i AS (SELECT i.*, row_number() OVER (ORDER BY i.id) AS n, c.time_limit, c.time_unit"
            "           FROM incidents i JOIN catalogue_items c ON c.code = i.item_code)"
            " SELECT count(*) FILTER (WHERE d.due_at = i.due_at), count(*) FROM i JOIN citygrid_due_times("
            " (SELECT array_agg(reported_at ORDER BY n) FROM i), (SELECT array_agg(time_limit ORDER BY n) FROM i),"
            " (SELECT array_agg(time_unit ORDER BY n) FROM i)) d ON d.row_no = i.n"
        )
    ).one()
    assert (same, total) == (4746, 4746)


def test_random_moments_round_holidays_and_make_up_days(conn: Connection) -> None:
    rng = np.random.default_rng(4)
    start = datetime(2016, 12, 20, tzinfo=CST)
    moments = [start + timedelta(seconds=int(s)) for s in rng.integers(0, 400 * 86400, 600)]
    moments += [datetime(2017, 9, 30, h, 0, tzinfo=CST) for h in (8, 9, 11, 12, 13, 17, 18, 19)]
    items = [ITEMS[int(i)] for i in rng.integers(0, len(ITEMS), len(moments))]
    rows = conn.execute(
        text("SELECT row_no, due_at FROM citygrid_due_times(:starts, :amounts, :units) ORDER BY row_no"),
        {"starts": moments, "amounts": [i.time_limit for i in items], "units": [i.time_unit for i in items]},
    ).all()
    expected = [add_working_time(m, i.time_limit, i.time_unit) for m, i in zip(moments, items, strict=True)]
    assert [r.due_at for r in rows] == expected
    single = conn.execute(
        text("SELECT citygrid_due_at(CAST('2017-09-29T10:00:00+08:00' AS timestamptz), 1, 'working_days')")
    ).scalar_one()
    assert single == datetime(2017, 9, 30, 10, tzinfo=CST)


def test_beyond_the_calendar_there_is_no_due_time(conn: Connection) -> None:
    due = conn.execute(
        text("SELECT citygrid_due_at(CAST('2099-03-02T10:00:00+08:00' AS timestamptz), 1, 'working_days')")
    ).scalar_one()
    assert due is None
