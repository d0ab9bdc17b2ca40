"""Owner lookups by cell: grids, streets and rivers indexed on a fixed 100 m square lattice in EPSG:4544.

Why: the city has 193 grids and 62 streets, so each GiST index is a single page, and every lookup ran the
index's consistent function on all of its entries: ≈19 µs a point for the grid and ≈8 µs for the nearest
street, most of the chain's cost (measured with EXPLAIN ANALYZE on 50,000 points). A cell is found by
arithmetic and a B-tree probe, and holds the one to four pieces that can matter there.

- ``grid_cells``, ``street_cells``, ``river_cells``: for every cell of the lattice, the pieces of the layer
  (grid parts; streets and rivers cut by ``ST_Subdivide``) that lie within the layer's reach of the cell,
  each with its geometry, so the exact test needs no second lookup. Triggers keep them in step with
  ``grid_parts``, ``streets`` and ``rivers`` whoever writes those.
- ``citygrid_owner_points`` keeps its signature and its rules; only how candidates are found changed. A
  point's candidates are the pieces filed under its cell, then the same exact tests as before
  (``ST_DWithin`` in metres). A tolerance larger than the layer's reach looks in the ring of neighbouring
  cells that covers the difference, so the answer is the same for every tolerance, only slower.
- What follows from the grid (community, subdistrict, squad, the grid's boundary) is joined once per grid;
  its duty holders once per period in which none of them changes, not once per point or moment (an
  import's points each have a moment of their own).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- The lattice: square cells of citygrid_cell_m() metres in EPSG:4544, numbered floor(x / size), floor(y / size).
CREATE FUNCTION citygrid_cell_m() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 100.0::double precision $$;

-- How far from a cell each layer's pieces are filed under it: the default tolerances (edge 0.5 m, street
-- 50 m, river 100 m) fit inside, so a default lookup reads one cell per layer.
CREATE FUNCTION citygrid_cell_reach_m(layer text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE layer WHEN 'grid' THEN 1.0 WHEN 'street' THEN 50.0 WHEN 'river' THEN 100.0 END::double precision
$$;

-- The cells lying within reach_m of g (a geometry in EPSG:4544). Filing uses the reach plus 1 cm, so that
-- a point rounded onto a cell edge still finds every piece within the reach.
CREATE FUNCTION citygrid_cells_near(g geometry, reach_m double precision) RETURNS TABLE (cx integer, cy integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT x, y
    FROM generate_series(floor((ST_XMin(g) - reach_m) / citygrid_cell_m())::integer,
                         floor((ST_XMax(g) + reach_m) / citygrid_cell_m())::integer) x,
         generate_series(floor((ST_YMin(g) - reach_m) / citygrid_cell_m())::integer,
                         floor((ST_YMax(g) + reach_m) / citygrid_cell_m())::integer) y
    WHERE ST_DWithin(ST_MakeEnvelope(x * citygrid_cell_m(), y * citygrid_cell_m(),
                                     (x + 1) * citygrid_cell_m(), (y + 1) * citygrid_cell_m(), ST_SRID(g)),
                     g, reach_m + 0.01)
$$;

-- The offsets of the cells to read around a point's own cell, for a search radius that exceeds the layer's
-- reach by beyond_m: none beyond it (the default), otherwise every cell within beyond_m of the point's cell.
-- Why that suffices: a piece within the radius of the point has a point within the reach of some spot that
-- lies within beyond_m of the point, and that spot's cell files the piece.
CREATE FUNCTION citygrid_cell_ring(beyond_m double precision) RETURNS TABLE (dx integer, dy integer)
-- PL/pgSQL with ROWS 1, not an inlined SQL function: the planner would take the ring for 1,000,000 cells
-- (generate_series of unknown bounds) and hash the whole cell table for every point.
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE ROWS 1 AS $$
DECLARE
    k integer := ceil(greatest(beyond_m, 0) / citygrid_cell_m())::integer;
BEGIN
    RETURN QUERY SELECT x, y FROM generate_series(-k, k) x, generate_series(-k, k) y;
END $$;

CREATE TABLE grid_cells (
    generation  integer NOT NULL,
    grid_code   text NOT NULL,
    cx          integer NOT NULL,
    cy          integer NOT NULL,
    geom_m      geometry(Polygon, 4544) NOT NULL,
    FOREIGN KEY (generation, grid_code) REFERENCES grids (generation, code) ON DELETE CASCADE
);
CREATE INDEX grid_cells_cell_idx ON grid_cells (generation, cx, cy);
CREATE INDEX grid_cells_grid_idx ON grid_cells (generation, grid_code);

CREATE TABLE street_cells (
    street_code  text NOT NULL REFERENCES streets ON DELETE CASCADE ON UPDATE CASCADE,
    cx           integer NOT NULL,
    cy           integer NOT NULL,
    geom_m       geometry(LineString, 4544) NOT NULL
);
CREATE INDEX street_cells_cell_idx ON street_cells (cx, cy);
CREATE INDEX street_cells_street_idx ON street_cells (street_code);

CREATE TABLE river_cells (
    river_code  text NOT NULL REFERENCES rivers ON DELETE CASCADE ON UPDATE CASCADE,
    cx          integer NOT NULL,
    cy          integer NOT NULL,
    geom_m      geometry(LineString, 4544) NOT NULL
);
CREATE INDEX river_cells_cell_idx ON river_cells (cx, cy);
CREATE INDEX river_cells_river_idx ON river_cells (river_code);

-- A grid's cells are rebuilt from the parts it has after any change to one of them (grids have few parts).
CREATE FUNCTION citygrid_file_grid_cells(p_generation integer, p_grid_code text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM grid_cells WHERE generation = p_generation AND grid_code = p_grid_code;
    INSERT INTO grid_cells (generation, grid_code, cx, cy, geom_m)
    SELECT gp.generation, gp.grid_code, c.cx, c.cy, gp.geom_m
    FROM grid_parts gp, citygrid_cells_near(gp.geom_m, citygrid_cell_reach_m('grid')) c
    WHERE gp.generation = p_generation AND gp.grid_code = p_grid_code;
$$;

CREATE FUNCTION citygrid_refresh_grid_cells() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO grid_cells (generation, grid_code, cx, cy, geom_m)
        SELECT NEW.generation, NEW.grid_code, c.cx, c.cy, NEW.geom_m
        FROM citygrid_cells_near(NEW.geom_m, citygrid_cell_reach_m('grid')) c;
        RETURN NULL;
    END IF;
    PERFORM citygrid_file_grid_cells(OLD.generation, OLD.grid_code);
    IF TG_OP = 'UPDATE' AND (NEW.generation, NEW.grid_code) IS DISTINCT FROM (OLD.generation, OLD.grid_code) THEN
        PERFORM citygrid_file_grid_cells(NEW.generation, NEW.grid_code);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER grid_parts_refresh_cells AFTER INSERT OR UPDATE OR DELETE ON grid_parts
    FOR EACH ROW EXECUTE FUNCTION citygrid_refresh_grid_cells();

-- Streets and rivers are cut into pieces of at most 32 vertices, so a far end of a long line costs nothing.
CREATE FUNCTION citygrid_refresh_line_cells() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'streets' THEN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM street_cells WHERE street_code = OLD.code;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO street_cells (street_code, cx, cy, geom_m)
            SELECT NEW.code, c.cx, c.cy, piece.geom
            FROM ST_Subdivide(NEW.geom_m, 32) AS piece (geom),
                 citygrid_cells_near(piece.geom, citygrid_cell_reach_m('street')) c;
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM river_cells WHERE river_code = OLD.code;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO river_cells (river_code, cx, cy, geom_m)
            SELECT NEW.code, c.cx, c.cy, piece.geom
            FROM ST_Dump(NEW.geom_m) AS line, ST_Subdivide(line.geom, 32) AS piece (geom),
                 citygrid_cells_near(piece.geom, citygrid_cell_reach_m('river')) c;
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER streets_refresh_cells AFTER INSERT OR UPDATE OF code, geom OR DELETE ON streets
    FOR EACH ROW EXECUTE FUNCTION citygrid_refresh_line_cells();
CREATE TRIGGER rivers_refresh_cells AFTER INSERT OR UPDATE OF code, geom OR DELETE ON rivers
    FOR EACH ROW EXECUTE FUNCTION citygrid_refresh_line_cells();

INSERT INTO grid_cells (generation, grid_code, cx, cy, geom_m)
SELECT gp.generation, gp.grid_code, c.cx, c.cy, gp.geom_m
FROM grid_parts gp, citygrid_cells_near(gp.geom_m, citygrid_cell_reach_m('grid')) c;
INSERT INTO street_cells (street_code, cx, cy, geom_m)
SELECT s.code, c.cx, c.cy, piece.geom
FROM streets s, ST_Subdivide(s.geom_m, 32) AS piece (geom),
     citygrid_cells_near(piece.geom, citygrid_cell_reach_m('street')) c;
INSERT INTO river_cells (river_code, cx, cy, geom_m)
SELECT r.code, c.cx, c.cy, piece.geom
FROM rivers r, ST_Dump(r.geom_m) AS line, ST_Subdivide(line.geom, 32) AS piece (geom),
     citygrid_cells_near(piece.geom, citygrid_cell_reach_m('river')) c;

-- The same rules as revision 0001 (see its comments); candidates now come from the cells.
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
    ), grid_bases AS MATERIALIZED (
        -- what follows from the grid alone, once per grid
        SELECT k.generation, k.grid_code, g.community_code, c.subdistrict_code, sq.code AS squad_code,
               ST_Boundary(g.geom_m) AS boundary_m
        FROM (SELECT DISTINCT generation, grid_code FROM located WHERE grid_code IS NOT NULL) k
        JOIN grids g ON g.generation = k.generation AND g.code = k.grid_code
        LEFT JOIN communities c ON c.generation = k.generation AND c.code = g.community_code
        LEFT JOIN squads sq ON sq.subdistrict_code = c.subdistrict_code
    ), grid_periods AS MATERIALIZED (
        -- A grid's duty holders change only where one of its four duties starts or ends: between two such
        -- moments its chain is the same. Keyed by period, not by moment: the points of an import each have a
        -- moment of their own, and four duty lookups per point cost five times the lookup of the grid itself.
        SELECT b.generation, b.grid_code, t.starts,
               lead(t.starts) OVER (PARTITION BY b.generation, b.grid_code ORDER BY t.starts) AS ends
        FROM grid_bases b
        CROSS JOIN LATERAL (
            SELECT '-infinity'::timestamptz AS starts
            UNION
            SELECT m.at
            FROM (SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.target_kind = 'grid' AND d.target_code = b.grid_code AND d.role = 'grid_member'
                  UNION ALL
                  SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.target_kind = 'subdistrict' AND d.target_code = b.subdistrict_code
                    AND d.role = 'subdistrict_chief'
                  UNION ALL
                  SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.target_kind = 'city' AND d.target_code = left(b.subdistrict_code, 6)
                    AND d.role = 'general_street_chief'
                  UNION ALL
                  SELECT d.valid_from, d.valid_to FROM duties d
                  WHERE d.target_kind = 'squad' AND d.target_code = b.squad_code AND d.role = 'squad_leader') d,
                 unnest(ARRAY[d.valid_from, d.valid_to]) AS m (at)
            WHERE m.at IS NOT NULL
        ) t
    ), grid_chains AS MATERIALIZED (
        -- each period's holders, as of its start
        SELECT p.generation, p.grid_code, p.starts, p.ends, b.community_code, b.subdistrict_code, b.squad_code,
               gm.person_id AS grid_member_id, sdc.person_id AS subdistrict_chief_id,
               gsc.person_id AS general_street_chief_id, sql.person_id AS squad_leader_id, b.boundary_m
        FROM grid_periods p
        JOIN grid_bases b ON b.generation = p.generation AND b.grid_code = p.grid_code
        LEFT JOIN duties gm ON gm.target_kind = 'grid' AND gm.target_code = p.grid_code AND gm.role = 'grid_member'
            AND gm.valid_from <= p.starts AND (gm.valid_to IS NULL OR gm.valid_to > p.starts)
        LEFT JOIN duties sdc ON sdc.target_kind = 'subdistrict' AND sdc.target_code = b.subdistrict_code
            AND sdc.role = 'subdistrict_chief' AND sdc.valid_from <= p.starts
            AND (sdc.valid_to IS NULL OR sdc.valid_to > p.starts)
        LEFT JOIN duties gsc ON gsc.target_kind = 'city' AND gsc.target_code = left(b.subdistrict_code, 6)
            AND gsc.role = 'general_street_chief' AND gsc.valid_from <= p.starts
            AND (gsc.valid_to IS NULL OR gsc.valid_to > p.starts)
        LEFT JOIN duties sql ON sql.target_kind = 'squad' AND sql.target_code = b.squad_code
            AND sql.role = 'squad_leader' AND sql.valid_from <= p.starts
            AND (sql.valid_to IS NULL OR sql.valid_to > p.starts)
    ), street_chiefs AS MATERIALIZED (
        SELECT k.street_code, k.at, stc.person_id
        FROM (SELECT DISTINCT street_code, at FROM located WHERE street_code IS NOT NULL) k
        JOIN duties stc ON stc.target_kind = 'street' AND stc.target_code = k.street_code
            AND stc.role = 'street_chief' AND stc.valid_from <= k.at AND (stc.valid_to IS NULL OR stc.valid_to > k.at)
    ), river_chiefs AS MATERIALIZED (
        SELECT k.river_code, k.at, rvc.person_id
        FROM (SELECT DISTINCT river_code, at FROM located WHERE river_code IS NOT NULL) k
        JOIN duties rvc ON rvc.target_kind = 'river' AND rvc.target_code = k.river_code
            AND rvc.role = 'river_chief' AND rvc.valid_from <= k.at AND (rvc.valid_to IS NULL OR rvc.valid_to > k.at)
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
    LEFT JOIN grid_chains gch ON gch.generation = l.generation AND gch.grid_code = l.grid_code
        AND gch.starts <= l.at AND (gch.ends IS NULL OR gch.ends > l.at)
    LEFT JOIN street_chiefs stc ON stc.street_code = l.street_code AND stc.at = l.at
    LEFT JOIN river_chiefs rvc ON rvc.river_code = l.river_code AND rvc.at = l.at
$$;
"""

