"""Import speed: a schema for the staging tables of parallel bulk imports.

A bulk import of cases computes each row's checks, responsibility chain and due time on several database
connections at once (one per core), then inserts every row in the caller's one transaction. Those helper
connections cannot see the caller's uncommitted temporary tables, so the file and the per-row results are
staged in UNLOGGED tables (no WAL: scratch data that a crash may lose) in this schema, committed by the
helpers and dropped by the import that made them; a rolled-back import leaves them behind for the next import
to sweep (spatial.import_staging).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA citygrid_import")
    op.execute(
        "COMMENT ON SCHEMA citygrid_import IS 'scratch tables of bulk imports in progress (spatial.import_staging)'"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS citygrid_import CASCADE")
