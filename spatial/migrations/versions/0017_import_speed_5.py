"""Import speed 5: a chunk's column of times or numbers checked whole from its texts joined as they are read.

0012 asked of a chunk's column whether every text has a time's or a number's shape, from an array of its texts
(``citygrid_import_column_times``/``_numbers``): building the array of 50,000 texts, joining it and counting
its non-NULL elements cost ≈25 ms a column, the regular expression itself ≈5 ms. Here the texts arrive already
joined by newlines (``string_agg``, with ``count`` for the number of texts): ≈8 ms a column.

A plain column of times was then read text by text by ``citygrid_import_time_shaped`` (≈1.2 µs a text: whether
the day exists in its month, whether the text names a zone, a text comparison in the database's collation),
where the cast alone costs ≈0.45 µs. So ``citygrid_import_joined_times`` also tells, of the whole column, what
that function would find of every text: when no text can name a day its month lacks (no 29 February, no 30 or
31 of a short month) and every text names a zone (``zoned``) or none does (``local``), each text is only cast,
to timestamptz or as Beijing time; otherwise the column is ``shaped`` (0012) or, not plain, read per text by
``citygrid_import_time`` as before. The answers are the same for every text (tests/db/test_import_time.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28
"""

from alembic import op

from spatial.migrate import revision_module

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# 0012's expressions, read from the revision that wrote them
TIME: str = revision_module("0012_import_speed_4").TIME
NUMBER: str = revision_module("0012_import_speed_4").NUMBER


def _escaped(pattern: str) -> str:
    return pattern.replace(":", "\\:")  # op.execute reads ':name' as a bound parameter, '\:' as a colon


# Every text of a chunk's column on a line of its own: a text with a newline of its own makes one line too many.
_LINES = "octet_length(joined) - octet_length(replace(joined, E'\\n', '')) = texts - 1"

UPGRADE = f"""
CREATE FUNCTION citygrid_import_joined_numbers(joined text, texts bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT joined || E'\\n' ~ '^(?:{_escaped(NUMBER)}\\n)*$' AND {_LINES}
$$;
COMMENT ON FUNCTION citygrid_import_joined_numbers(text, bigint) IS 'whether every one of the texts, joined by '
    'newlines, is a plain decimal number: then a cast to float8 reads each';

CREATE FUNCTION citygrid_import_joined_times(joined text, texts bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN joined IS NULL THEN 'zoned'  -- no text: nothing to read
        WHEN NOT (joined || E'\\n' ~ '^(?:{_escaped(TIME)}\\n)*$' AND {_LINES}) THEN NULL
        -- (?n): ^ and $ at each line; every line starts with its date (10 characters), and after it only a zone
        -- has Z, + or -
        WHEN joined ~ '(?n)^[0-9]{{4}}-(?\\:02-(?\\:29|3)|(?\\:0[469]|11)-31)' THEN 'shaped'
        WHEN joined !~ '(?n)^.{{10}}[^Z+-]*$' THEN 'zoned'
        WHEN joined !~ '(?n)^.{{10}}.*[Z+-]' THEN 'local'
        ELSE 'shaped'
    END
$$;
COMMENT ON FUNCTION citygrid_import_joined_times(text, bigint) IS 'how every one of the texts, joined by newlines, '
    'is read as citygrid_import_time reads it: zoned (each has a time''s shape with its fields in range, a day its '
    'month has and a zone: a cast to timestamptz), local (the same without a zone: a cast to timestamp, at '
    'Beijing time), shaped (citygrid_import_time_shaped), NULL (citygrid_import_time)';
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS citygrid_import_joined_times(text, bigint);
DROP FUNCTION IF EXISTS citygrid_import_joined_numbers(text, bigint);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
