"""Vector tiles and heat cells: what the map loads instead of whole layers."""

from __future__ import annotations

import gzip
from datetime import datetime

import mapbox_vector_tile
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.main import create_app
from api.routers import maps
from spatial import hotspots
from spatial.changes import SharedCache
from spatial.layers import incidents as incidents_layer
from spatial.settings import Settings
from tests.support import buildings_in_tile

CITY_TILE = (13, 6468, 3548)  # the zoom-13 tile holding the city centre (104.244 E, 23.371 N)


def test_building_tile_holds_the_footprints_of_its_area(client: TestClient, engine: Engine) -> None:
    z, x, y = CITY_TILE
    response = client.get(f"/v1/tiles/illegal_buildings/{z}/{x}/{y}.pbf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    decoded = mapbox_vector_tile.decode(response.content)
    features = decoded["illegal_buildings"]["features"]
    with engine.connect() as conn:
        expected = buildings_in_tile(conn, z, x, y)
        demolished = buildings_in_tile(conn, z, x, y, status="demolished")
    assert len(features) == expected
    # Zoom 13: each footprint is drawn as its bounding box, sent as the box's diagonal.
    assert {(f["geometry"]["type"], len(f["geometry"]["coordinates"])) for f in features} == {("LineString", 2)}
    assert {f["properties"]["status"] for f in features} <= {
        "investigated", "notice_served", "scheduled", "demolished", "legalised",
    }  # fmt: skip
    filtered = mapbox_vector_tile.decode(
        client.get(f"/v1/tiles/illegal_buildings/{z}/{x}/{y}.pbf", params={"status": "demolished"}).content
    )
    assert len(filtered["illegal_buildings"]["features"]) == demolished


def test_building_tiles_carry_details_from_zoom_16(client: TestClient, engine: Engine) -> None:
    overview = mapbox_vector_tile.decode(client.get("/v1/tiles/illegal_buildings/13/6468/3548.pbf").content)
    assert {tuple(sorted(f["properties"])) for f in overview["illegal_buildings"]["features"]} == {("status",)}
    x, y = 6468 * 8 + 3, 3548 * 8 + 4  # a zoom-16 tile inside the city tile
    detail = mapbox_vector_tile.decode(client.get(f"/v1/tiles/illegal_buildings/16/{x}/{y}.pbf").content)
    features = detail["illegal_buildings"]["features"]
    assert {f["geometry"]["type"] for f in features} == {"Polygon"}
    with engine.connect() as conn:
        assert len(features) == buildings_in_tile(conn, 16, x, y) > 0
        codes = {f["properties"]["code"]: f["properties"] for f in features}
        rows = conn.execute(
            text("SELECT code, status, floors, round(footprint_m2::numeric, 1) FROM illegal_buildings"
                 " WHERE code = ANY(:codes)"),
            {"codes": list(codes)},
        ).all()  # fmt: skip
    assert {r.code: (r.status, r.floors, float(r.round)) for r in rows} == {
        code: (p["status"], p["floors"], p["footprint_m2"]) for code, p in codes.items()
    }


def test_tiles_refuse_unknown_layers_and_impossible_tiles(client: TestClient) -> None:
    assert client.get("/v1/tiles/people/13/6468/3548.pbf").status_code == 404
    bad = client.get("/v1/tiles/stalls/3/9/9.pbf")
    assert bad.status_code == 422
    assert "0 ≤ x, y < 2^z" in bad.json()["message"]


def test_tile_filters_are_read_as_the_exports_read_them(client: TestClient) -> None:
    z, x, y = CITY_TILE

    def incidents(**params: str) -> int:
        response = client.get(f"/v1/tiles/incidents/{z}/{x}/{y}.pbf", params=params)
        assert response.status_code == 200, response.text
        return len(mapbox_vector_tile.decode(response.content)["incidents"]["features"])

    assert incidents() == 1911
    for subdistrict in ("532601001", "开化", "开化街道", "Kaihua"):
        assert incidents(subdistrict=subdistrict) == 146, subdistrict
    bogus = client.get("/v1/tiles/illegal_buildings/14/12937/7098.pbf", params={"status": "bogus"})
    assert bogus.status_code == 422
    assert bogus.json()["message"] == (
        "status 'bogus' is not one of: discovered, investigated, notice_served, scheduled, demolished, legalised"
    )
    case_status = client.get(f"/v1/tiles/incidents/{z}/{x}/{y}.pbf", params={"status": "demolished"})
    assert case_status.status_code == 422
    assert "closed" in case_status.json()["message"]
    stalls = client.get(f"/v1/tiles/stalls/{z}/{x}/{y}.pbf", params={"status": "closed"})
    assert stalls.status_code == 422
    assert stalls.json()["message"] == "stalls have no status: leave out status"
    nowhere = client.get(f"/v1/tiles/incidents/{z}/{x}/{y}.pbf", params={"subdistrict": "nowhere"})
    assert nowhere.status_code == 422
    assert nowhere.json()["message"].startswith("subdistrict 'nowhere' matches no subdistrict")


def test_heat_cells_add_up_to_the_incidents_in_view(client: TestClient, engine: Engine) -> None:
    params = {"bbox": "104.20,23.33,104.29,23.41", "zoom": 14, "source": "hotline", "category": "05"}
    body = client.get("/v1/heat", params=params).json()
    with engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM incidents WHERE geom && ST_MakeEnvelope(104.20, 23.33, 104.29, 23.41, 4326)"
                " AND source = 'hotline' AND item_code LIKE '05%'"
            )
        ).scalar_one()
    assert body["total"] == expected
    assert sum(c[2] for c in body["cells"]) == expected
    assert len(body["cells"]) < expected  # cells, not points


