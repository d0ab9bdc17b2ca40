"""Import speed 3: an imported time read by its shape instead of by regular expressions.

``citygrid_import_time`` (0002) checks each time of an import file with two regular expressions before casting
it, ≈3.6 µs a call, two or three calls per row: 7 of the 12 s a million rows spent being checked. Here the
text's shape (every digit written 9) is looked up among the 257 shapes the same expression admits, a hash
probe (PostgreSQL hashes a long IN list of constants), and the zone is read from the shape too. The answers
are the same for every text (tests/db/test_import_time.py compares the two on every shape and its near misses).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from itertools import product

from alembic import op

from spatial.migrate import earlier_function

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DATE = "9999-99-99"
ZONES = ("Z", "+99", "-99", "+9999", "-9999", "+99:99", "-99:99")


def shapes() -> tuple[list[str], list[str]]:
    """Return the shapes of ``^YYYY-MM-DD([T ]hh:mm(:ss(.f{1,6})?)? ?(Z|±hh(:?mm)?)?)?$``: (without, with zone)."""
    seconds = ["", ":99", *(":99." + "9" * n for n in range(1, 7))]
    plain, zoned = [DATE], []
    for sep, sec, space, zone in product("T ", seconds, ("", " "), ("", *ZONES)):
        (zoned if zone else plain).append(f"{DATE}{sep}99:99{sec}{space}{zone}")
    return plain, zoned


def _listed(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)  # digits, 9s and punctuation: nothing to escape


PLAIN, ZONED = shapes()
SHAPE = "translate(t, '0123456789', '9999999999')"

UPGRADE = f"""
CREATE OR REPLACE FUNCTION citygrid_import_time(t text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN t IS NULL OR {SHAPE} NOT IN ({_listed(PLAIN + ZONED)}) THEN NULL
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
        WHEN {SHAPE} IN ({_listed(ZONED)}) THEN t::timestamptz
        ELSE t::timestamp AT TIME ZONE 'Asia/Shanghai'
    END
$$;
"""

# 0002's definition, as it was
DOWNGRADE = earlier_function("0002_cases", "citygrid_import_time")


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
