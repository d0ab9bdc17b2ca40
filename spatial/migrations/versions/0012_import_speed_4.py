"""Import speed 4: a chunk's columns of times and numbers checked whole, and two indexes the import paid for.

Checking each imported time by its shape (``citygrid_import_time``, 0009) cost ≈3.7 µs a text, ≈7 of the
≈10 s a million rows spent being typed; each coordinate's regular expression ≈0.6 µs more. A file's column is
nearly always written one way throughout. So an import first asks of a whole column of a chunk, in one regular
expression over its texts joined by newlines (≈0.2 µs a text), whether every text has a time's shape with its
fields in range (``citygrid_import_column_times``) or a number's (``citygrid_import_column_numbers``); if so,
each text is only cast (``citygrid_import_time_shaped``: the day of the month checked, then the cast), else
the column goes through the per-text checks as before. The answers are the same for every text
(tests/db/test_import_time.py).

Every index on incidents is kept up to date by each imported row (≈13 of the ≈18 s a million inserted rows
cost in one transaction). Two paid for little:

- ``incidents_subdistrict_idx`` (subdistrict_code, reported_at), 1.6 s a million rows: a city has three
  subdistricts, and ``incidents_reported_idx`` serves the same periods and pages (a page of a subdistrict's
  cases by report time reads ≈3 rows of that index per row shown). Counting one subdistrict's cases reads the
  table instead (≈130 ms instead of ≈45 ms for 380,000 of a million), as counting all of them already does.
- ``incidents_status_idx`` (status), 1.0 s a million rows, now only over the cases that are not closed (0.2 s):
  most of a city's history is closed, and a list of closed cases reads most of the table whatever the index.

Revision ID: 0012
Revises: 0010
Create Date: 2026-11-28
"""

from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

# 0002's expression with each field's range written in (the ranges 0009's function checks after the shape): a
# text it matches has a time's shape, its year is not 0000, and its month, day, hour, minute and second exist
TIME = (
    r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)? ?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
# spatial.intake's number expression without the white space around it (trimmed texts rarely have any)
NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"


def _column_check(name: str, pattern: str, what: str) -> str:
    pattern = pattern.replace(":", "\\:")  # op.execute reads ':name' as a bound parameter, '\:' as a colon
    return f"""
CREATE FUNCTION {name}(texts text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- one line per text (NULLs left out); a text with a newline of its own makes one line too many
    SELECT j ~ '^(?:{pattern}\\n)*$'
           AND length(j) - length(replace(j, E'\\n', '')) = cardinality(array_remove(texts, NULL))
    FROM (SELECT array_to_string(texts, E'\\n') || E'\\n' AS j) joined
$$;
COMMENT ON FUNCTION {name}(text[]) IS '{what}';
"""


UPGRADE = (
    _column_check(
        "citygrid_import_column_times",
        TIME,
        "whether every text (NULLs aside) has a time''s shape with its fields in range: then "
        "citygrid_import_time_shaped reads each as citygrid_import_time does",
    )
    + _column_check(
        "citygrid_import_column_numbers",
        NUMBER,
        "whether every text (NULLs aside) is a plain decimal number: then a cast to float8 reads each",
    )
    + """
-- citygrid_import_time for a text that citygrid_import_column_times found to have a time's shape with its fields
-- in range: only whether the day exists in its month, and whether it names a zone, remain to be read
CREATE FUNCTION citygrid_import_time_shaped(t text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN substr(t, 9, 2) > '28'
             AND substr(t, 9, 2)::int > extract(day FROM make_date(substr(t, 1, 4)::int, substr(t, 6, 2)::int, 1)
                                                         + interval '1 month - 1 day')
            THEN NULL
        -- after the date, only a zone has Z, + or -
        WHEN length(t) > 10 AND (right(t, 1) = 'Z' OR strpos(substr(t, 11), '+') > 0 OR strpos(substr(t, 11), '-') > 0)
            THEN t::timestamptz
        ELSE t::timestamp AT TIME ZONE 'Asia/Shanghai'
    END
$$;

DROP INDEX incidents_subdistrict_idx;
DROP INDEX incidents_status_idx;
CREATE INDEX incidents_status_idx ON incidents (status) WHERE status <> 'closed';
"""
)

DOWNGRADE = """
DROP INDEX incidents_status_idx;
CREATE INDEX incidents_status_idx ON incidents (status);
CREATE INDEX incidents_subdistrict_idx ON incidents (subdistrict_code, reported_at);
DROP FUNCTION IF EXISTS citygrid_import_time_shaped(text);
DROP FUNCTION IF EXISTS citygrid_import_column_numbers(text[]);
DROP FUNCTION IF EXISTS citygrid_import_column_times(text[]);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
