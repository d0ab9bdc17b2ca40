"""The owner lookup's cells (migration 0004): the same answers as a search of every piece, and kept in step."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

# A 60 × 60 lattice over the city and 2 km around it, so that edges, corners, streets, the river and the
# outside all occur; each point is answered by the function and by a plain search of every grid part,
# street and river (the 0001 rules, no cells, no index).
POINTS = """
CREATE TEMP TABLE probe ON COMMIT DROP AS
SELECT row_number() OVER (ORDER BY i, j) AS row_no,
       ST_SetSRID(ST_MakePoint(ST_XMin(e) + (ST_XMax(e) - ST_XMin(e)) * i / 59.0,
                               ST_YMin(e) + (ST_YMax(e) - ST_YMin(e)) * j / 59.0), 4326) AS geom
FROM (SELECT ST_Expand(ST_Extent(geom)::geometry, 0.02) AS e FROM grids) extent,
     generate_series(0, 59) i, generate_series(0, 59) j
"""
DIFFERENCES = """
WITH answer AS (
    SELECT * FROM citygrid_owner_points((SELECT array_agg(geom ORDER BY row_no) FROM probe),
                                        array_fill(now(), ARRAY[3600]), :edge, 200, :street, :river)
), plain AS (
    SELECT p.row_no,
           (SELECT array_agg(DISTINCT gp.grid_code ORDER BY gp.grid_code) FROM grid_parts gp
            WHERE ST_DWithin(gp.geom_m, ST_Transform(p.geom, 4544), :edge)) AS candidates,
           (SELECT s.code FROM streets s WHERE ST_DWithin(s.geom_m, ST_Transform(p.geom, 4544), :street)
            ORDER BY ST_Distance(s.geom_m, ST_Transform(p.geom, 4544)), s.code LIMIT 1) AS street_code,
           (SELECT r.code FROM rivers r WHERE ST_DWithin(r.geom_m, ST_Transform(p.geom, 4544), :river)
            ORDER BY ST_Distance(r.geom_m, ST_Transform(p.geom, 4544)), r.code LIMIT 1) AS river_code
    FROM probe p
)
SELECT count(*) FILTER (WHERE (a.street_code, a.river_code) IS DISTINCT FROM (b.street_code, b.river_code)
                          OR (NOT a.outside AND a.candidates IS DISTINCT FROM b.candidates)
                          OR (a.outside AND b.candidates IS NOT NULL)) AS differences,
       count(*) FILTER (WHERE NOT a.outside) AS covered,
       count(*) FILTER (WHERE cardinality(a.candidates) > 1 AND NOT a.outside) AS ambiguous,
       count(a.street_code) AS near_street,
       count(a.river_code) AS near_river
FROM answer a JOIN plain b USING (row_no)
"""


def _differences(conn: Connection, edge: float, street: float, river: float) -> tuple[int, ...]:
    conn.execute(text(POINTS))
    row = conn.execute(text(DIFFERENCES), {"edge": edge, "street": street, "river": river}).one()
    return tuple(row)


def test_default_tolerances_match_a_search_of_every_piece(conn: Connection) -> None:
    assert _differences(conn, 0.5, 50, 100) == (0, 976, 6, 449, 80)


def test_tolerances_beyond_the_cells_reach_match_too(conn: Connection) -> None:
    # 250 m edges, 180 m streets and 260 m rivers: the lookup reads rings of neighbouring cells
    assert _differences(conn, 250, 180, 260) == (0, 1167, 1064, 1092, 200)


def test_cells_follow_a_moved_street_and_a_deleted_one(conn: Connection) -> None:
    expected = """
        SELECT count(*) FROM streets s, ST_Subdivide(s.geom_m, 32) piece,
             citygrid_cells_near(piece, citygrid_cell_reach_m('street')) c WHERE s.code = 'ST001'
    """
    filed = "SELECT count(*) FROM street_cells WHERE street_code = 'ST001'"
    conn.execute(text("UPDATE streets SET geom = ST_Translate(geom, 0.01, 0.004) WHERE code = 'ST001'"))
    assert conn.execute(text(filed)).scalar_one() == conn.execute(text(expected)).scalar_one()
    moved = conn.execute(
        text(
            "SELECT street_code FROM citygrid_owner_points(ARRAY[(SELECT ST_LineInterpolatePoint(geom, 0.5)"
            " FROM streets WHERE code = 'ST001')], ARRAY[now()])"
        )
    ).scalar_one()
    assert moved == "ST001"
    conn.execute(text("DELETE FROM streets WHERE code = 'ST001'"))
    assert conn.execute(text(filed)).scalar_one() == 0


def test_cells_follow_a_redrawn_grid(conn: Connection) -> None:
    code = "532601001001001"
    conn.execute(
        text("UPDATE grids SET geom = ST_Multi(ST_Buffer(ST_Centroid(geom), 0.001)) WHERE code = :c"), {"c": code}
    )
    filed = conn.execute(
        text("SELECT count(*) FROM grid_cells WHERE generation = 1 AND grid_code = :c"), {"c": code}
    ).scalar_one()
    expected = conn.execute(
        text(
            "SELECT count(*) FROM grid_parts gp, citygrid_cells_near(gp.geom_m, citygrid_cell_reach_m('grid')) c"
            " WHERE gp.generation = 1 AND gp.grid_code = :c"
        ),
        {"c": code},
    ).scalar_one()
    assert filed == expected
