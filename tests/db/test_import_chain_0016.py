"""citygrid_import_chain (0016, imports) answers as citygrid_owner_points does, column for column, every time.

The points of test_owner_points_0010 (30,065: random over the city and a kilometre around it, on grid edges and
corners, along streets, at random moments from 2010 to 2030: before the boundary generation, across duty
hand-overs), with the default rules, random tolerances within each layer's reach and wide ones beyond it
(the import function then asks the full one); and a cell crowded with more streets than the import function
tests in place, two of them exactly as near (the lower code wins).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from tests.db.test_owner_points_0010 import DEFAULT_RULES, PROBE, WIDE_RULES

IMPORT_COLUMNS = (
    "row_no, generation, grid_code, community_code, subdistrict_code, squad_code, grid_member_id, street_code,"
    " street_chief_id, river_code, river_chief_id, outside, nearest_grid_code, distance_to_grid_m"
)
POINTS = "(SELECT array_agg(geom ORDER BY n) FROM probe)"
ATS = "(SELECT array_agg(at ORDER BY n) FROM probe)"
# Rows of one function that the other does not give, both ways; every column the import stores, distances exactly.
DIFFERING = f"""
SELECT count(*) FROM (
    (SELECT * FROM citygrid_import_chain({POINTS}, {ATS}, {{rules}})
     EXCEPT ALL SELECT {IMPORT_COLUMNS} FROM citygrid_owner_points({POINTS}, {ATS}, {{rules}}))
    UNION ALL
    (SELECT {IMPORT_COLUMNS} FROM citygrid_owner_points({POINTS}, {ATS}, {{rules}})
     EXCEPT ALL SELECT * FROM citygrid_import_chain({POINTS}, {ATS}, {{rules}}))
) d
"""


def _differing(conn: Connection, rules: str) -> int:
    return conn.execute(text(DIFFERING.format(rules=rules))).scalar_one()


def test_the_same_answers_as_the_owner_function(conn: Connection) -> None:
    conn.execute(text("SELECT setseed(0.42)"))
    conn.execute(text(PROBE))
    assert _differing(conn, DEFAULT_RULES) == 0
    assert _differing(conn, WIDE_RULES) == 0
    assert _differing(conn, "0, 0, 0, 0") == 0
    assert _differing(conn, "1, 50, 50, 100") == 0  # each tolerance at its layer's reach
    assert _differing(conn, "0.5, 200, 51, 100") == 0  # one beyond it
    counts = conn.execute(
        text(
            "SELECT count(*), count(generation), count(*) FILTER (WHERE outside),"
            " count(*) FILTER (WHERE generation IS NOT NULL AND grid_code IS NULL), count(street_code),"
            " count(street_chief_id), count(river_code), count(river_chief_id)"
            f" FROM citygrid_import_chain({POINTS}, {ATS}, {DEFAULT_RULES})"
        )
    ).one()
    # every kind of answer occurs: in a grid, outside but near one, not covered, no generation yet, near a
    # street or the river, with and without a chief
    assert tuple(counts) == (30_065, 21_083, 9_515, 8_418, 10_779, 12_665, 938, 676)


def test_the_same_answers_with_random_tolerances_within_reach(conn: Connection) -> None:
    conn.execute(text("SELECT setseed(0.17)"))
    conn.execute(text(PROBE.replace("generate_series(1, 24000)", "generate_series(1, 4000)")))
    tolerances = conn.execute(
        text("SELECT random(), 1000 * random(), 50 * random(), 100 * random() FROM generate_series(1, 6)")
    ).all()
    for edge, outside, street, river in tolerances:
        assert _differing(conn, f"{edge!r}, {outside!r}, {street!r}, {river!r}") == 0


def test_a_cell_of_many_streets(conn: Connection) -> None:
    # six streets crossing one cell (more than the four tested in place), two of them the same line
    conn.execute(
        text(
            """
            INSERT INTO streets (code, name, kind, geom)
            SELECT 'ZZ' || n, 'probe street ' || n, 'branch',
                   ST_SetSRID(ST_MakeLine(ST_MakePoint(104.2100, 23.3650 + least(n, 5) * 0.00012),
                                          ST_MakePoint(104.2115, 23.3650 + least(n, 5) * 0.00012)), 4326)
            FROM generate_series(1, 6) n
            """
        )
    )
    conn.execute(text("SELECT setseed(0.5)"))
    conn.execute(
        text(
            """
            CREATE TEMP TABLE probe ON COMMIT DROP AS
            SELECT row_number() OVER () AS n,
                   ST_SetSRID(ST_MakePoint(104.2095 + random() * 0.0025, 23.3645 + random() * 0.0012), 4326) AS geom,
                   '2016-01-01T00:00+08'::timestamptz + random() * interval '4 years' AS at
            FROM generate_series(1, 3000)
            """
        )
    )
    crowded = conn.execute(
        text("SELECT count(*) FROM (SELECT count(*) AS n FROM street_cells GROUP BY cx, cy) c WHERE n > 4")
    ).scalar_one()
    assert crowded == 6
    assert _differing(conn, DEFAULT_RULES) == 0
    nearest = conn.execute(
        text(
            f"SELECT street_code, count(*) FROM citygrid_import_chain({POINTS}, {ATS}) WHERE street_code LIKE 'ZZ%'"
            " GROUP BY 1 ORDER BY 1"
        )
    ).all()
    assert [code for code, _ in nearest] == ["ZZ1", "ZZ2", "ZZ3", "ZZ4", "ZZ5"]  # ZZ6 is ZZ5's line: ZZ5 wins
