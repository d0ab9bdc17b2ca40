"""Bulk import: every bad row named, all or nothing (or the good rows with skip_invalid), chains and due times
equal to the single-point answers, GeoJSON and GeoPackage in a projected CRS, GCJ-02 coordinates."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import geopandas as gpd
import pytest
from psycopg2 import sql
from shapely.geometry import Point
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from spatial.catalogue import item
from spatial.crs import wgs84_to_gcj02
from spatial.errors import Conflict, InvalidInput
from spatial.intake import ImportRefused, _References, import_file
from spatial.keys import CLI_KEY
from spatial.settings import OwnerSettings
from spatial.workflow import add_working_time
from tests.api.casekit import GRID_1, GRID_2

CST = timezone(timedelta(hours=8))
RULES = OwnerSettings()
HEADER = ["code", "source", "item_code", "lon", "lat", "reported_at", "status", "closed_at", "satisfaction",
          "deferred", "reworks", "photos", "description"]  # fmt: skip
G1 = (str(GRID_1[0]), str(GRID_1[1]))
G2 = (str(GRID_2[0]), str(GRID_2[1]))
ROWS = [
    # 1-5 good
    ["IMP-T-001", "patrol", "0508", *G1, "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", "占道经营"],
    ["IMP-T-002", "media", "0101", *G2, "2017-03-15 10:00", "closed", "2017-03-15T16:00:00+08:00", "satisfied",
     "", "", "", ""],
    ["", "grid_member", "0302", *G1, "2017-05-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-004", "patrol", "0601", *G2, "2017-03-16", "", "", "", "", "", "", ""],
    ["IMP-T-005", "letter", "0111", *G1, "2017-03-17T21:30:00Z", "handling", "", "", "true", "2",
     "https://photos.example/1.jpg https://photos.example/2.jpg", ""],
    # 6-14 bad
    ["IMP-T-006", "patrol", "0508", "abc", G1[1], "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-007", "patrol", "9999", *G1, "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-008", "patrol", "0508", *G1, "2017-02-30T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-009", "patrol", "0508", *G1, "2017-03-15T10:00:00+08:00", "closed", "", "", "", "", "", ""],
    ["RX2017-000001", "patrol", "0508", *G1, "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-DUP", "patrol", "0508", *G1, "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-DUP", "patrol", "0508", *G2, "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-013", "patrol", "0508", "104.0", "23.0", "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
    ["IMP-T-014", "patrol", "0508", G1[1], G1[0], "2017-03-15T10:00:00+08:00", "", "", "", "", "", "", ""],
]  # fmt: skip
ERRORS = [
    (6, "lon/lat missing or not numbers"),
    (7, "item_code 9999 is not one of the 147 catalogue items"),
    (8, "reported_at 2017-02-30T10:00:00+08:00 is not an ISO 8601 time such as 2017-05-01T09:30:00+08:00, "
        "or no such day"),
    (9, "status closed needs closed_at"),
    (10, "code RX2017-000001 already exists"),
    (11, "code IMP-T-DUP appears 2 times in the file"),
    (12, "code IMP-T-DUP appears 2 times in the file"),
    (13, "not covered: 44708.5 m from the nearest grid 532601001009007 (check the coordinates and their crs)"),
    (14, f"lon {G1[1]} / lat {G1[0]} out of range: they look swapped (give lon first, then lat)"),
]  # fmt: skip


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM incidents")).scalar_one())


def test_a_file_with_bad_rows_is_refused_whole_and_every_bad_row_is_named(conn: Connection, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cases.csv", ROWS)
    before = count(conn)
    with pytest.raises(ImportRefused) as refused:
        import_file(conn, path, key=CLI_KEY, rules=RULES)
    report = refused.value.report
    assert (report.rows, report.inserted, report.invalid) == (14, 0, 9)
    assert [(e.row, e.error) for e in report.errors] == ERRORS
    assert "9 of 14 rows are invalid (first: row 6: lon/lat missing or not numbers)" in refused.value.message
    assert count(conn) == before  # nothing written, even inside the caller's transaction
    assert refused.value.detail["errors"][0] == {"row": 6, "error": "lon/lat missing or not numbers"}


def test_with_skip_invalid_the_good_rows_go_in_with_their_chain_and_due_time(conn: Connection, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cases.csv", ROWS)
    before = count(conn)
    report = import_file(conn, path, key=CLI_KEY, rules=RULES, skip_invalid=True)
    assert (report.rows, report.inserted, report.invalid, report.duplicates) == (14, 5, 9, 0)
    assert [(e.row, e.error) for e in report.errors] == ERRORS
    assert count(conn) == before + 5
    rows = conn.execute(
        text(
            "SELECT i.code, i.source, i.item_code, i.status, i.reported_at, i.due_at, i.closed_at, i.satisfaction,"
            " i.deferred, i.reworks, i.photos, i.description, i.grid_code, i.community_code, i.subdistrict_code,"
            " i.squad_code, i.grid_member_id, i.street_code, i.street_chief_id, i.river_code, i.river_chief_id,"
            " i.generation, i.outside, o.grid_code AS o_grid, o.community_code AS o_community,"
            " o.subdistrict_code AS o_subdistrict, o.squad_code AS o_squad, o.grid_member_id AS o_member,"
            " o.street_code AS o_street, o.street_chief_id AS o_chief, o.river_code AS o_river,"
            " o.river_chief_id AS o_river_chief, o.generation AS o_generation, o.outside AS o_outside"
            " FROM incidents i, citygrid_owner(i.geom, i.reported_at) o"
            " WHERE i.id > (SELECT max(id) FROM incidents) - 5 ORDER BY i.id"
        )
    ).all()
    assert [r.code for r in rows][:2] == ["IMP-T-001", "IMP-T-002"]
    assert rows[2].code.startswith("WG20170515-")  # made from the source, the day and the id
    for r in rows:
        chain = (r.grid_code, r.community_code, r.subdistrict_code, r.squad_code, r.grid_member_id, r.street_code,
                 r.street_chief_id, r.river_code, r.river_chief_id, r.generation, r.outside)  # fmt: skip
        owner = (r.o_grid, r.o_community, r.o_subdistrict, r.o_squad, r.o_member, r.o_street, r.o_chief, r.o_river,
                 r.o_river_chief, r.o_generation, r.o_outside)  # fmt: skip
        assert chain == owner
        limit = item(r.item_code)
        assert r.due_at == add_working_time(r.reported_at.astimezone(CST), limit.time_limit, limit.time_unit)
    assert [r.grid_code for r in rows] == ["532601001001001", "532601001001002", "532601001001001",
                                           "532601001001002", "532601001001001"]  # fmt: skip
    assert [r.grid_member_id for r in rows] == ["P0395", "P0396", "P0396", "P0396", "P0395"]  # rotation 04-01
    assert rows[1].reported_at == datetime(2017, 3, 15, 10, tzinfo=CST)  # no zone: Beijing time
    assert (rows[1].status, rows[1].closed_at, rows[1].satisfaction) == (
        "closed", datetime(2017, 3, 15, 16, tzinfo=CST), "satisfied",
    )  # fmt: skip
    assert rows[3].reported_at == datetime(2017, 3, 16, tzinfo=CST)
    assert (rows[4].status, rows[4].deferred, rows[4].reworks) == ("handling", True, 2)
    assert rows[4].photos == ["https://photos.example/1.jpg", "https://photos.example/2.jpg"]
    assert rows[4].reported_at == datetime(2017, 3, 18, 5, 30, tzinfo=CST)
    assert rows[0].status == "collected" and rows[0].description == "占道经营"


def test_an_imported_open_case_near_an_open_one_of_the_same_item_is_flagged(conn: Connection, tmp_path: Path) -> None:
    open_case = conn.execute(
        text(
            "SELECT id, item_code, ST_X(geom) AS lon, ST_Y(geom) AS lat, reported_at FROM incidents"
            " WHERE status = 'handling' ORDER BY code LIMIT 1"
        )
    ).one()
    at = (open_case.reported_at + timedelta(hours=3)).isoformat()
    rows = [
        ["IMP-D-1", "patrol", open_case.item_code, str(open_case.lon), str(open_case.lat), at],
        ["IMP-D-2", "patrol", open_case.item_code, str(open_case.lon), str(open_case.lat),
         (open_case.reported_at + timedelta(hours=30)).isoformat()],
    ]  # fmt: skip
    path = write_csv(tmp_path / "dups.csv", rows, HEADER[:6])
    report = import_file(conn, path, key=CLI_KEY, rules=RULES)
    assert (report.inserted, report.duplicates) == (2, 1)
    flagged = dict(
        conn.execute(text("SELECT code, duplicate_of FROM incidents WHERE code LIKE 'IMP-D-%' ORDER BY code")).all()
    )
    assert flagged == {"IMP-D-1": open_case.id, "IMP-D-2": None}


def test_a_chunk_probes_codes_and_duplicates_row_by_row_only_when_one_probe_finds_some_near(
    conn: Connection, tmp_path: Path
) -> None:
    # the chunk's gates (intake._chunk_sql) at their edges: a file of one row spans a single code and time
    open_case = conn.execute(
        text(
            "SELECT id, code, item_code, ST_X(geom) AS lon, ST_Y(geom) AS lat, reported_at FROM incidents"
            " WHERE status = 'handling' ORDER BY code LIMIT 1"
        )
    ).one()
    where = [open_case.item_code, str(open_case.lon), str(open_case.lat)]

    def one_row(code: str, after: timedelta) -> tuple[int, int, list[tuple[int, str]]]:
        row = [code, "patrol", *where, (open_case.reported_at + after).isoformat()]
        path = write_csv(tmp_path / f"{code}.csv", [row], HEADER[:6])
        with conn.begin_nested() as each:  # each file alone beside the stored cases
            report = import_file(conn, path, key=CLI_KEY, rules=RULES, skip_invalid=True)
            each.rollback()
        return report.inserted, report.duplicates, [(e.row, e.error) for e in report.errors]

    assert one_row(open_case.code, timedelta(hours=-30)) == (0, 0, [(1, f"code {open_case.code} already exists")])
    assert one_row("IMP-G-1", timedelta(hours=24)) == (1, 1, [])  # the window's last second, as the row's check
    assert one_row("IMP-G-2", timedelta(hours=24, seconds=1)) == (1, 0, [])
    assert one_row("IMP-G-3", timedelta(hours=-24, seconds=-1)) == (1, 0, [])
    # the least and greatest codes of the file span stored ones: each code is then probed, none is taken
    rows = [["AAA-1", "patrol", *where, "2016-01-01"], ["ZZZ-1", "patrol", *where, "2016-01-02"]]
    report = import_file(conn, write_csv(tmp_path / "span.csv", rows, HEADER[:6]), key=CLI_KEY, rules=RULES)
    assert (report.inserted, report.duplicates, report.invalid) == (2, 0, 0)


def test_geojson_and_geopackage_in_a_projected_crs_and_gcj02_csv(conn: Connection, tmp_path: Path) -> None:
    points = gpd.GeoDataFrame(
        {
            "item_code": ["0508", "0101"],
            "source": ["patrol", "patrol"],
            "reported_at": ["2017-03-15T10:00:00+08:00", "2017-03-15T11:00:00+08:00"],
        },
        geometry=[Point(GRID_1), Point(GRID_2)],
        crs=4326,
    ).to_crs(4544)
    for name in ("cases.geojson", "cases.gpkg"):
        path = tmp_path / name
        points.to_file(path)
        report = import_file(conn, path, key=CLI_KEY, rules=RULES)
        assert (report.rows, report.inserted, report.invalid) == (2, 2, 0), name
    grids = (
        conn.execute(text("SELECT grid_code FROM incidents WHERE code LIKE 'XC20170315-%' ORDER BY reported_at, id"))
        .scalars()
        .all()
    )
    assert grids == ["532601001001001", "532601001001001", "532601001001002", "532601001001002"]

    lon, lat = wgs84_to_gcj02(*GRID_2)
    row = ["MT-GCJ", "media", "0508", str(lon), str(lat), "2017-03-15T10:00:00+08:00"]
    path = write_csv(tmp_path / "gcj.csv", [row], HEADER[:6])
    assert import_file(conn, path, key=CLI_KEY, rules=RULES, crs="gcj02").inserted == 1
    landed = conn.execute(text("SELECT grid_code, ST_X(geom), ST_Y(geom) FROM incidents WHERE code = 'MT-GCJ'")).one()
    assert landed[0] == "532601001001002"
    assert landed[1] == pytest.approx(GRID_2[0], abs=1e-7) and landed[2] == pytest.approx(GRID_2[1], abs=1e-7)


def test_a_file_without_the_needed_columns_is_refused_before_reading_it(conn: Connection, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "short.csv", [["0508", "104.2", "23.3"]], ["item", "x", "y"])
    with pytest.raises(InvalidInput, match=r"lacks column\(s\) reported_at, source"):
        import_file(conn, path, key=CLI_KEY, rules=RULES)
    path = write_csv(tmp_path / "ok.csv", [["0508", *G1, "2017-03-15T10:00:00+08:00"]], ["item", "x", "y", "上报时间"])
    assert import_file(conn, path, key=CLI_KEY, rules=RULES, source="patrol").inserted == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_helper_connections_or_not_the_same_rows_are_refused_and_imported(
    conn: Connection, tmp_path: Path, workers: int
) -> None:
    path = write_csv(tmp_path / "cases.csv", ROWS)
    with pytest.raises(ImportRefused) as refused:
        import_file(conn, path, key=CLI_KEY, rules=RULES, workers=workers)
    assert [(e.row, e.error) for e in refused.value.report.errors] == ERRORS
    before = count(conn)
    report = import_file(conn, path, key=CLI_KEY, rules=RULES, skip_invalid=True, workers=workers)
    assert (report.rows, report.inserted, report.invalid) == (14, 5, 9)
    assert [(e.row, e.error) for e in report.errors] == ERRORS
    assert count(conn) == before + 5


def test_a_file_split_among_helper_connections_is_checked_as_one_file(conn: Connection, tmp_path: Path) -> None:
    # 12,000 rows: three chunks (rows 1-4000, 4001-8000, 8001-12000) on two helper connections
    rows = [
        [f"IMP-P-{n:05d}", "patrol", "0508", *(G1 if n % 2 else G2), "2017-03-15T10:00:00+08:00"]
        for n in range(1, 12_001)
    ]
    rows[9_999][0] = rows[1][0]  # row 10,000 repeats row 2's code (another chunk, another connection)
    rows[6_999][3:5] = ["104.0", "23.0"]  # row 7,000: no grid covers it
    path = write_csv(tmp_path / "many.csv", rows, HEADER[:6])
    before = count(conn)
    report = import_file(conn, path, key=CLI_KEY, rules=RULES, skip_invalid=True, workers=2)
    assert [(e.row, e.error) for e in report.errors] == [
        (2, "code IMP-P-00002 appears 2 times in the file"),
        (7000, "not covered: 44708.5 m from the nearest grid 532601001009007 (check the coordinates and their crs)"),
        (10000, "code IMP-P-00002 appears 2 times in the file"),
    ]
    assert (report.rows, report.inserted, report.invalid) == (12_000, 11_997, 3)
    assert count(conn) == before + 11_997
    stored = conn.execute(
        text("SELECT code, grid_code, grid_member_id FROM incidents WHERE code LIKE 'IMP-P-%' ORDER BY id")
    ).all()
    # ids follow the file's order whichever connection checked the row
    assert [r.code for r in stored] == sorted(r.code for r in stored)
    assert {(r.code[-1] in "13579", r.grid_code, r.grid_member_id) for r in stored} == {
        (True, "532601001001001", "P0395"), (False, "532601001001002", "P0396"),
    }  # fmt: skip


def test_scratch_tables_of_a_rolled_back_import_are_swept_by_the_next(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cases.csv", ROWS[:5])
    with engine.connect() as first:
        with first.begin() as transaction:
            import_file(first, path, key=CLI_KEY, rules=RULES, workers=2)
            transaction.rollback()  # the import's own DROP of its scratch tables is undone with it
        # the file, its repeated codes, its one chunk of ready rows and their keys (no converted coordinates: WGS-84)
        assert sorted(t.split("_", 1)[1] for t in _scratch_tables(first)) == ["code_uses", "keys_0", "raw", "ready_0"]
    with engine.connect() as second, second.begin() as transaction:
        import_file(second, path, key=CLI_KEY, rules=RULES, workers=2)
        assert _scratch_tables(second) == []
        transaction.rollback()


def _scratch_tables(conn: Connection) -> list[str]:
    return list(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'citygrid_import'")).scalars())


def test_every_foreign_key_of_incidents_is_checked_set_based_when_the_row_triggers_are_off(conn: Connection) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        references = _References(cur)
        assert references.set_based  # the tests' database user may set session_replication_role
        assert {(r.table.strings[1], r.column, r.type, r.columns) for r in references.references} == {
            ("catalogue_items", "code", "text", ("item_code",)),
            ("people", "id", "text", ("grid_member_id", "river_chief_id", "street_chief_id")),
        }
        # a ready chunk whose grid member does not exist (as if deleted while the file was being read)
        cur.execute(
            "CREATE TEMP TABLE ready_bad ON COMMIT DROP AS SELECT * FROM (VALUES"
            " (NULL, '0508', 'P0395', 'P0001', NULL), (NULL, '0508', 'P9999', NULL, NULL),"
            " ('a bad row', '9999', 'P8888', NULL, NULL))"
            " AS t (error, item_code, grid_member_id, street_chief_id, river_chief_id)"
        )
        cur.execute(references.distinct_sql(sql.Identifier("ready_bad"), sql.SQL("CREATE TEMP TABLE keys_bad AS ")))
        with pytest.raises(Conflict) as refused:
            references.lock_and_check(cur, sql.Identifier("keys_bad"))
    assert refused.value.detail == {
        "constraints": ["incidents_grid_member_id_fkey", "incidents_river_chief_id_fkey",
                        "incidents_street_chief_id_fkey"],
        "missing": ["P9999"],
    }  # fmt: skip
    assert "people.id P9999, which does not exist" in refused.value.message


def test_a_trigger_the_import_does_not_stand_in_for_keeps_the_row_triggers_on(conn: Connection) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute("SAVEPOINT new_trigger")
        cur.execute(
            "CREATE TRIGGER incidents_someone_else AFTER INSERT ON incidents"
            " FOR EACH STATEMENT EXECUTE FUNCTION citygrid_count_change('citygrid_changes_incidents')"
        )
        assert not _References(cur).set_based  # it would be silenced by session_replication_role = replica
        cur.execute("ALTER TABLE incidents ENABLE ALWAYS TRIGGER incidents_someone_else")
        assert _References(cur).set_based  # fires under replica too
        cur.execute("ROLLBACK TO SAVEPOINT new_trigger")


def test_the_rows_an_import_refers_to_cannot_be_deleted_until_it_ends(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cases.csv", ROWS[:1])  # grid member P0395, item 0508
    with engine.connect() as importer, importer.begin() as transaction:
        assert import_file(importer, path, key=CLI_KEY, rules=RULES).inserted == 1
        with engine.connect() as other, other.begin():
            for locking in ("SELECT FROM people WHERE id = 'P0395' FOR UPDATE NOWAIT",
                            "SELECT FROM catalogue_items WHERE code = '0508' FOR UPDATE NOWAIT"):  # fmt: skip
                with pytest.raises(OperationalError, match="could not obtain lock"), other.begin_nested():
                    other.execute(text(locking))
        transaction.rollback()
