"""Due times, faster: the calendar read once per call into two small arrays, and Beijing time as a fixed offset.

0002's ``citygrid_due_times`` cost 5.3-8.1 µs a row: 264-403 ms of backend CPU for 50,000 starts of the
benchmark file with their items' limits, the arrays from a subquery as an import passes them (the range is
the machine's load over the day; ten runs each), most of the 436-452 ms an import chunk's ``due`` step took.
Why:

- Five ``AT TIME ZONE 'Asia/Shanghai'`` conversions a row (the planner copied the local time into both join
  conditions and the output): each looks the zone up by name, and local time back to an instant searches the
  zone's transitions; ≈0.4 µs each. China has kept +08:00 without summer time since September 1991 and the
  calendar begins in 2004, so ``AT TIME ZONE INTERVAL '+08:00'`` (≈0.02 µs) gives the same local day and
  time wherever the calendar has an answer; a start on a day outside the calendar has no due time either way.
- Two joins to ``working_calendar``, planned without knowing how many rows the arrays hold (a SQL function's
  plan is generic): nested loops of index scans, ≈1.6 µs a row each.
- ``unnest(...) WITH ORDINALITY`` in FROM writes every row to a tuplestore first (≈0.4 µs a row);
  set-returning functions in the select list stream them.

Now one pass over the starts finds the days they fall on and the amounts' range; the calendar rows those can
reach (a few dozen for an import chunk, which spans a few weeks) are read into two arrays: per day its running
count of working days and the count before it, per working day its 09:00 as an instant. Each start is then
array subscripts and float arithmetic. The same 50,000 starts: 53-90 ms (1.1-1.8 µs a row; 4.3-4.5x fewer in
runs side by side), of which 13-20 ms is returning the rows from a function at all. An import chunk's whole
statement (50,000 rows, backend CPU, nine runs each): 1,304-1,375 ms before, 1,143-1,187 ms after; its
``due`` step, the three ordered ``array_agg`` of the starts, limits and units included: 436-452 → 138-148 ms
(59-65 ms of that is the three aggregates). A single report's due time (the function inlined into the intake
statement) plans and runs in the same ≈0.8 ms as before.

The float arithmetic of the working seconds is 0002's, expression for expression, so the answers are the same
to the microsecond (tests/db/test_due_times_0015.py: old and new over 49,532 starts, edges and inputs out
of range, called the three ways callers call it; tests/db/test_due_times.py: both against
spatial.workflow.add_working_time).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28
"""

from alembic import op

from spatial.migrate import earlier_function

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Same signature and answers as 0002's: the moment `amount` working hours or days after each start, on
-- Beijing time, as spatial.workflow.add_working_time computes it; NULL where the calendar has no answer.
CREATE OR REPLACE FUNCTION citygrid_due_times(starts timestamptz[], amounts integer[], units text[])
RETURNS TABLE (row_no bigint, due_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH span AS MATERIALIZED (
        -- the Beijing days of the earliest and latest start, and how far the amounts reach back and ahead
        SELECT (min(s) AT TIME ZONE INTERVAL '+08:00')::date AS first_day,
               (max(s) AT TIME ZONE INTERVAL '+08:00')::date AS last_day,
               least(min(a), 0) AS back, greatest(max(a), 0) AS ahead
        FROM (SELECT unnest(starts) AS s, unnest(amounts) AS a) given
    ), by_day AS MATERIALIZED (
        -- from first_day on, each day's running count of working days, and the count before it
        SELECT min(day) AS first_day, array_agg(ordinal ORDER BY day) AS ordinals,
               array_agg(ordinal - working::int ORDER BY day) AS before
        FROM working_calendar
        WHERE day BETWEEN (SELECT first_day FROM span) AND (SELECT last_day FROM span)
    ), by_ordinal AS MATERIALIZED (
        -- each working day a due time can fall on, by its ordinal (working days count 1, 2, 3 ... without
        -- gaps): the instant its 09:00 is
        SELECT min(ordinal) - 1 AS skipped,
               array_agg((day + time '09:00') AT TIME ZONE INTERVAL '+08:00' ORDER BY ordinal) AS opens
        FROM working_calendar
        WHERE working AND ordinal BETWEEN (SELECT ordinals[1] - 1 + back FROM by_day, span)
                                      AND (SELECT ordinals[cardinality(ordinals)] + 1 + ahead FROM by_day, span)
    )
    -- the due moment falls on working day n, r seconds into its 8 working hours (0 < r <= 28800); OFFSET 0
    -- keeps each step's columns computed once a row instead of copied into every expression that uses them
    SELECT row_no,
           CASE WHEN is_days THEN (SELECT opens FROM by_ordinal)[o + amount - (SELECT skipped FROM by_ordinal)]
                                  + (t::time - time '09:00')
                ELSE (SELECT opens FROM by_ordinal)[n - (SELECT skipped FROM by_ordinal)]
                     + CASE WHEN r <= 10800 THEN make_interval(secs => r)
                            ELSE make_interval(hours => 4, secs => r - 10800) END
           END
    FROM (SELECT row_no, t, amount, is_days, o, ceil(w / 28800)::int AS n, w - (ceil(w / 28800) - 1) * 28800.0 AS r
          FROM (-- working seconds from the calendar's start to the due moment: whole working days before
                -- today, what has elapsed of today's two periods (float seconds, as Python counts them), the limit
                SELECT row_no, t, amount, is_days, o,
                       b * 28800 + CASE WHEN o > b THEN least(greatest(secs - 32400, 0), 10800)
                                                        + least(greatest(secs - 46800, 0), 18000) ELSE 0 END
                       + amount * 3600 AS w
                FROM (SELECT row_no, t, amount, is_days, (SELECT ordinals FROM by_day)[i] AS o,
                             (SELECT before FROM by_day)[i] AS b, date_part('epoch', t::time) AS secs
                      FROM (-- ±infinity has no day; a day outside the calendar is a subscript outside the arrays: NULL.
                            -- Any unit but working_days (NULL too) counts working hours, as in 0002.
                            SELECT row_no, t, amount, unit = 'working_days' AS is_days,
                                   CASE WHEN isfinite(t) THEN t::date - (SELECT first_day FROM by_day) + 1 END AS i
                            FROM (-- unnest(...) WITH ORDINALITY's rows: as many as the longest array
                                  SELECT generate_series(1, greatest(cardinality(starts), cardinality(amounts),
                                                                     cardinality(units))) AS row_no,
                                         unnest(starts) AT TIME ZONE INTERVAL '+08:00' AS t,
                                         unnest(amounts) AS amount, unnest(units) AS unit) given
                            OFFSET 0) located
                      OFFSET 0) counted
                OFFSET 0) worked
          OFFSET 0) target
$$;
"""

# Revision 0002's function, restored on the way down.
DOWNGRADE = earlier_function("0002_cases", "citygrid_due_times")


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
