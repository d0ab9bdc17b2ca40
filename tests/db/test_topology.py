"""Grids tile their community, communities tile their subdistrict: no gaps, no overlaps (areas in m²)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

LEVELS = {
    "grids": "SELECT code, ST_Transform(geom, 4544) AS geom FROM grids WHERE generation = 1",
    "communities": "SELECT code, ST_Transform(geom, 4544) AS geom FROM communities WHERE generation = 1",
    "subdistricts": "SELECT code, ST_Transform(geom, 4544) AS geom FROM subdistricts WHERE generation = 1",
}


@pytest.mark.parametrize("level", LEVELS)
def test_no_overlaps_within_a_level(conn: Connection, level: str) -> None:
    overlap = conn.execute(
        text(
            f"WITH l AS ({LEVELS[level]}) SELECT count(*), coalesce(sum(ST_Area(ST_Intersection(a.geom, b.geom))), 0)"
            " FROM l a JOIN l b ON a.code < b.code AND ST_Intersects(a.geom, b.geom)"
            " WHERE ST_Area(ST_Intersection(a.geom, b.geom)) > 0.001"
        )
    ).one()
    assert tuple(overlap) == (0, 0)


@pytest.mark.parametrize("level", LEVELS)
def test_no_gaps_within_a_level(conn: Connection, level: str) -> None:
    holes = conn.execute(
        text(
            f"WITH l AS ({LEVELS[level]}), u AS (SELECT (ST_Dump(ST_Union(geom))).geom FROM l)"
            " SELECT count(*), sum(ST_NumInteriorRings(geom)) FROM u"
        )
    ).one()
    assert tuple(holes) == (1, 0)  # one piece of city, no hole inside it


@pytest.mark.parametrize(
    ("child", "parent", "link"),
    [("grids", "communities", "left(c.code, 12)"), ("communities", "subdistricts", "left(c.code, 9)")],
)
def test_each_parent_is_exactly_the_union_of_its_children(conn: Connection, child: str, parent: str, link: str) -> None:
    rows = conn.execute(
        text(
            f"WITH c AS ({LEVELS[child]}), p AS ({LEVELS[parent]}),"
            f" u AS (SELECT {link} AS code, ST_Union(c.geom) AS geom FROM c GROUP BY 1)"
            " SELECT p.code, ST_Area(ST_SymDifference(p.geom, u.geom)) AS diff"
            " FROM p LEFT JOIN u USING (code)"
        )
    ).all()
    assert len(rows) == {"communities": 26, "subdistricts": 3}[parent]
    assert [r.code for r in rows if r.diff is None or r.diff >= 1.0] == []


def test_grid_codes_are_numbered_west_to_east_north_to_south(conn: Connection) -> None:
    """Inside a community, a later grid lies further south, or as far south and further east."""
    rows = conn.execute(
        text(
            "SELECT community_code, code, ST_Y(c) AS y, ST_X(c) AS x FROM ("
            " SELECT community_code, code, ST_Centroid(ST_Transform(geom, 4544)) AS c FROM grids"
            " WHERE generation = 1) g ORDER BY code"
        )
    ).all()
    assert len(rows) == 193
    cell = 430.0  # rows of the lattice are one cell apart; within a row, x increases
    out_of_order = [
        (a.code, b.code)
        for a, b in zip(rows, rows[1:], strict=False)
        if a.community_code == b.community_code
        and not (b.y < a.y - cell / 2 or (abs(b.y - a.y) < cell / 2 and b.x > a.x))
    ]
    assert out_of_order == []


def test_codes_follow_the_national_grid_rule(conn: Connection) -> None:
    bad = conn.execute(
        text(
            "SELECT g.code FROM grids g JOIN communities c ON c.code = g.community_code AND c.generation = g.generation"
            " WHERE g.code !~ '^532601[0-9]{9}$' OR left(g.code, 12) <> c.code OR left(c.code, 9) <> c.subdistrict_code"
        )
    ).all()
    assert bad == []
    per_community = conn.execute(
        text("SELECT min(count), max(count) FROM (SELECT count(*) FROM grids GROUP BY community_code) n")
    ).one()
    assert tuple(per_community) == (6, 8)


# The owner lookup's cell tables (migration 0004) are read by cell number through a B-tree, never by a
# spatial search: their pieces need no GiST index; nor do grid boundaries in grid_chain_periods (0008),
# read by grid code.
FOUND_BY_CELL = ["grid_cells.geom_m", "grid_chain_periods.boundary_m", "river_cells.geom_m", "street_cells.geom_m"]


def test_every_geometry_column_has_a_gist_index(conn: Connection) -> None:
    missing = (
        conn.execute(
            text(
                "SELECT f_table_name || '.' || f_geometry_column FROM geometry_columns gc"
                " WHERE f_table_schema = 'public'"
                " AND NOT EXISTS (SELECT 1 FROM pg_indexes i WHERE i.tablename = gc.f_table_name"
                "   AND i.indexdef ILIKE '%USING gist (' || gc.f_geometry_column || ')%')"
            )
        )
        .scalars()
        .all()
    )
    assert sorted(missing) == FOUND_BY_CELL


def test_grid_parts_cover_exactly_the_grids(conn: Connection) -> None:
    diff = conn.execute(
        text(
            "SELECT max(ST_Area(ST_SymDifference(ST_Transform(g.geom, 4544), ST_Transform(p.geom, 4544)))) FROM grids g"
            " JOIN (SELECT generation, grid_code, ST_Union(geom) AS geom FROM grid_parts GROUP BY 1, 2) p"
            " ON p.generation = g.generation AND p.grid_code = g.code"
        )
    ).scalar_one()
    assert diff < 0.01
