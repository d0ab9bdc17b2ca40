"""Map counts: incidents counted per map cell and month, kept up to date by the database itself.

The map's first view (heat cells and Gi* hotspots of every incident in the period shown) counted a million
points each time incidents changed, a report a minute in production: 1.5 s of a cold page. Here
``incident_map_counts`` holds how many incidents share an H3 cell (resolution 9, the hotspots' default), a
heat cell (zoom 14, the map's default), a month of ``reported_at`` in China Standard Time (UTC+8) and a
status, subdistrict and source: the few thousand rows that answer the default view and its filters by status,
subdistrict and source (spatial.map_counts).

H3 cells are computed by the h3 library in Python, not in PostgreSQL, so the statement triggers below only
write what changed into ``incident_map_changes`` (one row per incident added, -1 per incident taken away; an
UPDATE that moves, re-dates or re-classifies an incident does both), in the writer's own transaction;
``spatial.map_counts.fold`` moves those rows into the counts later, in one transaction. Counts and changes
read together in one snapshot are always what the incidents themselves hold.

The triggers are ENABLE ALWAYS: a bulk import inserts under session_replication_role = replica
(spatial.intake), which silences ordinary triggers, and the changes must be written then too. Every incident
already stored is written as a change here; ``spatial.migrate.migrate`` folds them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# What a change row holds of an incident: where, when, and the columns the map filters by.
_COLUMNS = "ST_X({t}.geom), ST_Y({t}.geom), {t}.reported_at, {t}.status, {t}.subdistrict_code, {t}.source"
_KEPT = "(ST_X({t}.geom), ST_Y({t}.geom), {t}.reported_at, {t}.status, {t}.subdistrict_code, {t}.source)"

UPGRADE = f"""
CREATE TABLE incident_map_counts (
    month            date NOT NULL,
    h3               bigint NOT NULL,
    gx               integer NOT NULL,
    gy               integer NOT NULL,
    status           text NOT NULL,
    subdistrict_code text,
    source           text NOT NULL,
    n                integer NOT NULL,
    CONSTRAINT incident_map_counts_key UNIQUE NULLS NOT DISTINCT
        (month, h3, gx, gy, status, subdistrict_code, source)
);

CREATE TABLE incident_map_changes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sign             smallint NOT NULL,
    x                double precision NOT NULL,
    y                double precision NOT NULL,
    reported_at      timestamptz NOT NULL,
    status           text NOT NULL,
    subdistrict_code text,
    source           text NOT NULL
);

CREATE FUNCTION citygrid_map_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incident_map_changes (sign, x, y, reported_at, status, subdistrict_code, source)
    SELECT 1, {_COLUMNS.format(t="n")} FROM new_rows n;
    RETURN NULL;
END $$;

CREATE FUNCTION citygrid_map_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incident_map_changes (sign, x, y, reported_at, status, subdistrict_code, source)
    SELECT -1, {_COLUMNS.format(t="o")} FROM old_rows o;
    RETURN NULL;
END $$;

-- Only rows whose place, time or filtered columns changed: a status change writes two rows, a new due time none.
CREATE FUNCTION citygrid_map_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incident_map_changes (sign, x, y, reported_at, status, subdistrict_code, source)
    SELECT -1, {_COLUMNS.format(t="o")} FROM old_rows o LEFT JOIN new_rows n ON n.id = o.id
    WHERE n.id IS NULL OR {_KEPT.format(t="o")} IS DISTINCT FROM {_KEPT.format(t="n")}
    UNION ALL
    SELECT 1, {_COLUMNS.format(t="n")} FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
    WHERE o.id IS NULL OR {_KEPT.format(t="o")} IS DISTINCT FROM {_KEPT.format(t="n")};
    RETURN NULL;
END $$;

CREATE FUNCTION citygrid_map_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE incident_map_counts, incident_map_changes;
    RETURN NULL;
END $$;

-- PostgreSQL allows transition tables only on a trigger of one event: three triggers, and one for TRUNCATE.
CREATE TRIGGER incidents_map_inserted AFTER INSERT ON incidents REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_inserted();
CREATE TRIGGER incidents_map_updated AFTER UPDATE ON incidents REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_updated();
CREATE TRIGGER incidents_map_deleted AFTER DELETE ON incidents REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_deleted();
CREATE TRIGGER incidents_map_truncated AFTER TRUNCATE ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_truncated();
ALTER TABLE incidents ENABLE ALWAYS TRIGGER incidents_map_inserted;
ALTER TABLE incidents ENABLE ALWAYS TRIGGER incidents_map_updated;
ALTER TABLE incidents ENABLE ALWAYS TRIGGER incidents_map_deleted;
ALTER TABLE incidents ENABLE ALWAYS TRIGGER incidents_map_truncated;

INSERT INTO incident_map_changes (sign, x, y, reported_at, status, subdistrict_code, source)
SELECT 1, {_COLUMNS.format(t="i")} FROM incidents i;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    for event in ("inserted", "updated", "deleted", "truncated"):
        op.execute(f"DROP TRIGGER IF EXISTS incidents_map_{event} ON incidents")
        op.execute(f"DROP FUNCTION IF EXISTS citygrid_map_{event}()")
    op.execute("DROP TABLE IF EXISTS incident_map_changes")
    op.execute("DROP TABLE IF EXISTS incident_map_counts")
