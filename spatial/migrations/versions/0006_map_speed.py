"""Map speed: derived results (vector tiles, heat cells, hotspot analyses) kept in PostgreSQL for every worker.

``citygrid_cache.derived`` holds each result as bytes with the change counter (migration 0003) it was
computed at; ``spatial.changes.SharedCache`` reads and writes it. Nothing in it is data of record, so it
lives in a schema of its own (a backup can leave it out: ``pg_dump --exclude-schema=citygrid_cache``) and
is UNLOGGED: a crash empties it, and the results are computed again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA citygrid_cache")
    op.execute(
        """
        CREATE UNLOGGED TABLE citygrid_cache.derived (
            kind        text NOT NULL,
            key         text NOT NULL,
            version     bigint NOT NULL,
            computed_at timestamptz NOT NULL DEFAULT now(),
            body        bytea NOT NULL,
            PRIMARY KEY (kind, key)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS citygrid_cache.derived")
    op.execute("DROP SCHEMA IF EXISTS citygrid_cache")
