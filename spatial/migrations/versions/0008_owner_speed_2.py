"""Owner lookups, second pass: each grid's chain read from a table kept by triggers, duty holders by B-tree.

Why (measured on the fixture with pgbench, one client, the lookup's prepared generic plan): of ≈0.5 ms a
single lookup spent in PostgreSQL, ≈0.15 ms was finding what follows from the grid — its community,
subdistrict, squad and boundary, the moments at which one of its four duty holders changes, and the holders
in each period — computed again for every statement, and a quarter of the whole was starting up the plan's
≈150 nodes, most of them in that part. Another ≈20 % was GiST probes of duties (the exclusion constraint's
index, which the planner preferred for equality on role, kind and target, and which decompresses every
text key it visits).

- ``grid_chain_periods``: for every grid of every generation, the periods in which none of its grid member,
  subdistrict chief, general street chief and squad leader changes, with those holders, the community,
  subdistrict and squad, and the grid's boundary (EPSG:4544). The same rows as the grid_bases / grid_periods
  / grid_chains steps of revision 0004 computed per statement, now computed when their inputs change:
  statement triggers on grids, communities, squads and duties rebuild the table (≈200 grids a generation;
  a rebuild takes milliseconds, and those tables change by hand or by file, not per request).
- ``citygrid_owner_points`` keeps its signature, its rules and its answers; it reads a grid's chain from that
  table. Incident intake, case imports and owner lookups all still call it, so they cannot disagree.
- ``duties_holder_idx``: a B-tree on (role, target_kind, target_code, valid_from) with the period's end and
  the person, so that a holder is found by an index-only probe.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from alembic import op

from spatial.migrate import earlier_function

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE INDEX duties_holder_idx ON duties (role, target_kind, target_code, valid_from) INCLUDE (valid_to, person_id);

CREATE TABLE grid_chain_periods (
    generation               integer NOT NULL,
    grid_code                text NOT NULL,
    starts                   timestamptz NOT NULL,
    ends                     timestamptz,
    community_code           text,
    subdistrict_code         text,
    squad_code               text,
    grid_member_id           text,
    subdistrict_chief_id     text,
    general_street_chief_id  text,
    squad_leader_id          text,
    boundary_m               geometry NOT NULL,
    PRIMARY KEY (generation, grid_code, starts)
);
COMMENT ON TABLE grid_chain_periods IS
    'derived from grids, communities, squads and duties by citygrid_refresh_grid_chains(); not data of record';

-- Every grid's periods, as revision 0004 computed them per statement: a grid's duty holders change only where
-- one of its four duties starts or ends, and between two such moments its chain is the same.
CREATE FUNCTION citygrid_grid_chain_rows() RETURNS SETOF grid_chain_periods
LANGUAGE sql STABLE AS $$
    WITH grid_bases AS MATERIALIZED (
        SELECT g.generation, g.code AS grid_code, g.community_code, c.subdistrict_code, sq.code AS squad_code,
               ST_Boundary(g.geom_m) AS boundary_m
        FROM grids g
        LEFT JOIN communities c ON c.generation = g.generation AND c.code = g.community_code
        LEFT JOIN squads sq ON sq.subdistrict_code = c.subdistrict_code
    ), grid_periods AS MATERIALIZED (
        SELECT b.generation, b.grid_code, t.starts,
               lead(t.starts) OVER (PARTITION BY b.generation, b.grid_code ORDER BY t.starts) AS ends
        FROM grid_bases b
        CROSS JOIN LATERAL (
            SELECT '-infinity'::timestamptz AS starts
            UNION
            SELECT m.at
            FROM (SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.role = 'grid_member' AND d.target_kind = 'grid' AND d.target_code = b.grid_code
                  UNION ALL
                  SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.role = 'subdistrict_chief' AND d.target_kind = 'subdistrict'
                    AND d.target_code = b.subdistrict_code
                  UNION ALL
                  SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.role = 'general_street_chief' AND d.target_kind = 'city'
                    AND d.target_code = left(b.subdistrict_code, 6)
                  UNION ALL
                  SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.role = 'squad_leader' AND d.target_kind = 'squad' AND d.target_code = b.squad_code) d,
                 unnest(ARRAY[d.valid_from, d.valid_to]) AS m (at)
            WHERE m.at IS NOT NULL
        ) t
    )
    -- each period's holders as of its start (the exclusion constraint on duties allows at most one)
    SELECT p.generation, p.grid_code, p.starts, p.ends, b.community_code, b.subdistrict_code, b.squad_code,
           citygrid_duty_holder('grid_member', 'grid', p.grid_code, p.starts),
           citygrid_duty_holder('subdistrict_chief', 'subdistrict', b.subdistrict_code, p.starts),
           citygrid_duty_holder('general_street_chief', 'city', left(b.subdistrict_code, 6), p.starts),
           citygrid_duty_holder('squad_leader', 'squad', b.squad_code, p.starts),
           b.boundary_m
    FROM grid_periods p
    JOIN grid_bases b ON b.generation = p.generation AND b.grid_code = p.grid_code
$$;

-- Rebuilt whole after any statement that changes what a chain follows from. The lock makes a second writer
-- wait for the first to commit, so that its rebuild reads the first one's rows too and replaces them.
CREATE FUNCTION citygrid_refresh_grid_chains() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE grid_chain_periods IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM grid_chain_periods;
    INSERT INTO grid_chain_periods SELECT * FROM citygrid_grid_chain_rows();
    RETURN NULL;
END $$;
CREATE TRIGGER grids_refresh_chains AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON grids
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_refresh_grid_chains();
CREATE TRIGGER communities_refresh_chains AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON communities
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_refresh_grid_chains();
CREATE TRIGGER squads_refresh_chains AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON squads
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_refresh_grid_chains();
CREATE TRIGGER duties_refresh_chains AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON duties
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_refresh_grid_chains();

INSERT INTO grid_chain_periods SELECT * FROM citygrid_grid_chain_rows();

-- The same rules and answers as revision 0004 (see its comments); a grid's chain now comes from the table.
CREATE OR REPLACE FUNCTION citygrid_owner_points(
    geoms geometry[], ats timestamptz[],
    edge_tol_m double precision DEFAULT 0.5, outside_tol_m double precision DEFAULT 200,
    street_m double precision DEFAULT 50, river_m double precision DEFAULT 100)
RETURNS SETOF citygrid_chain
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH pts AS MATERIALIZED (
        SELECT u.row_no, u.at, bg.generation, u.p_m,
               floor(ST_X(u.p_m) / citygrid_cell_m())::integer AS cx,
               floor(ST_Y(u.p_m) / citygrid_cell_m())::integer AS cy
        -- OFFSET 0 keeps the subquery whole, so each point is transformed once, not once per use
        FROM (SELECT u.row_no, u.at, ST_Transform(u.geom, 4544) AS p_m
              FROM unnest(geoms, ats) WITH ORDINALITY AS u (geom, at, row_no) OFFSET 0) u
        -- a join, not citygrid_generation_at(): a nested function call per point costs more than the lookup
        LEFT JOIN boundary_generations bg ON bg.valid_from <= u.at AND (bg.valid_to IS NULL OR bg.valid_to > u.at)
    ), grid_ring AS MATERIALIZED (
        SELECT * FROM citygrid_cell_ring(edge_tol_m - citygrid_cell_reach_m('grid'))
    ), street_ring AS MATERIALIZED (
        SELECT * FROM citygrid_cell_ring(street_m - citygrid_cell_reach_m('street'))
    ), river_ring AS MATERIALIZED (
        SELECT * FROM citygrid_cell_ring(river_m - citygrid_cell_reach_m('river'))
    ), located AS MATERIALIZED (
        -- Point by point (LATERAL) on purpose: its cost does not depend on the planner's guess of how many
        -- points the arrays hold, which it cannot see when the function is not inlined.
        SELECT pts.row_no, pts.at, pts.generation, pts.p_m, o.grid_code, o.candidates, o.outside, o.nearest_code,
               o.distance_m, st.code AS street_code, st.distance_m AS street_distance_m,
               rv.code AS river_code, rv.distance_m AS river_distance_m
        FROM pts
        LEFT JOIN LATERAL (
            SELECT cand.codes[1] AS grid_code, cand.codes AS candidates, false AS outside,
                   cand.codes[1] AS nearest_code, 0::double precision AS distance_m
            FROM (SELECT CASE WHEN cardinality(hits.codes) > 1  -- on an edge: sorted, each grid once
                              THEN ARRAY(SELECT DISTINCT h FROM unnest(hits.codes) h ORDER BY h)
                              ELSE hits.codes END AS codes
                  -- no DISTINCT or ORDER BY in the aggregate: a sort per point for what is almost always one grid
                  FROM (SELECT array_agg(gc.grid_code) AS codes
                        FROM grid_ring r
                        JOIN grid_cells gc ON gc.generation = pts.generation AND gc.cx = pts.cx + r.dx
                                          AND gc.cy = pts.cy + r.dy
                        WHERE ST_DWithin(gc.geom_m, pts.p_m, edge_tol_m)) hits) cand
            WHERE cand.codes IS NOT NULL
            UNION ALL
            -- outside every grid (rare): the nearest grid part by the GiST index, as before
            SELECT * FROM (
                SELECT CASE WHEN ST_Distance(gp.geom_m, pts.p_m) <= outside_tol_m THEN gp.grid_code END,
                       CASE WHEN ST_Distance(gp.geom_m, pts.p_m) <= outside_tol_m THEN ARRAY[gp.grid_code]
                            ELSE ARRAY[]::text[] END,
                       true, gp.grid_code, ST_Distance(gp.geom_m, pts.p_m)
                FROM grid_parts gp
                WHERE gp.generation = pts.generation
                ORDER BY gp.geom_m <-> pts.p_m
                LIMIT 1) nearest
            LIMIT 1
        ) o ON true
        -- the nearest street within street_m, the lower code when two are exactly as near (a shared corner)
        LEFT JOIN LATERAL (
            SELECT sc.street_code AS code, ST_Distance(sc.geom_m, pts.p_m) AS distance_m
            FROM street_ring r
            JOIN street_cells sc ON sc.cx = pts.cx + r.dx AND sc.cy = pts.cy + r.dy
            WHERE ST_DWithin(sc.geom_m, pts.p_m, street_m)
            ORDER BY 2, 1
            LIMIT 1
        ) st ON true
        LEFT JOIN LATERAL (
            SELECT rc.river_code AS code, ST_Distance(rc.geom_m, pts.p_m) AS distance_m
            FROM river_ring r
            JOIN river_cells rc ON rc.cx = pts.cx + r.dx AND rc.cy = pts.cy + r.dy
            WHERE ST_DWithin(rc.geom_m, pts.p_m, river_m)
            ORDER BY 2, 1
            LIMIT 1
        ) rv ON true
    ), grid_chains AS MATERIALIZED (
        -- The periods of the grids the points fell in (grid_chain_periods, kept by triggers), taken apart
        -- from the final join: joined there directly, the table was the side the planner probed with every
        -- point, hashing all of them (a 50,000-point chunk 0.80 → 0.60 s; a single lookup the same).
        SELECT p.* FROM grid_chain_periods p
        JOIN (SELECT DISTINCT generation, grid_code FROM located WHERE grid_code IS NOT NULL) k
          ON k.generation = p.generation AND k.grid_code = p.grid_code
    ), street_chiefs AS MATERIALIZED (
        SELECT k.street_code, k.at, stc.person_id
        FROM (SELECT DISTINCT street_code, at FROM located WHERE street_code IS NOT NULL) k
        JOIN duties stc ON stc.role = 'street_chief' AND stc.target_kind = 'street' AND stc.target_code = k.street_code
            AND stc.valid_from <= k.at AND (stc.valid_to IS NULL OR stc.valid_to > k.at)
    ), river_chiefs AS MATERIALIZED (
        SELECT k.river_code, k.at, rvc.person_id
        FROM (SELECT DISTINCT river_code, at FROM located WHERE river_code IS NOT NULL) k
        JOIN duties rvc ON rvc.role = 'river_chief' AND rvc.target_kind = 'river' AND rvc.target_code = k.river_code
            AND rvc.valid_from <= k.at AND (rvc.valid_to IS NULL OR rvc.valid_to > k.at)
    )
    SELECT l.row_no, l.generation, l.grid_code, gch.community_code, gch.subdistrict_code, gch.squad_code,
           gch.grid_member_id, l.street_code, l.street_distance_m,
           COALESCE(stc.person_id, gch.subdistrict_chief_id),
           CASE WHEN stc.person_id IS NOT NULL THEN 'street'
                WHEN gch.subdistrict_chief_id IS NOT NULL THEN 'subdistrict' END,
           gch.subdistrict_chief_id, gch.general_street_chief_id, gch.squad_leader_id,
           l.river_code, l.river_distance_m, rvc.person_id,
           l.candidates, l.outside, l.nearest_code, l.distance_m,
           CASE WHEN l.grid_code IS NOT NULL AND NOT l.outside THEN ST_Distance(gch.boundary_m, l.p_m) END
    FROM located l
    -- the grid's chain in the period holding the point's moment
    LEFT JOIN grid_chains gch ON gch.generation = l.generation AND gch.grid_code = l.grid_code
        AND gch.starts <= l.at AND (gch.ends IS NULL OR gch.ends > l.at)
    LEFT JOIN street_chiefs stc ON stc.street_code = l.street_code AND stc.at = l.at
    LEFT JOIN river_chiefs rvc ON rvc.river_code = l.river_code AND rvc.at = l.at
$$;
"""

# Revision 0004's chain function, restored on the way down.
DOWNGRADE = (
    earlier_function("0004_owner_speed", "citygrid_owner_points")
    + r"""
DROP TRIGGER IF EXISTS duties_refresh_chains ON duties;
DROP TRIGGER IF EXISTS squads_refresh_chains ON squads;
DROP TRIGGER IF EXISTS communities_refresh_chains ON communities;
DROP TRIGGER IF EXISTS grids_refresh_chains ON grids;
DROP FUNCTION IF EXISTS citygrid_refresh_grid_chains();
DROP FUNCTION IF EXISTS citygrid_grid_chain_rows();
DROP TABLE IF EXISTS grid_chain_periods;
DROP INDEX IF EXISTS duties_holder_idx;
"""
)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
