"""Cases: API keys, intake bookkeeping (idempotency, photos, duplicates, Open311 tokens), the closed loop's
rework counter and event actions, the official working calendar and due times computed in the database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- API keys: only a SHA-256 of each key is stored (keys are 256-bit random tokens, so a fast hash is enough:
-- there is nothing to brute-force). Roles and the subdistrict scope decide what a key may do; issue 7 extends
-- this table (more scopes, rotation) rather than replacing it.
CREATE TABLE api_keys (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    role              text NOT NULL CHECK (role IN ('public', 'grid_member', 'squad', 'dispatcher', 'planner',
                          'admin')),
    subdistrict_code  text CHECK (subdistrict_code ~ '^[0-9]{9}$'),
    person_id         text REFERENCES people,
    prefix            text NOT NULL,
    key_hash          text NOT NULL UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

-- What intake keeps besides the case itself. No foreign keys on the bookkeeping columns: every bulk row would
-- pay a trigger for them, and they are written only by our own statements.
ALTER TABLE incidents
    ADD COLUMN photos           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN address          text NOT NULL DEFAULT '',
    ADD COLUMN reporter         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN reworks          integer NOT NULL DEFAULT 0 CHECK (reworks >= 0),
    ADD COLUMN updated_at       timestamptz,
    ADD COLUMN duplicate_of     bigint,
    ADD COLUMN api_key_id       bigint,
    ADD COLUMN idempotency_key  text,
    ADD COLUMN request_hash     text,
    ADD COLUMN token            text,
    ADD CONSTRAINT incidents_idempotency_check CHECK (idempotency_key IS NULL OR api_key_id IS NOT NULL);

-- A retried POST finds its first result here (keys are per API key: two clients may pick the same key).
CREATE UNIQUE INDEX incidents_idempotency_idx ON incidents (api_key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX incidents_token_idx ON incidents (token) WHERE token IS NOT NULL;
CREATE INDEX incidents_duplicate_of_idx ON incidents (duplicate_of) WHERE duplicate_of IS NOT NULL;
-- Open cases only (closed ones are the bulk of the table and never asked about here):
-- possible duplicates (same item, 3 m, 24 h) and overdue cases.
-- (One column: with item and time in the key too, a btree_gist probe cost ≈120 µs instead of ≈10; few open
-- cases lie within 3 m of a point, so item and time are checked on those.)
CREATE INDEX incidents_open_near_idx ON incidents USING gist (ST_Transform(geom, 4544))
    WHERE status NOT IN ('closed', 'rejected');
CREATE INDEX incidents_open_due_idx ON incidents (due_at) WHERE status NOT IN ('closed', 'rejected');

ALTER TABLE incident_events
    ADD COLUMN action      text NOT NULL DEFAULT 'transition',
    ADD COLUMN api_key_id  bigint REFERENCES api_keys;

-- The official working calendar (chinese_calendar: State Council holidays and make-up working days, 调休),
-- with each day's running count of working days, so that due times are two index look-ups in SQL and a
-- million imported cases get theirs in the same statement that inserts them. Filled from the package by
-- spatial.workflow.sync_calendar; years the package does not know yet count Monday-Friday (official = false).
CREATE TABLE working_calendar (
    day       date PRIMARY KEY,
    working   boolean NOT NULL,
    official  boolean NOT NULL,
    ordinal   integer NOT NULL  -- working days from the calendar's first day up to and including this one
);
CREATE UNIQUE INDEX working_calendar_ordinal_idx ON working_calendar (ordinal) INCLUDE (day) WHERE working;

-- Due times: the moment `amount` working hours or days after each start, on Beijing time, exactly as
-- spatial.workflow.add_working_time computes it (tests compare the two). Working days keep the clock time on
-- the amount-th working day after the start's date; working hours count only 09:00-12:00 and 13:00-18:00 of
-- working days (8 h a day). Set-based (two hash joins to the calendar), so one call serves a million rows
-- of a bulk import as well as a single report; NULL beyond the calendar's last day.
CREATE FUNCTION citygrid_due_times(starts timestamptz[], amounts integer[], units text[])
RETURNS TABLE (row_no bigint, due_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH today AS (
        -- float seconds (date_part), as Python counts them: numeric arithmetic costs 3x more per row
        SELECT u.row_no, u.amount, u.unit, u.t, c.working, c.ordinal, date_part('epoch', u.t::time) AS secs
        FROM (SELECT s.row_no, s.amount, s.unit, s.start AT TIME ZONE 'Asia/Shanghai' AS t
              FROM unnest(starts, amounts, units) WITH ORDINALITY AS s (start, amount, unit, row_no)) u
        LEFT JOIN working_calendar c ON c.day = u.t::date
    ), hours AS (
        -- working seconds from the calendar's start to the due moment: whole working days before today,
        -- what has elapsed of today's two periods, and the time limit
        SELECT today.*,
               (ordinal - working::int) * 28800
               + CASE WHEN working THEN least(greatest(secs - 32400, 0), 10800)
                                        + least(greatest(secs - 46800, 0), 18000)
                      ELSE 0 END
               + amount * 3600 AS w
        FROM today
    ), target AS (
        -- the due moment falls on working day n, r seconds into its 8 working hours (0 < r <= 28800)
        SELECT row_no, t, unit,
               CASE WHEN unit = 'working_days' THEN ordinal + amount ELSE ceil(w / 28800)::int END AS n,
               w - (ceil(w / 28800) - 1) * 28800.0 AS r
        FROM hours
    )
    SELECT target.row_no,
           (c.day + CASE WHEN target.unit = 'working_days' THEN target.t::time
                         WHEN target.r <= 10800 THEN time '09:00' + make_interval(secs => target.r)
                         ELSE time '13:00' + make_interval(secs => target.r - 10800) END
           ) AT TIME ZONE 'Asia/Shanghai'
    FROM target
    LEFT JOIN working_calendar c ON c.working AND c.ordinal = target.n
$$;

-- A time written in an import file (trimmed) as timestamptz: ISO 8601 date, optional time, optional zone; a
-- time without a zone is Beijing time. NULL for anything else, an impossible date (2017-02-30) included,
-- instead of an error, so that one bad row is reported rather than failing the whole statement. Capture-free
-- regular expressions and fixed positions (regexp_match with groups costs ≈30 µs a call, this ≈2 µs), and a
-- single expression, so the planner inlines it: a million rows pay no function calls.
CREATE FUNCTION citygrid_import_time(t text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN t IS NULL
             OR t !~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}'
                      '([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)? ?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$')
            THEN NULL
        -- fixed-width digits compare as text: cheaper than casting each field
        WHEN substr(t, 1, 4) = '0000' OR substr(t, 6, 2) NOT BETWEEN '01' AND '12'
             OR substr(t, 9, 2) NOT BETWEEN '01' AND '31'
             OR (length(t) > 10 AND (substr(t, 12, 2) > '23' OR substr(t, 15, 2) > '59'
                                     OR (substr(t, 17, 1) = ':' AND substr(t, 18, 2) > '59')))
            THEN NULL
        WHEN substr(t, 9, 2) > '28'  -- only then can the day not exist (make_date is the costly part)
             AND substr(t, 9, 2)::int > extract(day FROM make_date(substr(t, 1, 4)::int, substr(t, 6, 2)::int, 1)
                                                         + interval '1 month - 1 day')
            THEN NULL
        WHEN length(t) > 10 AND t ~ '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN t::timestamptz
        ELSE t::timestamp AT TIME ZONE 'Asia/Shanghai'
    END
$$;

CREATE FUNCTION citygrid_due_at(start timestamptz, amount integer, unit text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT due_at FROM citygrid_due_times(ARRAY[start], ARRAY[amount], ARRAY[unit])
$$;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS citygrid_due_at(timestamptz, integer, text);
DROP FUNCTION IF EXISTS citygrid_import_time(text);
DROP FUNCTION IF EXISTS citygrid_due_times(timestamptz[], integer[], text[]);
DROP TABLE IF EXISTS working_calendar;
ALTER TABLE incident_events DROP COLUMN IF EXISTS action, DROP COLUMN IF EXISTS api_key_id;
DROP INDEX IF EXISTS incidents_open_due_idx, incidents_open_near_idx, incidents_duplicate_of_idx,
    incidents_token_idx, incidents_idempotency_idx;
ALTER TABLE incidents DROP CONSTRAINT IF EXISTS incidents_idempotency_check,
    DROP COLUMN IF EXISTS photos, DROP COLUMN IF EXISTS address, DROP COLUMN IF EXISTS reporter,
    DROP COLUMN IF EXISTS reworks, DROP COLUMN IF EXISTS updated_at, DROP COLUMN IF EXISTS duplicate_of,
    DROP COLUMN IF EXISTS api_key_id, DROP COLUMN IF EXISTS idempotency_key, DROP COLUMN IF EXISTS request_hash,
    DROP COLUMN IF EXISTS token;
DROP TABLE IF EXISTS api_keys;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    from spatial.workflow import sync_calendar

    sync_calendar(op.get_bind())


def downgrade() -> None:
    op.execute(DOWNGRADE)
