"""Every figure of DESIGN.md's seed table, reproduced with SQL over the loaded fixture."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection


def scalar(conn: Connection, sql: str) -> object:
    return conn.execute(text(sql)).scalar_one()


def test_three_subdistricts_with_real_codes_and_a_squad_each(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT s.code, s.name, q.name FROM subdistricts s JOIN squads q ON q.subdistrict_code = s.code "
            "WHERE s.generation = 1 ORDER BY s.code"
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("532601001", "开化街道", "开化街道城管执法中队"),
        ("532601002", "卧龙街道", "卧龙街道城管执法中队"),
        ("532601003", "新平街道", "新平街道城管执法中队"),
    ]


def test_communities_cadres_and_grid_members(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM communities WHERE generation = 1") == 26
    assert scalar(conn, "SELECT count(*) FROM people WHERE role = 'community_cadre'") == 104
    assert scalar(conn, "SELECT count(*) FROM people WHERE role = 'grid_member'") == 193
    assert scalar(conn, "SELECT count(*) FROM grids WHERE generation = 1") == 193


def test_every_grid_has_exactly_one_grid_member_at_any_moment(conn: Connection) -> None:
    for moment in ("2017-01-15T10:00+08", "2017-05-15T10:00+08"):
        holders = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE holder IS NOT NULL), count(DISTINCT holder) FROM ("
                " SELECT citygrid_duty_holder('grid_member', 'grid', code, CAST(:at AS timestamptz)) AS holder"
                " FROM grids WHERE generation = 1) h"
            ),
            {"at": moment},
        ).one()
        assert tuple(holders) == (193, 193)


def test_squad_headcounts_and_assistants(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT q.subdistrict_code, q.headcount, q.assistants,"
            " count(p.id), count(p.id) FILTER (WHERE p.role = 'squad_assistant')"
            " FROM squads q JOIN people p ON p.squad_code = q.code GROUP BY 1, 2, 3 ORDER BY 1"
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("532601001", 119, 71, 119, 71),
        ("532601002", 103, 61, 103, 61),
        ("532601003", 63, 38, 63, 38),
    ]
    assert scalar(conn, "SELECT sum(headcount) FROM squads") == 285
    assert scalar(conn, "SELECT sum(assistants) FROM squads") == 170


def test_seventeen_street_chief_letters(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM duties WHERE role = 'street_chief'") == 17
    assert scalar(conn, "SELECT count(DISTINCT target_code) FROM duties WHERE role = 'street_chief'") == 17


def test_chiefs_of_the_city_and_subdistricts(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM people WHERE role = 'subdistrict_chief'") == 3
    assert scalar(conn, "SELECT count(*) FROM people WHERE role = 'general_street_chief'") == 1
    assert scalar(conn, "SELECT count(*) FROM people WHERE role = 'river_chief'") == 1
    assert scalar(conn, "SELECT count(*) FROM rivers WHERE name = '盘龙河'") == 1


def test_catalogue_ten_categories_147_items(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM catalogue_categories") == 10
    assert scalar(conn, "SELECT count(*) FROM catalogue_items") == 147


def test_sixty_four_joint_operations(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM operations") == 64


def test_illegal_buildings_investigated_demolished_and_area(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM illegal_buildings WHERE investigated_at IS NOT NULL") == 823
    assert scalar(conn, "SELECT count(*) FROM illegal_buildings WHERE status = 'demolished'") == 448
    measured = scalar(
        conn,
        "SELECT sum(ST_Area(ST_Transform(geom, 4544))) FROM illegal_buildings WHERE status = 'demolished'",
    )
    assert measured == pytest.approx(400_000, abs=400)  # "约40万平方米"
    recorded = scalar(conn, "SELECT sum(demolished_m2) FROM illegal_buildings WHERE status = 'demolished'")
    assert recorded == pytest.approx(measured, abs=1.0)


def test_twenty_one_markets_rectified(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM markets WHERE rectified_at IS NOT NULL") == 21


def test_stalls(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM stalls") == 1620


def test_hotline_reports_closed_rate_and_satisfaction(conn: Connection) -> None:
    row = conn.execute(
        text(
            "SELECT count(*), count(*) FILTER (WHERE status = 'closed'),"
            " count(*) FILTER (WHERE satisfaction IN ('satisfied', 'basically_satisfied')),"
            " count(*) FILTER (WHERE satisfaction IS NOT NULL)"
            " FROM incidents WHERE source = 'hotline' AND reported_at >= '2017-01-01T00:00+08'"
            " AND reported_at < '2017-07-01T00:00+08'"
        )
    ).one()
    reports, closed, satisfied, evaluated = row
    assert (reports, closed) == (3694, 2900)
    assert round(100 * closed / reports, 1) == 78.5
    assert round(100 * satisfied / evaluated) == 86


def test_letters_and_calls_over_a_thousand(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(*) FROM incidents WHERE source = 'letter'") == 1052


def test_hotline_cases_cover_all_147_items(conn: Connection) -> None:
    assert scalar(conn, "SELECT count(DISTINCT item_code) FROM incidents WHERE source = 'hotline'") == 147


def test_pk_themes_are_four(conn: Connection) -> None:
    themes = conn.execute(text("SELECT DISTINCT pk_theme FROM catalogue_categories WHERE pk_theme IS NOT NULL"))
    assert sorted(t for (t,) in themes) == [
        "business_premises",
        "demolition",
        "outdoor_advertising",
        "sanitation",
    ]
