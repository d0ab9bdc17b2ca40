"""Import probes: whether a chunk's codes are taken, and its possible duplicates, only ever by an index probe.

An import chunk (``intake._chunk_sql``) asks of each good row whether its code is stored and which open case
within 3 m and 24 h may be its duplicate: a probe of ``incidents_code_key`` and one of the partial GiST index
``incidents_open_near_idx`` per row. The planner costs them against ``incidents`` as it is when the chunk is
planned, scaling the statistics' rows per page to the pages the table has then: stale statistics alone did
no harm (ANALYZEd at 1,000 rows, then 499,000 imported, not ANALYZEd: index probes, 1.6 s a 50,000-row
chunk). But while a helper connection runs its chunk, the importing transaction inserts the chunks before it
into the same table: rows the helper cannot see, yet reads past. Planned while the table was a page (one
stored case, ANALYZEd; or a page with no live row, ANALYZEd as empty), the duplicate probe was a sequential
scan and a sort per row (cost 77 against 84 for the index, for the one row the planner believed in) and the
code probe a sequential scan per row, and each of those scans read every page the import had added since:
the 500,000-row file of the intake benchmark, imported on 2 helpers into a table holding one open case in
the third chunk's window, took 88 s instead of 21; that chunk alone 70 s instead of 1.8.

So the probes run in ``citygrid_import_probes``, called once per chunk with the rows to probe as arrays, and
planned with sequential scans, bitmap scans and sorts off (its SET clauses: for its own statement only). The
code probe can then only be an index probe of ``incidents_code_key`` (OFFSET 0 keeps EXISTS from being
answered by one hashed read of the whole index instead), and the nearest-first order of the duplicate probe
only the GiST index's (every other path sorts), whatever the table's statistics or size. The same settings
for the whole chunk statement (SET LOCAL on the helper) would also re-plan ``citygrid_import_chain``: its
query went from hash joins to 50,000 index probes of grid_chain_periods and duties, 398 → 896 ms a chunk. An
ANALYZE by the import would not help: the table is as small as its statistics say when the chunk is planned.

Same ready rows as before on chunks of the benchmark file (each row's error and possible duplicate compared).
The cost on a healthy table (500,000 cases, ANALYZEd), backend CPU of a 50,000-row chunk, least and mean of the
lowest quarter of 30 runs interleaved with the former statement: no gate open 0.96 → 0.98 and 0.97 → 1.01 s
(no call; other runs of this comparison: -1 to +2 percent); open cases in the window, none near 1.07 → 1.13
and 1.10 → 1.15 s; stored codes in the chunk's range too 1.19 → 1.22 and 1.21 → 1.24 s; 9,833 possible
duplicates found 1.20 → 1.26 and 1.23 → 1.29 s. So 2 to 6 percent where a gate opens, on a shared 2-core
machine where repeated comparisons moved by up to 4 points; most of it is the arrays and the join of the
answers, not the probes (50,000 code and 10,000 duplicate probes alone: 0.44 s inline, 0.37 s in the call).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION citygrid_import_probes(
    code_ns bigint[], codes text[], point_ns bigint[], points geometry[], items text[], ats timestamptz[],
    radius_m double precision, duplicate_window interval)
RETURNS TABLE (row_no bigint, taken boolean, duplicate_of bigint)
LANGUAGE sql STABLE PARALLEL SAFE
ROWS 10  -- few rows are found, usually none: the caller hashes them (with the default 1000 it sorted both sides)
-- the planner's choice, for this function's statement only: an index probe per row, whatever the statistics
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
    SELECT r.n, bool_or(r.taken), max(r.duplicate_of)
    FROM (
        SELECT c.n, true AS taken, NULL::bigint AS duplicate_of
        FROM unnest(code_ns, codes) AS c (n, code)
        -- OFFSET 0: asked row by row; without it EXISTS may be answered by one hashed read of every stored code
        -- (the whole index, the import's own new rows too)
        WHERE EXISTS (SELECT FROM incidents ex WHERE ex.code = c.code OFFSET 0)
        UNION ALL
        SELECT d.n, NULL, d.duplicate_of
        FROM (
            SELECT p.n, (
                -- the partial GiST index on open cases only (see the single intake): nearest first, then item and
                -- time; the row's point is projected once, not once per index condition
                SELECT near.id
                FROM (SELECT ST_Transform(p.geom, 4544) AS p_m OFFSET 0) pm
                CROSS JOIN LATERAL (
                    SELECT o.id, o.item_code, o.reported_at FROM incidents o
                    WHERE o.status NOT IN ('closed', 'rejected')
                      AND ST_DWithin(ST_Transform(o.geom, 4544), pm.p_m, radius_m)
                    ORDER BY ST_Transform(o.geom, 4544) <-> pm.p_m
                    LIMIT 100) near
                WHERE near.item_code = p.item_code
                  AND near.reported_at BETWEEN p.at - duplicate_window AND p.at + duplicate_window
                LIMIT 1) AS duplicate_of
            FROM unnest(point_ns, points, items, ats) AS p (n, geom, item_code, at)
            OFFSET 0  -- each row probed once: flattened, the filter below probed again
        ) d
        WHERE d.duplicate_of IS NOT NULL
    ) r
    GROUP BY r.n
$$;
COMMENT ON FUNCTION citygrid_import_probes(bigint[], text[], bigint[], geometry[], text[], timestamptz[],
    double precision, interval) IS 'the rows whose code is stored (of code_ns), or that have an open case of the '
    'same item within radius_m and duplicate_window (of point_ns; the nearest): index probes only, row by row';
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS citygrid_import_probes(bigint[], text[], bigint[], geometry[], text[], timestamptz[],
    double precision, interval);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
