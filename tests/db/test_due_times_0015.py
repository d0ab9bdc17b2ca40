"""citygrid_due_times (0015: the calendar read into arrays, Beijing time as +08:00) answers as 0002's did, every time.

The two definitions side by side in one transaction, 0002's read from its revision into pg_temp: over 40,000
random starts from 2004 to 2028 (to the microsecond, and on the whole second and hour) and every clock-time
edge of the working day on each make-up working day (调休), each weekday holiday and a weekend, with the
catalogue's limits and others (0, negative, large, NULL) in both units (and a NULL or unknown unit, which 0002
counts as hours), plus starts outside the calendar: before 2004 (China's 1986-1991 summer time included),
after 2028, ±infinity and NULL. Called the three ways its callers call it: the arrays from a subquery (incident
imports), as constants (the planner sees them) and one start at a time (a report's intake).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.catalogue import ITEMS
from spatial.migrate import earlier_function
from spatial.workflow import add_working_time, calendar_days

CST = timezone(timedelta(hours=8))
RANDOM = 40_000
# the working day's edges: before 09:00, its opening, the lunch break's edges, its closing, the day's last µs
EDGES = [
    "00:00:00", "08:59:59.999999", "09:00:00", "09:00:00.000001", "10:30:00", "11:59:59.999999", "12:00:00",
    "12:00:00.000001", "12:30:00", "12:59:59.999999", "13:00:00", "13:00:00.000001", "17:59:59.999999",
    "18:00:00", "18:00:00.000001", "21:00:00", "23:59:59.999999",
]  # fmt: skip
OUTSIDE = [
    "2003-12-31T23:59:59.999999+08:00", "2003-06-01T10:00:00+08:00", "1990-07-15T10:00:00+08:00",
    "1988-04-17T01:30:00+08:00", "1901-01-01T10:00:00+08:00", "2029-01-01T00:00:00+08:00",
    "2028-12-31T23:59:59.999999+08:00", "2028-12-29T17:00:00+08:00", "2099-03-02T10:00:00+08:00",
    "infinity", "-infinity",
]  # fmt: skip
LIMITS = sorted({(item.time_limit, item.time_unit) for item in ITEMS})
UNITS = ["working_days", "working_hours"]


def _probe() -> tuple[list[str | None], list[int | None], list[str | None]]:
    """Return the starts (ISO texts), amounts and units compared, in a fixed random order."""
    rng = np.random.default_rng(15)
    first = datetime(2004, 1, 1, tzinfo=CST)
    span_us = int((datetime(2029, 1, 1, tzinfo=CST) - first).total_seconds()) * 1_000_000
    moments = [first + timedelta(microseconds=int(us)) for us in rng.integers(0, span_us, RANDOM)]
    for k in range(0, RANDOM, 4):  # a quarter on the whole second, a quarter on the whole hour
        moments[k] = moments[k].replace(microsecond=0)
        moments[k + 1] = moments[k + 1].replace(minute=0, second=0, microsecond=0)
    starts: list[str | None] = [m.isoformat() for m in moments]
    special = [day for day, working, _, _ in calendar_days() if working != (day.weekday() < 5)]
    special += [date(2017, 9, 23), date(2017, 9, 24), date(2028, 12, 30)]  # weekends without make-up work
    starts += [f"{day.isoformat()}T{edge}+08:00" for day in special for edge in EDGES]
    starts += OUTSIDE + [None]
    count = len(starts)
    limits = [LIMITS[int(k)] for k in rng.integers(0, len(LIMITS), count)]
    amounts: list[int | None] = [amount for amount, _ in limits]
    units: list[str | None] = [unit for _, unit in limits]
    for k in rng.choice(count, count // 10, replace=False):  # other amounts, in either unit
        amounts[int(k)] = [0, 1, 3, 8, 9, 16, 17, 40, 250, 1000, -1, -9, None][int(k) % 13]
        units[int(k)] = UNITS[int(k) % 2]
    for k in rng.choice(count, 50, replace=False):
        units[int(k)] = [None, "hours"][int(k) % 2]
    return starts, amounts, units


def _load(conn: Connection) -> int:
    starts, amounts, units = _probe()
    conn.execute(
        text(
            earlier_function("0002_cases", "citygrid_due_times").replace(
                "citygrid_due_times(", "pg_temp.due_times_0002(", 1
            )
        )
    )
    conn.execute(
        text(
            "CREATE TEMP TABLE probe ON COMMIT DROP AS SELECT n, CAST(s AS timestamptz) AS start, amount, unit"
            " FROM unnest(CAST(:starts AS text[]), CAST(:amounts AS integer[]), CAST(:units AS text[]))"
            " WITH ORDINALITY AS p (s, amount, unit, n)"
        ),
        {"starts": starts, "amounts": amounts, "units": units},
    )
    return len(starts)


# Rows of one definition that the other does not give, both ways.
DIFFERING = """
SELECT count(*) FROM (
    (SELECT * FROM citygrid_due_times({args}) EXCEPT ALL SELECT * FROM pg_temp.due_times_0002({args}))
    UNION ALL
    (SELECT * FROM pg_temp.due_times_0002({args}) EXCEPT ALL SELECT * FROM citygrid_due_times({args}))
) d
"""
FROM_PROBE = (
    "(SELECT array_agg(start ORDER BY n) FROM probe), (SELECT array_agg(amount ORDER BY n) FROM probe),"
    " (SELECT array_agg(unit ORDER BY n) FROM probe)"
)


def test_the_same_due_times_as_0002_for_arrays_from_a_subquery(conn: Connection) -> None:
    count = _load(conn)
    assert count == 49_532
    assert conn.execute(text(DIFFERING.format(args=FROM_PROBE))).scalar_one() == 0
    answered, rows = conn.execute(
        text(f"SELECT count(due_at), count(*) FROM citygrid_due_times({FROM_PROBE})")
    ).one()  # fmt: skip
    assert (answered, rows) == (49_075, 49_532)


def test_the_answers_are_add_working_times(conn: Connection) -> None:
    # every answer the calendar has for a positive amount is Python's (which knows no end of the calendar; for 0
    # working days or hours 0002 answers the end of the working time before the start, Python the start)
    _load(conn)
    rows = conn.execute(
        text(
            f"SELECT p.start, p.amount, p.unit, d.due_at FROM citygrid_due_times({FROM_PROBE}) d"
            " JOIN probe p ON p.n = d.row_no"
            " WHERE d.due_at IS NOT NULL AND p.amount BETWEEN 1 AND 40 AND p.unit IN ('working_days', 'working_hours')"
            " ORDER BY p.n"
        )
    ).all()
    assert len(rows) == 47_170
    expected = [add_working_time(r.start.astimezone(CST), r.amount, r.unit) for r in rows]
    assert [r.due_at for r in rows] == expected


def test_the_same_due_times_as_0002_for_constant_arrays(conn: Connection) -> None:
    _load(conn)
    starts, amounts, units = (
        conn.execute(text(f"SELECT {column} FROM probe ORDER BY n")).scalars().all()
        for column in ("CAST(start AS text)", "amount", "unit")
    )
    args = "CAST(:starts AS timestamptz[]), CAST(:amounts AS integer[]), CAST(:units AS text[])"
    params = {"starts": starts, "amounts": amounts, "units": units}
    assert conn.execute(text(DIFFERING.format(args=args)), params).scalar_one() == 0


def test_the_same_due_times_as_0002_one_start_at_a_time(conn: Connection) -> None:
    _load(conn)
    differing = conn.execute(
        text(
            "SELECT count(*) FROM probe p"
            " CROSS JOIN LATERAL citygrid_due_times(ARRAY[p.start], ARRAY[p.amount], ARRAY[p.unit]) new"
            " CROSS JOIN LATERAL pg_temp.due_times_0002(ARRAY[p.start], ARRAY[p.amount], ARRAY[p.unit]) old"
            " WHERE (p.n % 8 = 0 OR p.n > :random)"
            "   AND (new.row_no, new.due_at) IS DISTINCT FROM (old.row_no, old.due_at)"
        ),
        {"random": RANDOM},
    ).scalar_one()
    assert differing == 0


def test_the_same_rows_for_arrays_of_other_lengths_and_none(conn: Connection) -> None:
    _load(conn)
    for args in (
        "ARRAY[CAST('2017-09-29T10:00+08' AS timestamptz)], ARRAY[1, 2, 3], ARRAY['working_days', NULL]",
        "ARRAY[CAST('2017-09-29T10:00+08' AS timestamptz), '2017-09-30T17:30+08'], ARRAY[1], ARRAY['working_hours']",
        "NULL, ARRAY[1, 2], NULL",
        "NULL, NULL, NULL",
        "'{}', '{}', '{}'",
    ):
        assert conn.execute(text(DIFFERING.format(args=args))).scalar_one() == 0
    rows = conn.execute(
        text(
            "SELECT * FROM citygrid_due_times(ARRAY[CAST('2017-09-29T10:00+08' AS timestamptz)], ARRAY[1, 2, 3],"
            " ARRAY['working_days', NULL])"
        )
    ).all()
    assert [tuple(r) for r in rows] == [(1, datetime(2017, 9, 30, 10, tzinfo=CST)), (2, None), (3, None)]
