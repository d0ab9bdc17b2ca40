"""Each grid's chain periods (migration 0008) follow every write to what they come from, in the writer's transaction.

``grid_chain_periods`` is derived from grids, communities, squads and duties by statement triggers; the owner
chain reads it. After each kind of write, the table must hold exactly what a fresh computation gives, and
the owner lookup must answer from it at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial import owner
from spatial.settings import OwnerSettings

CST = timezone(timedelta(hours=8))
GRID = "532601001001001"  # 东风社区第1网格: grid member P0395 until 2017-04-01, P0396 since
COLUMNS = (
    "generation, grid_code, starts, ends, community_code, subdistrict_code, squad_code, grid_member_id, "
    "subdistrict_chief_id, general_street_chief_id, squad_leader_id, ST_AsBinary(boundary_m) AS boundary"
)


def _stale_rows(conn: Connection) -> int:
    """Return how many rows differ between the table and a fresh computation (both ways)."""
    return conn.execute(
        text(
            f"SELECT count(*) FROM ((SELECT {COLUMNS} FROM grid_chain_periods"
            f" EXCEPT ALL SELECT {COLUMNS} FROM citygrid_grid_chain_rows())"
            f" UNION ALL (SELECT {COLUMNS} FROM citygrid_grid_chain_rows()"
            f" EXCEPT ALL SELECT {COLUMNS} FROM grid_chain_periods)) d"
        )
    ).scalar_one()


def _periods(conn: Connection, grid: str) -> list[tuple[str | None, str | None]]:
    return [
        (r.starts.astimezone(CST).date().isoformat() if r.starts.year > 1 else "-infinity", r.grid_member_id)
        for r in conn.execute(
            text("SELECT starts, grid_member_id FROM grid_chain_periods WHERE grid_code = :g ORDER BY starts"),
            {"g": grid},
        )
    ]


def test_the_fixture_gives_398_periods_for_193_grids(conn: Connection) -> None:
    row = conn.execute(text("SELECT count(*) AS n, count(DISTINCT grid_code) AS grids FROM grid_chain_periods")).one()
    assert (row.n, row.grids) == (398, 193)
    assert _stale_rows(conn) == 0
    assert _periods(conn, GRID) == [("-infinity", None), ("2016-01-01", "P0395"), ("2017-04-01", "P0396")]


def test_a_handover_is_a_new_period_and_the_lookup_answers_from_it(conn: Connection) -> None:
    conn.execute(
        text("UPDATE duties SET valid_to = '2030-01-01T00:00+08' WHERE target_code = :g AND person_id = 'P0396'"),
        {"g": GRID},
    )
    conn.execute(
        text(
            "INSERT INTO duties (person_id, role, target_kind, target_code, valid_from)"
            " VALUES ('P0397', 'grid_member', 'grid', :g, '2030-01-01T00:00+08')"
        ),
        {"g": GRID},
    )
    assert _periods(conn, GRID) == [
        ("-infinity", None),
        ("2016-01-01", "P0395"),
        ("2017-04-01", "P0396"),
        ("2030-01-01", "P0397"),
    ]
    assert _stale_rows(conn) == 0
    point = conn.execute(
        text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids WHERE code = :g) g"),
        {"g": GRID},
    ).one()
    rules = OwnerSettings()
    before = owner.lookup(conn, *point, at=datetime(2029, 12, 31, 23, tzinfo=CST), rules=rules).as_dict()
    after = owner.lookup(conn, *point, at=datetime(2030, 1, 1, 0, tzinfo=CST), rules=rules).as_dict()
    assert (before["grid_member"]["id"], after["grid_member"]["id"]) == ("P0396", "P0397")

    conn.execute(text("DELETE FROM duties WHERE target_code = :g AND person_id = 'P0397'"), {"g": GRID})
    assert _periods(conn, GRID)[-1] == ("2030-01-01", None)
    assert _stale_rows(conn) == 0


def test_a_new_subdistrict_chief_starts_a_period_in_each_of_the_subdistricts_80_grids(conn: Connection) -> None:
    conn.execute(text("UPDATE duties SET valid_to = '2030-01-01T00:00+08' WHERE person_id = 'P0003'"))
    conn.execute(
        text(
            "INSERT INTO duties (person_id, role, target_kind, target_code, valid_from)"
            " VALUES ('P0123', 'subdistrict_chief', 'subdistrict', '532601001', '2030-01-01T00:00+08')"
        )
    )
    assert _stale_rows(conn) == 0
    assert conn.execute(text("SELECT count(*) FROM grid_chain_periods")).scalar_one() == 398 + 80
    assert (
        conn.execute(
            text(
                "SELECT count(DISTINCT grid_code) FROM grid_chain_periods"
                " WHERE starts = '2030-01-01T00:00+08' AND subdistrict_chief_id = 'P0123'"
                " AND subdistrict_code = '532601001'"
            )
        ).scalar_one()
        == 80
    )


def test_a_grid_redrawn_or_removed_changes_its_boundary_or_its_periods(conn: Connection) -> None:
    conn.execute(
        text("UPDATE grids SET geom = ST_Multi(ST_Buffer(ST_Centroid(geom), 0.001)) WHERE code = :g"), {"g": GRID}
    )
    assert _stale_rows(conn) == 0
    conn.execute(text("DELETE FROM grids WHERE code = :g"), {"g": GRID})
    assert _periods(conn, GRID) == []
    assert conn.execute(text("SELECT count(*) FROM grid_chain_periods")).scalar_one() == 395
    assert _stale_rows(conn) == 0
