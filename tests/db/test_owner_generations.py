"""``at=`` answers from the boundary generation in force: a merge of two grids in 2018 changes the owner."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial import owner
from spatial.settings import OwnerSettings

CST = timezone(timedelta(hours=8))
MERGE = """
UPDATE boundary_generations SET valid_to = '2018-01-01T00:00+08' WHERE generation = 1;
INSERT INTO boundary_generations (generation, label, valid_from, source)
    VALUES (2, '2018年网格调整', '2018-01-01T00:00+08', 'test');
INSERT INTO subdistricts SELECT 2, code, name, name_en, geom FROM subdistricts WHERE generation = 1;
INSERT INTO communities SELECT 2, code, subdistrict_code, name, geom FROM communities WHERE generation = 1;
INSERT INTO grids (generation, code, community_code, name, geom)
    SELECT 2, code, community_code, name, geom FROM grids
    WHERE generation = 1 AND code NOT IN ('532601001001001', '532601001001002');
INSERT INTO grids (generation, code, community_code, name, geom)
    SELECT 2, '532601001001002', '532601001001', '东风社区第2网格', ST_Multi(ST_Union(geom)) FROM grids
    WHERE generation = 1 AND code IN ('532601001001001', '532601001001002');
"""


def test_owner_follows_the_generation_in_force(conn: Connection) -> None:
    inside_001 = conn.execute(
        text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids WHERE code = :c) g"),
        {"c": "532601001001001"},
    ).one()
    conn.execute(text(MERGE))
    rules = OwnerSettings()
    before = owner.lookup(conn, *inside_001, at=datetime(2017, 6, 1, 9, tzinfo=CST), rules=rules).as_dict()
    after = owner.lookup(conn, *inside_001, at=datetime(2019, 6, 1, 9, tzinfo=CST), rules=rules).as_dict()
    assert (before["generation"]["generation"], before["grid"]["code"]) == (1, "532601001001001")
    assert (after["generation"]["generation"], after["grid"]["code"]) == (2, "532601001001002")
    assert after["generation"]["label"] == "2018年网格调整"
    # The merged grid's duty holder is whoever holds 532601001001002 then (after the 2017 rotation: P0395).
    assert after["grid_member"]["id"] == "P0395"
    parts = conn.execute(text("SELECT count(*) FROM grid_parts WHERE generation = 2")).scalar_one()
    assert parts == 192


def test_single_lookup_and_stored_incidents_agree(conn: Connection) -> None:
    """Every loaded incident's chain is what the owner lookup answers for its point and moment."""
    rows = conn.execute(
        text(
            "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, reported_at, grid_code, grid_member_id, street_chief_id,"
            " squad_code FROM incidents ORDER BY code LIMIT 200"
        )
    ).all()
    rules = OwnerSettings()
    for row in rows:
        a = owner.lookup(conn, row.lon, row.lat, at=row.reported_at, rules=rules).as_dict()
        assert (a["grid"]["code"], a["grid_member"]["id"], a["street_chief"]["person"]["id"], a["squad"]["code"]) == (
            row.grid_code,
            row.grid_member_id,
            row.street_chief_id,
            row.squad_code,
        )
