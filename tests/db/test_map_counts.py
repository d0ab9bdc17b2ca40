"""The map counts (migration 0013, spatial.map_counts): always what the incidents hold, through inserts, updates,
deletes, an import, a TRUNCATE and folds; and the same heat cells and H3 counts as counting the points."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import h3
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from api.routers import maps
from spatial import hotspots, map_counts
from spatial.hotspots import Filters
from spatial.intake import ImportRefused, import_file
from spatial.keys import CLI_KEY
from spatial.layers import incidents as incidents_layer
from tests.api.test_tiles import forget_incident_answers
from tests.db.test_import import ROWS, RULES, write_csv

CST = timezone(timedelta(hours=8))
Key = tuple[Any, ...]  # month, H3 cell, heat x, heat y, status, subdistrict, source


def _key(x: float, y: float, reported_at: datetime, status: str, subdistrict: str | None, source: str) -> Key:
    # Worked out here on their own: h3 itself per point, the month in UTC+8 by Python's datetime.
    cell = map_counts.heat_cell(14)
    month = reported_at.astimezone(CST).date().replace(day=1)
    return (month, h3.str_to_int(h3.latlng_to_cell(y, x, 9)), math.floor(x / cell), math.floor(y / cell), status,
            subdistrict, source)  # fmt: skip


def held(conn: Connection) -> dict[Key, int]:
    """Count the incidents themselves by the counts' key."""
    rows = conn.execute(
        text("SELECT ST_X(geom) AS x, ST_Y(geom) AS y, reported_at, status, subdistrict_code, source FROM incidents")
    ).all()
    return dict(Counter(_key(*r) for r in rows))


def kept(conn: Connection) -> dict[Key, int]:
    """Return the counts plus the changes not yet folded."""
    counts: Counter[Key] = Counter()
    for r in conn.execute(text("SELECT * FROM incident_map_counts")):
        assert r.n > 0  # a count that reaches nought is deleted, and none goes below
        counts[(r.month, r.h3, r.gx, r.gy, r.status, r.subdistrict_code, r.source)] += r.n
    changes = conn.execute(
        text("SELECT sign, x, y, reported_at, status, subdistrict_code, source FROM incident_map_changes")
    ).all()
    for sign, *rest in changes:
        counts[_key(*rest)] += sign
    return {k: n for k, n in counts.items() if n}