# Revision 0001's chain function, restored on the way down.
DOWNGRADE = r"""
CREATE OR REPLACE FUNCTION citygrid_owner_points(
    geoms geometry[], ats timestamptz[],
    edge_tol_m double precision DEFAULT 0.5, outside_tol_m double precision DEFAULT 200,
    street_m double precision DEFAULT 50, river_m double precision DEFAULT 100)
RETURNS SETOF citygrid_chain
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH pts AS MATERIALIZED (
        SELECT u.row_no, u.at, bg.generation, ST_Transform(u.geom, 4544) AS p_m
        FROM unnest(geoms, ats) WITH ORDINALITY AS u (geom, at, row_no)
        -- a join, not citygrid_generation_at(): a nested function call per point costs more than the lookup
        LEFT JOIN boundary_generations bg ON bg.valid_from <= u.at AND (bg.valid_to IS NULL OR bg.valid_to > u.at)
    ), located AS MATERIALIZED (
        SELECT pts.*, o.grid_code, o.candidates, o.outside, o.nearest_code, o.distance_m,
               st.code AS street_code, st.distance_m AS street_distance_m,
               rv.code AS river_code, rv.distance_m AS river_distance_m
        FROM pts
        LEFT JOIN LATERAL (
            SELECT cand.codes[1] AS grid_code, cand.codes AS candidates, false AS outside,
                   cand.codes[1] AS nearest_code, 0::double precision AS distance_m
            FROM (SELECT array_agg(DISTINCT gp.grid_code ORDER BY gp.grid_code) AS codes
                  FROM grid_parts gp
                  WHERE gp.generation = pts.generation AND ST_DWithin(gp.geom_m, pts.p_m, edge_tol_m)) cand
            WHERE cand.codes IS NOT NULL
            UNION ALL
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
        LEFT JOIN LATERAL (
            SELECT s.code, ST_Distance(s.geom_m, pts.p_m) AS distance_m FROM streets s
            WHERE ST_DWithin(s.geom_m, pts.p_m, street_m)
            ORDER BY s.geom_m <-> pts.p_m LIMIT 1
        ) st ON true
        LEFT JOIN LATERAL (
            SELECT r.code, ST_Distance(r.geom_m, pts.p_m) AS distance_m FROM rivers r
            WHERE ST_DWithin(r.geom_m, pts.p_m, river_m)
            ORDER BY r.geom_m <-> pts.p_m LIMIT 1
        ) rv ON true
    )
    SELECT l.row_no, l.generation, l.grid_code, g.community_code, c.subdistrict_code, sq.code,
           gm.person_id, l.street_code, l.street_distance_m, COALESCE(stc.person_id, sdc.person_id),
           CASE WHEN stc.person_id IS NOT NULL THEN 'street' WHEN sdc.person_id IS NOT NULL THEN 'subdistrict' END,
           sdc.person_id, gsc.person_id, sql.person_id,
           l.river_code, l.river_distance_m, rvc.person_id,
           l.candidates, l.outside, l.nearest_code, l.distance_m,
           CASE WHEN l.grid_code IS NOT NULL AND NOT l.outside THEN ST_Distance(ST_Boundary(g.geom_m), l.p_m) END
    FROM located l
    LEFT JOIN grids g ON g.generation = l.generation AND g.code = l.grid_code
    LEFT JOIN communities c ON c.generation = l.generation AND c.code = g.community_code
    LEFT JOIN squads sq ON sq.subdistrict_code = c.subdistrict_code
    LEFT JOIN duties gm ON gm.target_kind = 'grid' AND gm.target_code = l.grid_code AND gm.role = 'grid_member'
        AND gm.valid_from <= l.at AND (gm.valid_to IS NULL OR gm.valid_to > l.at)
    LEFT JOIN duties stc ON stc.target_kind = 'street' AND stc.target_code = l.street_code
        AND stc.role = 'street_chief' AND stc.valid_from <= l.at AND (stc.valid_to IS NULL OR stc.valid_to > l.at)
    LEFT JOIN duties sdc ON sdc.target_kind = 'subdistrict' AND sdc.target_code = c.subdistrict_code
        AND sdc.role = 'subdistrict_chief' AND sdc.valid_from <= l.at
        AND (sdc.valid_to IS NULL OR sdc.valid_to > l.at)
    LEFT JOIN duties gsc ON gsc.target_kind = 'city' AND gsc.target_code = left(c.subdistrict_code, 6)
        AND gsc.role = 'general_street_chief' AND gsc.valid_from <= l.at
        AND (gsc.valid_to IS NULL OR gsc.valid_to > l.at)
    LEFT JOIN duties sql ON sql.target_kind = 'squad' AND sql.target_code = sq.code AND sql.role = 'squad_leader'
        AND sql.valid_from <= l.at AND (sql.valid_to IS NULL OR sql.valid_to > l.at)
    LEFT JOIN duties rvc ON rvc.target_kind = 'river' AND rvc.target_code = l.river_code
        AND rvc.role = 'river_chief' AND rvc.valid_from <= l.at AND (rvc.valid_to IS NULL OR rvc.valid_to > l.at)
$$;

DROP TRIGGER IF EXISTS rivers_refresh_cells ON rivers;
DROP TRIGGER IF EXISTS streets_refresh_cells ON streets;
DROP TRIGGER IF EXISTS grid_parts_refresh_cells ON grid_parts;
DROP FUNCTION IF EXISTS citygrid_refresh_line_cells();
DROP FUNCTION IF EXISTS citygrid_refresh_grid_cells();
DROP FUNCTION IF EXISTS citygrid_file_grid_cells(integer, text);
DROP TABLE IF EXISTS river_cells, street_cells, grid_cells;
DROP FUNCTION IF EXISTS citygrid_cell_ring(double precision);
DROP FUNCTION IF EXISTS citygrid_cells_near(geometry, double precision);
DROP FUNCTION IF EXISTS citygrid_cell_reach_m(text);
DROP FUNCTION IF EXISTS citygrid_cell_m();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
