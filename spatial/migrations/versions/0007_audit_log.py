"""The audit log: every write to the data, by whom, when, and the row before and after; append-only.

A row trigger on each audited table writes one entry per row changed. The writer names itself at the start
of its transaction (``spatial.audit.act_as`` sets ``citygrid.actor``, ``citygrid.role`` and
``citygrid.key_id`` for that transaction only); a write that does not is recorded as its database user.
Bulk writers (``citygrid load``, case imports) set ``citygrid.bulk`` for their transaction, which quiets the
row triggers, and record one entry for the whole file themselves — a million rows are one act.

No API role can alter the log: no endpoint writes to it but through these triggers, and the table refuses
UPDATE, DELETE and TRUNCATE from anybody, the database owner included.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Audited tables and the columns that name a row (for ``row_key``).
AUDITED = {
    "subdistricts": ("generation", "code"),
    "communities": ("generation", "code"),
    "grids": ("generation", "code"),
    "boundary_generations": ("generation",),
    "streets": ("code",),
    "rivers": ("code",),
    "squads": ("code",),
    "people": ("id",),
    "duties": ("person_id", "role", "target_kind", "target_code", "valid_from"),
    "markets": ("code",),
    "stalls": ("code",),
    "illegal_buildings": ("code",),
    "operations": ("code",),
    "incidents": ("code",),
    "api_keys": ("id",),
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit_log (
            id          bigserial PRIMARY KEY,
            at          timestamptz NOT NULL DEFAULT clock_timestamp(),
            actor       text NOT NULL,
            role        text,
            api_key_id  bigint,
            action      text NOT NULL,
            table_name  text NOT NULL,
            row_key     text,
            rows        bigint NOT NULL DEFAULT 1,
            before      jsonb,
            after       jsonb,
            db_user     text NOT NULL DEFAULT session_user
        );
        CREATE INDEX audit_log_row ON audit_log (table_name, row_key, id);
        CREATE INDEX audit_log_at ON audit_log (at);
        CREATE INDEX audit_log_key ON audit_log (api_key_id, id) WHERE api_key_id IS NOT NULL;
        COMMENT ON TABLE audit_log IS 'who changed what, when, before and after; append-only';

        CREATE FUNCTION citygrid_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'entries are never changed or removed; record a correcting act instead';
        END $$;
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION citygrid_audit_refuse();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION citygrid_audit_refuse();

        -- Who is acting: what the writer said for this transaction, or the database user.
        CREATE FUNCTION citygrid_audit_actor() RETURNS text LANGUAGE sql STABLE AS $$
            SELECT coalesce(nullif(current_setting('citygrid.actor', true), ''), 'database user ' || session_user)
        $$;

        -- One entry per row; TG_ARGV names the key columns. Secrets (key hashes) never enter the log.
        CREATE FUNCTION citygrid_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            before_row jsonb;
            after_row  jsonb;
            named      jsonb;
            row_key    text;
        BEGIN
            IF TG_OP <> 'INSERT' THEN before_row := to_jsonb(OLD) - 'key_hash'; END IF;
            IF TG_OP <> 'DELETE' THEN after_row := to_jsonb(NEW) - 'key_hash'; END IF;
            IF TG_OP = 'UPDATE' AND before_row = after_row THEN
                RETURN NULL;  -- an upsert that changed nothing is not an act
            END IF;
            named := coalesce(after_row, before_row);
            -- the key columns joined by '/', as plain expressions (a query here would cost a plan per row)
            FOR i IN 0 .. TG_NARGS - 1 LOOP
                row_key := concat_ws('/', row_key, named ->> TG_ARGV[i]);
            END LOOP;
            INSERT INTO audit_log (actor, role, api_key_id, action, table_name, row_key, before, after)
            VALUES (
                citygrid_audit_actor(),
                nullif(current_setting('citygrid.role', true), ''),
                CAST(nullif(current_setting('citygrid.key_id', true), '') AS bigint),
                lower(TG_OP),
                TG_TABLE_NAME,
                row_key,
                before_row,
                after_row
            );
            RETURN NULL;
        END $$;
        """
    )
    for table, key in AUDITED.items():
        arguments = ", ".join(f"'{column}'" for column in key)
        op.execute(
            f"CREATE TRIGGER {table}_audit AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW"
            " WHEN (current_setting('citygrid.bulk', true) IS DISTINCT FROM 'on')"
            f" EXECUTE FUNCTION citygrid_audit_row({arguments})"
        )


def downgrade() -> None:
    for table in AUDITED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_audit ON {table}")
    op.execute(
        """
        DROP FUNCTION IF EXISTS citygrid_audit_row();
        DROP FUNCTION IF EXISTS citygrid_audit_actor();
        DROP TABLE IF EXISTS audit_log;
        DROP FUNCTION IF EXISTS citygrid_audit_refuse();
        """
    )