def changes(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM incident_map_changes")).scalar_one())


def add(conn: Connection, code: str, *, lon: float, lat: float, reported_at: str, status: str = "registered") -> None:
    """Insert an incident like RX2017-000001, at another place and time."""
    conn.execute(
        text(
            "INSERT INTO incidents (code, source, item_code, status, description, reported_at, deferred, geom,"
            " generation, grid_code, community_code, subdistrict_code, outside)"
            " SELECT :code, source, item_code, :status, '', :at, false, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326),"
            " generation, grid_code, community_code, subdistrict_code, outside FROM incidents"
            " WHERE code = 'RX2017-000001'"
        ),
        {"code": code, "status": status, "at": reported_at, "lon": lon, "lat": lat},
    )


def test_the_counts_are_what_the_incidents_hold(conn: Connection) -> None:
    assert kept(conn) == held(conn)
    assert sum(held(conn).values()) == 4746


def test_inserts_updates_and_deletes_are_counted_in_their_own_transaction(conn: Connection) -> None:
    add(conn, "MC-1", lon=104.2441, lat=23.3712, reported_at="2017-03-31T23:30:00+08:00")
    add(conn, "MC-2", lon=104.2442, lat=23.3713, reported_at="2017-04-01T00:00:00+08:00", status="handling")
    conn.execute(text("INSERT INTO incidents SELECT * FROM incidents WHERE false"))  # no rows: no change
    assert kept(conn) == held(conn)
    before = changes(conn)
    conn.execute(text("UPDATE incidents SET item_code = '0101', due_at = now() WHERE code LIKE 'MC-%'"))
    assert changes(conn) == before  # nothing the map counts by changed: nothing written
    conn.execute(
        text("UPDATE incidents SET status = 'feedback', closed_at = NULL, satisfaction = NULL"
             " WHERE code IN ('MC-1', 'RX2017-000002')")
    )  # fmt: skip
    assert changes(conn) == before + 4  # each: -1 as it was, +1 as it is
    conn.execute(text("UPDATE incidents SET geom = ST_SetSRID(ST_MakePoint(104.25, 23.38), 4326) WHERE code = 'MC-2'"))
    conn.execute(text("UPDATE incidents SET reported_at = reported_at + interval '40 days' WHERE code = 'MC-1'"))
    conn.execute(text("UPDATE incidents SET source = 'media', subdistrict_code = NULL WHERE code = 'RX2017-000003'"))
    assert kept(conn) == held(conn)
    conn.execute(text("DELETE FROM incidents WHERE code IN ('MC-2', 'RX2017-000004')"))
    assert kept(conn) == held(conn)


def test_an_import_is_counted(conn: Connection, tmp_path: Path) -> None:
    report = import_file(conn, write_csv(tmp_path / "cases.csv", ROWS[:5]), key=CLI_KEY, rules=RULES)
    assert report.inserted == 5
    assert kept(conn) == held(conn)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_import_adds_its_rows_to_the_counts_itself(engine: Engine, tmp_path: Path, workers: int) -> None:
    # 2 workers: three chunks on helper connections; 1: the caller's own temporary tables. Either way the rows
    # reach the counts in the import's transaction, with no change row each (migration 0014), and a row whose
    # code the file repeats (refused, --skip-invalid) is not counted.
    n = 12_000
    rows = [[f"MC-IMP-{k:05d}", *ROWS[k % 5][1:]] for k in range(n)] + [[f"MC-IMP-{n - 1:05d}", *ROWS[0][1:]]]
    map_counts.fold(engine)
    try:
        with engine.begin() as conn:
            before = changes(conn)
            report = import_file(
                conn, write_csv(tmp_path / "many.csv", rows), key=CLI_KEY, rules=RULES, skip_invalid=True,
                workers=workers,
            )  # fmt: skip
            assert (report.inserted, report.invalid) == (n - 1, 2)
            assert changes(conn) == before
            assert kept(conn) == held(conn)
            assert "map_counts" in report.seconds
            add(conn, "MC-IMP-AFTER", lon=104.2441, lat=23.3712, reported_at="2017-03-31T23:30:00+08:00")
            assert changes(conn) == before + 1  # the import's setting ends with it
        with engine.connect() as conn:
            assert kept(conn) == held(conn)
            counted = sum(kept(conn).values())
        with pytest.raises(ImportRefused), engine.begin() as conn:
            import_file(conn, write_csv(tmp_path / "bad.csv", [[*ROWS[0][:1], "nowhere", *ROWS[0][2:]]]),
                        key=CLI_KEY, rules=RULES)  # fmt: skip
        with engine.connect() as conn:
            assert sum(kept(conn).values()) == counted
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM incidents WHERE code LIKE 'MC-IMP-%'"))
        map_counts.fold(engine)


def test_a_truncate_empties_the_counts(conn: Connection) -> None:
    conn.execute(text("TRUNCATE incidents CASCADE"))
    assert kept(conn) == held(conn) == {}
    assert conn.execute(text("SELECT count(*) FROM incident_map_counts")).scalar_one() == 0


def test_a_fold_moves_committed_changes_into_the_counts(engine: Engine) -> None:
    map_counts.fold(engine)
    with engine.connect() as conn:
        start = dict(conn.execute(text("SELECT (c.*)::text, n FROM incident_map_counts c")).all())
        was = conn.execute(
            text("SELECT status, closed_at, satisfaction FROM incidents WHERE code = 'RX2017-000005'")
        ).one()
    assert was.status != "rejected"
    try:
        with engine.begin() as conn:
            add(conn, "MC-F1", lon=104.2443, lat=23.3714, reported_at="2017-05-20T10:00:00+08:00")
            conn.execute(
                text("UPDATE incidents SET status = 'rejected', closed_at = NULL, satisfaction = NULL"
                     " WHERE code IN ('RX2017-000005', 'MC-F1')")
            )  # fmt: skip
        with engine.connect() as conn:
            assert changes(conn) == 5
        assert map_counts.fold(engine) == 5
        with engine.connect() as conn:
            assert changes(conn) == 0
            assert kept(conn) == held(conn)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM incidents WHERE code = 'MC-F1'"))
            conn.execute(
                text(
                    "UPDATE incidents SET status = :s, closed_at = :c, satisfaction = :f WHERE code = 'RX2017-000005'"
                ),
                {"s": was.status, "c": was.closed_at, "f": was.satisfaction},
            )
    with engine.connect() as conn:
        assert kept(conn) == held(conn)
    map_counts.fold(engine)
    with engine.connect() as conn:
        assert dict(conn.execute(text("SELECT (c.*)::text, n FROM incident_map_counts c")).all()) == start


def test_a_fold_under_way_elsewhere_is_left_to_it(engine: Engine) -> None:
    with engine.begin() as other:
        other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": map_counts._FOLD_LOCK})
        assert map_counts.fold(engine) == 0


FILTERS = [
    Filters(),
    Filters(source="hotline"),
    Filters(status="closed", subdistrict="532601002"),
    Filters(date_from=datetime(2017, 3, 1, tzinfo=CST), date_to=datetime(2017, 5, 1, tzinfo=CST)),
    Filters(date_from=datetime(2017, 1, 1, tzinfo=CST), date_to=datetime(2017, 7, 1, tzinfo=CST), source="media"),
    Filters(date_to=datetime(2017, 4, 1, tzinfo=CST), status="closed"),
]
VIEWS = [
    (104.235, 23.355, 104.262, 23.383),  # cuts the city: the edges are counted from the incidents
    (104.1891, 23.335557, 104.298964, 23.406467),  # the map's first view
    (104.24, 23.37, 104.2401, 23.3701),  # smaller than a cell: no cell wholly inside
    (100.0, 20.0, 110.0, 30.0),
]


def _as_counted(cells: list[list[Any]]) -> list[tuple[float, float, int]]:
    return sorted((float(lat), float(lon), int(n)) for lat, lon, n in cells)  # /v1/heat's SQL gives Decimal


@pytest.mark.parametrize("filters", FILTERS)
def test_read_counts_what_counting_the_points_counts(conn: Connection, filters: Filters) -> None:
    # Changes not folded yet (this transaction's own), at a view's edge and in its middle, count too.
    add(conn, "MC-R1", lon=104.2350001, lat=23.37, reported_at="2017-03-15T10:00:00+08:00")
    add(conn, "MC-R2", lon=104.245, lat=23.37, reported_at="2017-04-15T10:00:00+08:00", status="handling")
    conn.execute(text("DELETE FROM incidents WHERE code = 'RX2017-000006'"))
    assert map_counts.serves(filters, zoom=14, cell="h3:9")
    where, params = filters.where()
    points = hotspots.read_points(conn, filters)
    assert map_counts.read(conn, filters).h3 == hotspots.count_points_per_cell(points.lat, points.lon, 9)
    for view in VIEWS:
        for zoom in (14, 13, 11, 7, 0):
            heat = map_counts.read(conn, filters, h3_cells=False, view=view, zoom=zoom).heat
            assert heat is not None
            expected = incidents_layer.heat(conn, bbox=view, zoom=zoom, where=where, params=params)
            assert _as_counted(heat) == _as_counted(expected), (view, zoom)


def test_only_whole_months_and_the_kept_columns_are_served() -> None:
    assert map_counts.months(Filters()) == (None, None)
    first = datetime(2017, 1, 1, tzinfo=CST)
    assert map_counts.months(Filters(date_from=first)) == (first.date(), None)
    # 2016-12-31T16:00Z is 2017-01-01 00:00 in UTC+8
    assert map_counts.months(Filters(date_to=datetime(2016, 12, 31, 16, tzinfo=UTC))) == (None, first.date())
    assert map_counts.months(Filters(date_from=datetime(2017, 1, 1, tzinfo=UTC))) is None
    assert map_counts.months(Filters(date_from=datetime(2017, 1, 2, tzinfo=CST))) is None
    assert map_counts.months(Filters(date_from=datetime(2017, 1, 1))) is None  # no zone
    assert map_counts.months(Filters(item="0508")) is None
    assert map_counts.months(Filters(category="05")) is None
    assert map_counts.serves(Filters(), zoom=14, cell="h3:9")
    assert not map_counts.serves(Filters(), zoom=15)
    assert not map_counts.serves(Filters(), cell="h3:8")
    assert not map_counts.serves(Filters(), cell="grid")


def test_the_maps_first_answer_is_the_one_counted_from_the_points(client: TestClient, engine: Engine) -> None:
    params = {"from": "2017-01-01T00:00:00+08:00", "to": "2017-07-01T00:00:00+08:00",
              "bbox": "104.235000,23.355000,104.262000,23.383000", "zoom": 14, "cell": "h3:9"}  # fmt: skip
    forget_incident_answers(engine)
    answer = client.get("/v1/map/incidents", params=params)
    assert answer.status_code == 200
    filters = Filters(date_from=datetime(2017, 1, 1, tzinfo=CST), date_to=datetime(2017, 7, 1, tzinfo=CST))
    view = (104.235, 23.355, 104.262, 23.383)
    forget_incident_answers(engine)
    with engine.connect() as conn:
        points = hotspots.read_points(conn, filters, view=view)  # as the map's answer was made before 0013
        heat = maps._heat_json(conn, filters, view, 14, points)
        found = hotspots.analyse(conn, filters, cell="h3:9", generation=1, points=points)
    assert answer.content == b'{"heat":' + heat + b',"hotspots":' + maps._json(found) + b"}"
