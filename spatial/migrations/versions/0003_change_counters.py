"""Change counters: a sequence per layer that derived results (heat cells, hotspots, tiles) are keyed by.

Each statement that writes incidents, illegal buildings or stalls takes the next value of its layer's
sequence. Sequences are not transactional and take no lock, so intake at hundreds of reports a second
does not queue on a counter row; a cache that reads the value sees every committed change at once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LAYERS = ("incidents", "illegal_buildings", "stalls")


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION citygrid_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM nextval(TG_ARGV[0]::regclass);
            RETURN NULL;
        END $$;
        """
    )
    for layer in LAYERS:
        op.execute(f"CREATE SEQUENCE citygrid_changes_{layer}")
        op.execute(
            f"CREATE TRIGGER {layer}_count_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {layer}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION citygrid_count_change('citygrid_changes_{layer}')"
        )


def downgrade() -> None:
    for layer in LAYERS:
        op.execute(f"DROP TRIGGER IF EXISTS {layer}_count_changes ON {layer}")
        op.execute(f"DROP SEQUENCE IF EXISTS citygrid_changes_{layer}")
    op.execute("DROP FUNCTION IF EXISTS citygrid_count_change()")
