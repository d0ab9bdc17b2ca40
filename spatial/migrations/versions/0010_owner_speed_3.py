"""Owner lookups, third pass: the chain's steps as joins of all points at once, and a plan of fewer nodes.

Why (measured on the fixture, one backend, its CPU time read from /proc):

- A batch spent most of its time in executor overhead, not geometry: each point rescanned three LATERAL
  subqueries (aggregate or sort and limit over a ring scan and an index scan), ≈12 µs a point, of which
  PostGIS was 7 %. The grid's, the street's and the river's pieces are now joined to all points of the call
  at once on their cell (grid: every piece within the tolerance, gathered per point; street and river: the
  nearest per point by DISTINCT ON), so the planner may hash the cell tables when the call holds many points
  and probe their B-trees when it holds one. 50,000 random points, backend CPU, three runs each: 0.49–0.56 s
  with 0008's function, 0.33–0.45 s with this one when the arrays are constants (the owner batch: the planner
  sees the count) and 0.37–0.41 s when they come from a subquery (incident imports).
- A single lookup started a plan of ≈60 nodes for the function alone. The "outside every grid" branch (a
  UNION ALL with a nearest-part index scan, planned and started for every point) is now
  ``citygrid_nearest_grid``, called only for a point no grid piece is near; the candidates' sort (written out
  four times in the plan, once per use of the flattened subquery) is computed once; the three MATERIALIZED
  ring CTEs, each a PL/pgSQL call per statement (≈12 µs), are ``citygrid_cell_offsets``, which calls the ring
  function only for a tolerance beyond the cells' reach; the street and river chiefs are joined directly.
  The function's generic plan: 61 → 47 nodes; the owner lookup's prepared statement (spatial/owner.py):
  268 → 233 µs of backend CPU a lookup.

Same signature, rules and answers as revision 0008 (compared over random points, moments and tolerances in
tests/db/test_owner_points_0010.py). Incident intake, case imports, owner lookups and batches all still call
this one function.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from alembic import op

from spatial.migrate import earlier_function

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- The same offsets as citygrid_cell_ring(beyond_m), but the PL/pgSQL call is made only when the tolerance
-- exceeds the layer's reach (a one-time filter skips it otherwise: the own cell, (0, 0)), and the planner
-- counts one row either way. One row, not two: with two, a single lookup's generic plan hashed the whole
-- river_cells table instead of probing its index.
CREATE FUNCTION citygrid_cell_offsets(beyond_m double precision) RETURNS TABLE (dx integer, dy integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(r.dx, 0), coalesce(r.dy, 0)
    FROM (SELECT) own_cell
    LEFT JOIN LATERAL (SELECT * FROM citygrid_cell_ring(beyond_m) WHERE beyond_m > 0) r ON true
$$;

-- A point outside every grid: the nearest grid part of its generation, by the GiST index, and how far it is.
-- A function of its own so that this rare step is planned once per session, not started for every point.
CREATE TYPE citygrid_nearest_grid AS (grid_code text, distance_m double precision);
CREATE FUNCTION citygrid_nearest_grid(p_generation integer, p_m geometry) RETURNS citygrid_nearest_grid
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    nearest citygrid_nearest_grid;
BEGIN
    SELECT gp.grid_code, ST_Distance(gp.geom_m, p_m) INTO nearest.grid_code, nearest.distance_m
    FROM grid_parts gp
    WHERE gp.generation = p_generation
    ORDER BY gp.geom_m <-> p_m
    LIMIT 1;
    RETURN nearest;
END $$;

-- The same rules and answers as revisions 0004 and 0008 (see their comments).
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
    ), grid_hits AS (
        -- every grid piece within the edge tolerance; no DISTINCT or ORDER BY in the aggregate: a sort per
        -- point for what is almost always one grid
        SELECT pts.row_no, array_agg(gc.grid_code) AS codes
        FROM pts
        CROSS JOIN citygrid_cell_offsets(edge_tol_m - citygrid_cell_reach_m('grid')) r
        JOIN grid_cells gc ON gc.generation = pts.generation AND gc.cx = pts.cx + r.dx AND gc.cy = pts.cy + r.dy
        WHERE ST_DWithin(gc.geom_m, pts.p_m, edge_tol_m)
        GROUP BY pts.row_no
    ), street_hits AS (
        -- the nearest street within street_m, the lower code when two are exactly as near (a shared corner)
        SELECT DISTINCT ON (pts.row_no) pts.row_no, sc.street_code, ST_Distance(sc.geom_m, pts.p_m) AS distance_m
        FROM pts
        CROSS JOIN citygrid_cell_offsets(street_m - citygrid_cell_reach_m('street')) r
        JOIN street_cells sc ON sc.cx = pts.cx + r.dx AND sc.cy = pts.cy + r.dy
        WHERE ST_DWithin(sc.geom_m, pts.p_m, street_m)
        ORDER BY pts.row_no, 3, 2
    ), river_hits AS (
        SELECT DISTINCT ON (pts.row_no) pts.row_no, rc.river_code, ST_Distance(rc.geom_m, pts.p_m) AS distance_m
        FROM pts
        CROSS JOIN citygrid_cell_offsets(river_m - citygrid_cell_reach_m('river')) r
        JOIN river_cells rc ON rc.cx = pts.cx + r.dx AND rc.cy = pts.cy + r.dy
        WHERE ST_DWithin(rc.geom_m, pts.p_m, river_m)
        ORDER BY pts.row_no, 3, 2
    ), located AS MATERIALIZED (
        SELECT pts.row_no, pts.at, pts.generation, pts.p_m,
               CASE WHEN cardinality(g.codes) > 1  -- on an edge: sorted, each grid once
                    THEN ARRAY(SELECT DISTINCT h FROM unnest(g.codes) h ORDER BY h)
                    ELSE g.codes END AS codes,
               -- outside every grid (rare): the nearest grid part
               CASE WHEN g.codes IS NULL THEN citygrid_nearest_grid(pts.generation, pts.p_m) END AS nearest,
               s.street_code, s.distance_m AS street_distance_m, r.river_code, r.distance_m AS river_distance_m
        FROM pts
        LEFT JOIN grid_hits g ON g.row_no = pts.row_no
        LEFT JOIN street_hits s ON s.row_no = pts.row_no
        LEFT JOIN river_hits r ON r.row_no = pts.row_no
    ), owned AS (
        -- in a grid: the lowest code of the candidates; outside: the nearest grid within outside_tol_m,
        -- flagged, and beyond it none (the nearest still reported); no generation in force: nothing at all
        SELECT l.row_no, l.at, l.generation, l.p_m, l.street_code, l.street_distance_m, l.river_code,
               l.river_distance_m,
               CASE WHEN l.codes IS NOT NULL THEN l.codes[1]
                    WHEN (l.nearest).distance_m <= outside_tol_m THEN (l.nearest).grid_code END AS grid_code,
               CASE WHEN l.codes IS NOT NULL THEN l.codes
                    WHEN (l.nearest).distance_m <= outside_tol_m THEN ARRAY[(l.nearest).grid_code]
                    WHEN (l.nearest).grid_code IS NOT NULL THEN ARRAY[]::text[] END AS candidates,
               CASE WHEN l.codes IS NOT NULL THEN false WHEN (l.nearest).grid_code IS NOT NULL THEN true END AS outside,
               CASE WHEN l.codes IS NOT NULL THEN l.codes[1] ELSE (l.nearest).grid_code END AS nearest_code,
               CASE WHEN l.codes IS NOT NULL THEN 0::double precision ELSE (l.nearest).distance_m END AS distance_m
        FROM located l
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
    FROM owned l
    -- the grid's chain in the period holding the point's moment (grid_chain_periods, kept by triggers)
    LEFT JOIN grid_chain_periods gch ON gch.generation = l.generation AND gch.grid_code = l.grid_code
        AND gch.starts <= l.at AND (gch.ends IS NULL OR gch.ends > l.at)
    -- the exclusion constraint on duties allows at most one holder per role and target at any moment
    LEFT JOIN duties stc ON stc.role = 'street_chief' AND stc.target_kind = 'street'
        AND stc.target_code = l.street_code AND stc.valid_from <= l.at AND (stc.valid_to IS NULL OR stc.valid_to > l.at)
    LEFT JOIN duties rvc ON rvc.role = 'river_chief' AND rvc.target_kind = 'river'
        AND rvc.target_code = l.river_code AND rvc.valid_from <= l.at AND (rvc.valid_to IS NULL OR rvc.valid_to > l.at)
$$;
"""

# Revision 0008's chain function, restored on the way down.
DOWNGRADE = (
    earlier_function("0008_owner_speed_2", "citygrid_owner_points")
    + r"""
DROP FUNCTION IF EXISTS citygrid_nearest_grid(integer, geometry);
DROP TYPE IF EXISTS citygrid_nearest_grid;
DROP FUNCTION IF EXISTS citygrid_cell_offsets(double precision);
"""
)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
