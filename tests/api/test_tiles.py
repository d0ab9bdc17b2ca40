"""Vector tiles and heat cells: what the map loads instead of whole layers."""

from __future__ import annotations

import mapbox_vector_tile
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

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
    assert {f["properties"]["status"] for f in features} <= {
        "investigated", "notice_served", "scheduled", "demolished", "legalised",
    }  # fmt: skip
    filtered = mapbox_vector_tile.decode(
        client.get(f"/v1/tiles/illegal_buildings/{z}/{x}/{y}.pbf", params={"status": "demolished"}).content
    )
    assert len(filtered["illegal_buildings"]["features"]) == demolished


def test_tiles_refuse_unknown_layers_and_impossible_tiles(client: TestClient) -> None:
    assert client.get("/v1/tiles/people/13/6468/3548.pbf").status_code == 404
    bad = client.get("/v1/tiles/stalls/3/9/9.pbf")
    assert bad.status_code == 422
    assert "0 ≤ x, y < 2^z" in bad.json()["message"]


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
