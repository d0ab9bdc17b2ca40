"""citygrid_owner_points (0010: each step a join of all points at once) answers as 0008's function did, every time.

The two definitions side by side in one transaction, 0008's read from its revision into pg_temp: over 30,065
points (random over the city and a kilometre around it, on grid edges and corners, along streets) at random
moments from 2010 to 2030 (before the boundary generation, across duty hand-overs), called the three ways
their callers call them: the arrays as constants (the owner batch: the planner sees how many points there
are), from a subquery (incident imports: it cannot), and one point at a time (single lookups and reports).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.migrate import earlier_function

PROBE = """
CREATE TEMP TABLE probe ON COMMIT DROP AS
SELECT row_number() OVER () AS n, p.geom,
       '2010-01-01T00:00+08'::timestamptz + random() * interval '20 years' AS at
FROM (
    SELECT ST_SetSRID(ST_MakePoint(ST_XMin(e) + random() * (ST_XMax(e) - ST_XMin(e)),
                                   ST_YMin(e) + random() * (ST_YMax(e) - ST_YMin(e))), 4326) AS geom
    FROM (SELECT ST_Expand(ST_Extent(geom)::geometry, 0.01) AS e FROM grids) box, generate_series(1, 24000)
    UNION ALL  -- on a grid's edge
    SELECT ST_LineInterpolatePoint(ST_ExteriorRing(ST_GeometryN(g.geom, 1)), random())
    FROM grids g, generate_series(1, 20)
    UNION ALL  -- on a grid's corner
    SELECT d.geom FROM grids g, ST_DumpPoints(g.geom) d
    UNION ALL  -- on a street
    SELECT ST_LineInterpolatePoint(ST_GeometryN(s.geom, 1), random()) FROM streets s, generate_series(1, 20)
) p
"""
# Rows of one definition that the other does not give, both ways; every column compared (distances exactly).
DIFFERING = """
SELECT count(*) FROM (
    (SELECT * FROM citygrid_owner_points({points}, {ats}, {rules})
     EXCEPT ALL SELECT * FROM pg_temp.owner_points_0008({points}, {ats}, {rules}))
    UNION ALL
    (SELECT * FROM pg_temp.owner_points_0008({points}, {ats}, {rules})
     EXCEPT ALL SELECT * FROM citygrid_owner_points({points}, {ats}, {rules}))
) d
"""
DEFAULT_RULES = "0.5, 200, 50, 100"
WIDE_RULES = "250, 300, 180, 260"  # beyond every layer's reach: the lookup reads rings of cells


def _probe(conn: Connection) -> None:
    conn.execute(text("SELECT setseed(0.42)"))
    conn.execute(text(PROBE))
    conn.execute(
        text(earlier_function("0008_owner_speed_2", "citygrid_owner_points").replace(
            "citygrid_owner_points(", "pg_temp.owner_points_0008(", 1
        ))
    )  # fmt: skip


def _differing(conn: Connection, points: str, ats: str, rules: str, params: dict[str, Any] | None = None) -> int:
    return conn.execute(text(DIFFERING.format(points=points, ats=ats, rules=rules)), params or {}).scalar_one()


def test_the_same_answers_as_0008_with_arrays_from_a_subquery(conn: Connection) -> None:
    _probe(conn)
    points, ats = "(SELECT array_agg(geom ORDER BY n) FROM probe)", "(SELECT array_agg(at ORDER BY n) FROM probe)"
    assert _differing(conn, points, ats, DEFAULT_RULES) == 0
    assert _differing(conn, points, ats, WIDE_RULES) == 0
    counts = conn.execute(
        text(
            "SELECT count(*) AS points, count(generation) AS in_a_generation,"
            " count(*) FILTER (WHERE outside) AS outside,"
            " count(*) FILTER (WHERE generation IS NOT NULL AND grid_code IS NULL) AS not_covered,"
            " count(*) FILTER (WHERE cardinality(candidates) > 1) AS on_an_edge,"
            " count(street_code) AS near_a_street, count(river_code) AS near_the_river"
            f" FROM citygrid_owner_points({points}, {ats})"
        )
    ).one()
    # every kind of answer occurs: in a grid, on an edge, outside but near one, not covered, no generation yet
    assert tuple(counts) == (30_065, 21_083, 9_515, 8_418, 3_959, 10_779, 938)


def test_the_same_answers_as_0008_with_arrays_as_constants(conn: Connection) -> None:
    _probe(conn)
    arrays = conn.execute(
        text("SELECT array_agg(geom ORDER BY n)::text, array_agg(at ORDER BY n)::text FROM probe")
    ).one()
    points, ats = "CAST(:points AS geometry[])", "CAST(:ats AS timestamptz[])"
    params = {"points": arrays[0], "ats": arrays[1]}
    assert _differing(conn, points, ats, DEFAULT_RULES, params) == 0
    assert _differing(conn, points, ats, WIDE_RULES, params) == 0


def test_the_same_answers_as_0008_one_point_at_a_time(conn: Connection) -> None:
    _probe(conn)
    differing = conn.execute(
        text(
            "SELECT count(*) FROM probe p WHERE p.n % 10 = 0 AND (SELECT o FROM citygrid_owner(p.geom, p.at) o)"
            " IS DISTINCT FROM (SELECT o FROM pg_temp.owner_points_0008(ARRAY[p.geom], ARRAY[p.at]) o)"
        )
    ).scalar_one()
    assert differing == 0