def test_cached_heat_follows_a_change_at_once(client: TestClient, engine: Engine) -> None:
    params = {"bbox": "104.20,23.33,104.29,23.41", "zoom": 14, "source": "media"}
    before = client.get("/v1/heat", params=params).json()["total"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE incidents SET source = 'media' WHERE code = 'RX2017-000001'"))
    try:
        assert client.get("/v1/heat", params=params).json()["total"] == before + 1
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE incidents SET source = 'hotline' WHERE code = 'RX2017-000001'"))
    assert client.get("/v1/heat", params=params).json()["total"] == before


HEAT = {"bbox": "104.20,23.33,104.29,23.41", "zoom": 13}
HEAT_KEY = "[104.2,23.33,104.29,23.41,13,%"  # how SharedCache writes the key of HEAT


def stored_heat(engine: Engine) -> list[tuple[int, bytes]]:
    with engine.connect() as conn:
        version = conn.execute(text("SELECT last_value FROM citygrid_changes_incidents")).scalar_one()
        rows = conn.execute(
            text("SELECT version, body FROM citygrid_cache.derived WHERE kind = 'heat' AND key LIKE :key"),
            {"key": HEAT_KEY},
        ).all()
    return [(int(v), gzip.decompress(b)) for v, b in rows if v == version]  # kept gzip-compressed


def test_heat_is_shared_through_the_database(client: TestClient, settings: Settings, engine: Engine) -> None:
    first = client.get("/v1/heat", params=HEAT)
    assert first.status_code == 200
    assert [body for _, body in stored_heat(engine)] == [first.content]
    # Another worker (its own empty process cache) answers from the table: mark the stored body to see it.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE citygrid_cache.derived SET body = :body WHERE kind = 'heat' AND key LIKE :key"),
            {"body": gzip.compress(b'{"cells":[],"total":-1}'), "key": HEAT_KEY},
        )
    maps._HEAT.local.entries.clear()
    with TestClient(create_app(settings)) as other_worker:
        assert other_worker.get("/v1/heat", params=HEAT).json() == {"cells": [], "total": -1}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM citygrid_cache.derived WHERE kind = 'heat'"))
    maps._HEAT.local.entries.clear()
    assert client.get("/v1/heat", params=HEAT).content == first.content


