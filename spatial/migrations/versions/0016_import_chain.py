"""Import chain: an import chunk's responsibility chains in ≈40 % less time, only the columns it stores.

Why (one 50,000-row chunk of the 1,000,000-row benchmark file, backend CPU, runs interleaved on the shared
2-core machine, which inflates CPU times by up to 1.7×): ``citygrid_owner_points`` took 600–880 ms a chunk
(median 705, ≈14 µs a row), the largest step of a chunk. It is called with arrays from a subquery, so PostgreSQL neither
inlines it nor knows how many points it holds (it plans for 10), and computes every column of the chain,
among them the distance to the grid's boundary (an ST_Distance to a polygon's ring per point) and the
candidates arrays the import never reads; each layer's hits are joined to the points, sorted and grouped
again per point (PostGIS was 7 % of the time, the executor the rest).

``citygrid_import_chain`` returns only what an import stores (and the nearest grid, for "not covered"):

- PL/pgSQL with ``plan_cache_mode = force_custom_plan``: its query is planned for each call with the arrays
  as values, so the planner sees the 50,000 points and hashes or merges instead of looping 50,000 times.
- Each layer's pieces are gathered per cell once per call (≈9,000 rows), sorted by code, and each point is
  joined to its own cell once: the grid is the first of the cell's pieces within the edge tolerance (the
  lowest code, as the chain's rule says), the street and the river the nearest piece within their radius
  (the first, so the lowest code, of equally near ones), tested in place by expressions over the cell's first
  four pieces. No per-point aggregate, sort or DISTINCT; a cell of more than four pieces (none in the fixture:
  at most four grids, four streets, three rivers) takes a subquery over all of its pieces.
- Only when every tolerance is within its layer's reach (the defaults are): then a point's candidates are
  exactly the pieces filed under its own cell. A wider tolerance reads rings of cells; such a call gets
  ``citygrid_owner_points``' own answer instead.

The rules are ``citygrid_owner_points``' (revision 0010; its comments); tests/db/test_import_chain_0016.py
compares the two over 30,000 random points, moments and tolerances, on edges, corners, streets, the river,
outside the city and before the boundary generation. The call as the import makes it: 600–880 → 340–480 ms
a chunk (medians 705 → 455, ≈14 → 9 µs a row); the whole chunk statement (intake._chunk_sql, rows
150,001-200,000): medians 1,770 → 1,520 ms. The same query inlined with constants took 290–400 ms, the rest
is the call's planning (≈20 ms, its custom plan) and returning rows through PL/pgSQL; not yet the 2× hoped for.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE FUNCTION citygrid_import_chain(
    geoms geometry[], ats timestamptz[],
    edge_tol_m double precision DEFAULT 0.5, outside_tol_m double precision DEFAULT 200,
    street_m double precision DEFAULT 50, river_m double precision DEFAULT 100)
RETURNS TABLE (row_no bigint, generation integer, grid_code text, community_code text, subdistrict_code text,
    squad_code text, grid_member_id text, street_code text, street_chief_id text, river_code text,
    river_chief_id text, outside boolean, nearest_grid_code text, distance_to_grid_m double precision)
LANGUAGE plpgsql STABLE PARALLEL SAFE
-- planned with the arrays' values at every call: a generic plan assumes 10 points and loops per point
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    IF NOT (edge_tol_m BETWEEN 0 AND citygrid_cell_reach_m('grid')
            AND street_m BETWEEN 0 AND citygrid_cell_reach_m('street')
            AND river_m BETWEEN 0 AND citygrid_cell_reach_m('river')) IS TRUE THEN
        -- beyond a layer's reach a point's candidates lie in a ring of cells: the full function reads them
        RETURN QUERY
        SELECT o.row_no, o.generation, o.grid_code, o.community_code, o.subdistrict_code, o.squad_code,
               o.grid_member_id, o.street_code, o.street_chief_id, o.river_code, o.river_chief_id, o.outside,
               o.nearest_grid_code, o.distance_to_grid_m
        FROM citygrid_owner_points(geoms, ats, edge_tol_m, outside_tol_m, street_m, river_m) o;
        RETURN;
    END IF;
    RETURN QUERY
    WITH grid_cell AS MATERIALIZED (  -- each cell's grid pieces, lowest code first
        SELECT gc.generation, gc.cx, gc.cy, array_agg(gc.grid_code ORDER BY gc.grid_code) AS codes,
               array_agg(gc.geom_m ORDER BY gc.grid_code) AS pieces
        FROM grid_cells gc
        GROUP BY gc.generation, gc.cx, gc.cy
    ), line_cell AS MATERIALIZED (  -- each cell's street and river pieces, lowest code first
        SELECT coalesce(s.cx, r.cx) AS cx, coalesce(s.cy, r.cy) AS cy, s.codes AS street_codes,
               s.pieces AS street_pieces, r.codes AS river_codes, r.pieces AS river_pieces
        FROM (SELECT sc.cx, sc.cy, array_agg(sc.street_code ORDER BY sc.street_code) AS codes,
                     array_agg(sc.geom_m ORDER BY sc.street_code) AS pieces
              FROM street_cells sc GROUP BY sc.cx, sc.cy) s
        FULL JOIN (SELECT rc.cx, rc.cy, array_agg(rc.river_code ORDER BY rc.river_code) AS codes,
                          array_agg(rc.geom_m ORDER BY rc.river_code) AS pieces
                   FROM river_cells rc GROUP BY rc.cx, rc.cy) r ON r.cx = s.cx AND r.cy = s.cy
    ), pts AS (
        SELECT u.row_no, u.at, bg.generation, u.p_m,
               floor(ST_X(u.p_m) / citygrid_cell_m())::integer AS cx,
               floor(ST_Y(u.p_m) / citygrid_cell_m())::integer AS cy
        -- OFFSET 0 keeps the subquery whole, so each point is transformed once, not once per use
        FROM (SELECT u.row_no, u.at, ST_Transform(u.geom, 4544) AS p_m
              FROM unnest(geoms, ats) WITH ORDINALITY AS u (geom, at, row_no) OFFSET 0) u
        LEFT JOIN boundary_generations bg ON bg.valid_from <= u.at AND (bg.valid_to IS NULL OR bg.valid_to > u.at)
    ), measured AS (
        -- the grid: the first piece within the edge tolerance; streets and rivers: each piece's distance when
        -- within the radius (NULL otherwise, and where the cell has fewer pieces)
        SELECT p.row_no, p.at, p.generation, p.p_m,
               CASE WHEN cardinality(g.codes) > 4
                    THEN (SELECT min(c.code) FROM unnest(g.codes, g.pieces) c (code, piece)
                          WHERE ST_DWithin(c.piece, p.p_m, edge_tol_m))
                    WHEN ST_DWithin(g.pieces[1], p.p_m, edge_tol_m) THEN g.codes[1]
                    WHEN ST_DWithin(g.pieces[2], p.p_m, edge_tol_m) THEN g.codes[2]
                    WHEN ST_DWithin(g.pieces[3], p.p_m, edge_tol_m) THEN g.codes[3]
                    WHEN ST_DWithin(g.pieces[4], p.p_m, edge_tol_m) THEN g.codes[4] END AS hit_code,
               __STREET_MEASURES__,
               __RIVER_MEASURES__
        FROM pts p
        LEFT JOIN grid_cell g ON g.generation = p.generation AND g.cx = p.cx AND g.cy = p.cy
        LEFT JOIN line_cell l ON l.cx = p.cx AND l.cy = p.cy
        OFFSET 0  -- each distance computed once, not once per use below
    ), located AS (
        -- the nearest street and river: the first of the least distance (least() returns one of its values)
        SELECT m.row_no, m.at, m.generation, m.hit_code,
               -- outside every grid (rare): the nearest grid part
               CASE WHEN m.hit_code IS NULL THEN citygrid_nearest_grid(m.generation, m.p_m) END AS nearest,
               __STREET_NEAREST__,
               __RIVER_NEAREST__
        FROM measured m
        OFFSET 0  -- the nearest grid looked up once
    ), owned AS (
        -- in a grid: its lowest code; outside: the nearest grid within outside_tol_m, flagged, and beyond it
        -- none (the nearest still reported); no generation in force: nothing at all
        SELECT l.row_no, l.at, l.generation, l.street_code, l.river_code,
               coalesce(l.hit_code, CASE WHEN (l.nearest).distance_m <= outside_tol_m THEN (l.nearest).grid_code END)
                   AS grid_code,
               CASE WHEN l.hit_code IS NOT NULL THEN false WHEN (l.nearest).grid_code IS NOT NULL THEN true END
                   AS outside,
               coalesce(l.hit_code, (l.nearest).grid_code) AS nearest_code,
               CASE WHEN l.hit_code IS NOT NULL THEN 0::double precision ELSE (l.nearest).distance_m END AS distance_m
        FROM located l
    )
    SELECT o.row_no, o.generation, o.grid_code, gch.community_code, gch.subdistrict_code, gch.squad_code,
           gch.grid_member_id, o.street_code, COALESCE(stc.person_id, gch.subdistrict_chief_id), o.river_code,
           rvc.person_id, o.outside, o.nearest_code, o.distance_m
    FROM owned o
    LEFT JOIN grid_chain_periods gch ON gch.generation = o.generation AND gch.grid_code = o.grid_code
        AND gch.starts <= o.at AND (gch.ends IS NULL OR gch.ends > o.at)
    LEFT JOIN duties stc ON stc.role = 'street_chief' AND stc.target_kind = 'street'
        AND stc.target_code = o.street_code AND stc.valid_from <= o.at AND (stc.valid_to IS NULL OR stc.valid_to > o.at)
    LEFT JOIN duties rvc ON rvc.role = 'river_chief' AND rvc.target_kind = 'river'
        AND rvc.target_code = o.river_code AND rvc.valid_from <= o.at AND (rvc.valid_to IS NULL OR rvc.valid_to > o.at);
END $$;
"""


