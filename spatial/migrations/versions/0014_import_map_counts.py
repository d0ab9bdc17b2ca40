"""Map counts: a bulk import counts its own incidents instead of writing a change per row.

Revision 0013's statement trigger writes one ``incident_map_changes`` row per inserted incident, and a fold
later deletes them again, sums them and computes their H3 cells. For a million imported cases that was the
costliest step of the import after the insert itself (measured on the benchmark's million rows, one backend:
the insert with the trigger 24.1 s, without it 17.7 s; then the fold, 7.8 s, after the import's commit).

An import already holds every row it inserts, in its scratch tables: it sums them per point, month and
filtered column with the insert itself, computes their cells once in Python, and adds the few thousand sums
to ``incident_map_counts`` in its own transaction (spatial.intake, spatial.map_counts.Tally). While it
does, it sets ``citygrid.map_counted`` to ``on`` for its transaction, and the trigger writes no change rows
for its statements. Every other writer leaves the setting unset and is counted as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28
"""

from alembic import op

from spatial.migrate import earlier_function, revision_module

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# What a change row holds of an incident, as 0013 writes it
_COLUMNS: str = revision_module("0013_map_counts")._COLUMNS

UPGRADE = f"""
CREATE OR REPLACE FUNCTION citygrid_map_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- a writer that adds its own incidents to incident_map_counts (a bulk import) says so for its transaction
    IF current_setting('citygrid.map_counted', true) = 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO incident_map_changes (sign, x, y, reported_at, status, subdistrict_code, source)
    SELECT 1, {_COLUMNS.format(t="n")} FROM new_rows n;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(earlier_function("0013_map_counts", "citygrid_map_inserted"))