def test_heat_computed_while_incidents_are_written_is_not_kept(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM citygrid_cache.derived WHERE kind = 'heat'"))
    maps._HEAT.local.entries.clear()
    with engine.connect() as writer:
        transaction = writer.begin()
        writer.execute(text("UPDATE incidents SET source = 'media' WHERE code = 'RX2017-000001'"))
        # The counter has moved, the change is not committed: the answer is right now but may not be kept.
        answer = client.get("/v1/heat", params=HEAT).json()
        assert stored_heat(engine) == []
        transaction.rollback()
    assert client.get("/v1/heat", params=HEAT).json() == answer
    assert len(stored_heat(engine)) == 1


def test_map_data_is_sent_gzip_compressed_to_clients_that_accept_it(client: TestClient) -> None:
    z, x, y = CITY_TILE
    for path, params in ((f"/v1/tiles/illegal_buildings/{z}/{x}/{y}.pbf", {}), ("/v1/heat", HEAT)):
        compressed = client.get(path, params=params, headers={"Accept-Encoding": "gzip"})
        plain = client.get(path, params=params, headers={"Accept-Encoding": "identity"})
        assert compressed.headers["content-encoding"] == "gzip"
        assert "content-encoding" not in plain.headers
        assert compressed.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
        assert compressed.content == plain.content  # httpx inflates the gzip body
        assert int(compressed.headers["content-length"]) < len(plain.content)


def test_a_kind_keeps_at_most_max_bytes_newest_first(engine: Engine) -> None:
    cache = SharedCache("test-trim", "stalls", max_bytes=10_000)
    bodies = {n: np.random.default_rng(n).bytes(1_000) for n in range(64)}  # random: gzip cannot shrink them
    try:
        with engine.connect() as conn:
            for n, body in bodies.items():
                assert cache.get(conn, n, lambda body=body: body) == body
        with engine.connect() as conn:
            kept = conn.execute(
                text("SELECT key FROM citygrid_cache.derived WHERE kind = 'test-trim' ORDER BY computed_at, key")
            ).scalars()
            # The 64th store trims the kind to 10,000 bytes: the newest nine bodies of 1,000 (+ gzip's 23) stay.
            assert sorted(int(key) for key in kept) == list(range(55, 64))
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM citygrid_cache.derived WHERE kind = 'test-trim'"))


def forget_incident_answers(engine: Engine) -> None:
    """Forget every kept heat and hotspot answer, in the table and in this process."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM citygrid_cache.derived WHERE kind IN ('heat', 'hotspots', 'map_incidents')"))
    for cache in (maps._HEAT.local, maps._HOTSPOTS.local, maps._MAP_INCIDENTS.local, hotspots._ANALYSES,
                  incidents_layer._HEAT):  # fmt: skip
        cache.entries.clear()


@pytest.mark.parametrize(
    ("filters", "zoom"),
    [
        ({}, 11),
        ({"source": "hotline"}, 15),
        ({"category": "05", "from": "2017-03-01T00:00:00+08:00", "to": "2017-05-01T00:00:00+08:00"}, 19),
        ({"status": "closed", "subdistrict": "532601002"}, 22),
    ],
)
def test_map_incidents_equal_heat_and_hotspots_asked_apart(
    client: TestClient, engine: Engine, filters: dict[str, str], zoom: int
) -> None:
    # A view that cuts the city: which incidents count at its edges is decided by PostgreSQL's && both ways.
    view = {"bbox": "104.235,23.355,104.262,23.383", "zoom": zoom}
    forget_incident_answers(engine)
    together = client.get("/v1/map/incidents", params={**filters, **view})
    assert together.status_code == 200
    both = together.json()
    forget_incident_answers(engine)
    heat = client.get("/v1/heat", params={**filters, **view}).json()
    hot = client.get("/v1/hotspots", params={**filters, "cell": "h3:9"}).json()
    where, params = hotspots.Filters(
        item=None, category=filters.get("category"), subdistrict=filters.get("subdistrict"),
        source=filters.get("source"), status=filters.get("status"),
        date_from=datetime.fromisoformat(filters["from"]) if "from" in filters else None,
        date_to=datetime.fromisoformat(filters["to"]) if "to" in filters else None,
    ).where()  # fmt: skip
    with engine.connect() as conn:
        in_view = conn.execute(
            text(f"SELECT count(*) FROM incidents i WHERE {where} AND i.geom && ST_MakeEnvelope(104.235, 23.355,"
                 " 104.262, 23.383, 4326)"),
            params,
        ).scalar_one()  # fmt: skip
    assert both["heat"]["total"] == heat["total"] == in_view > 0
    assert sorted(map(tuple, both["heat"]["cells"])) == sorted(map(tuple, heat["cells"]))
    assert both["hotspots"] == hot
    # Asked again, the answer is kept whole for every worker, and asked once more it is what was kept.
    again = client.get("/v1/map/incidents", params={**filters, **view}).json()
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM citygrid_cache.derived WHERE kind = 'map_incidents'"))
        assert kept.scalar_one() == 1
    assert again == both == client.get("/v1/map/incidents", params={**filters, **view}).json()