def _measures(layer: str, radius: str) -> str:
    """The columns of ``measured`` for a layer of lines: a cell of more than four pieces asks all of them at once;
    otherwise each of its first four pieces' distance when within ``radius`` (``s1``…``s4``, ``r1``…``r4``)."""
    pieces = [
        f"CASE WHEN ST_DWithin(l.{layer}_pieces[{k}], p.p_m, {radius})\n"
        f"                    THEN ST_Distance(l.{layer}_pieces[{k}], p.p_m) END AS {layer[0]}{k}"
        for k in range(1, 5)
    ]
    return ",\n               ".join(
        [
            f"l.{layer}_codes",
            f"CASE WHEN cardinality(l.{layer}_codes) > 4\n"
            f"                    THEN (SELECT c.code FROM unnest(l.{layer}_codes, l.{layer}_pieces) c (code, piece)\n"
            f"                          WHERE ST_DWithin(c.piece, p.p_m, {radius})"
            " ORDER BY ST_Distance(c.piece, p.p_m), c.code\n"
            f"                          LIMIT 1) END AS {layer}_beyond_four",
            *pieces,
        ]
    )


def _nearest(layer: str) -> str:
    """The nearest piece's code of a layer of lines: the first of the least distance (least() returns one of them)."""
    d = [f"m.{layer[0]}{k}" for k in range(1, 5)]
    cases = " ".join(f"WHEN {d[k]} THEN m.{layer}_codes[{k + 1}]" for k in range(4))
    least = ", ".join(d)
    return f"coalesce(m.{layer}_beyond_four, CASE least({least})\n                   {cases} END) AS {layer}_code"


UPGRADE = (
    UPGRADE.replace("__STREET_MEASURES__", _measures("street", "street_m"))
    .replace("__RIVER_MEASURES__", _measures("river", "river_m"))
    .replace("__STREET_NEAREST__", _nearest("street"))
    .replace("__RIVER_NEAREST__", _nearest("river"))
)

DOWNGRADE = """
DROP FUNCTION IF EXISTS citygrid_import_chain(geometry[], timestamptz[], double precision, double precision,
    double precision, double precision);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
