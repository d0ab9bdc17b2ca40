"""The API skeleton: health, OpenAPI docs, and read-only GeoJSON layers with bbox and paging."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

# The bounding box of the fixture's north-eastern quarter, and what falls in it (from the fixture).
NE_BBOX = "104.244,23.371,104.30,23.40"


def test_health_reports_database_and_postgis_versions(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["postgres"].startswith("15.")
    assert body["database"]["postgis"].startswith("3.")


def test_openapi_docs_are_served(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    # everything the page loads comes from this server (a city's network may have no way to a CDN)
    loads = re.findall(r"""(?:src|href)=["']([^"']+)""", docs.text) + re.findall(r"url: *'([^']+)'", docs.text)
    assert sorted(loads) == [
        "/openapi.json",
        "/static/vendor/swagger-ui-dist/favicon-32x32.png",
        "/static/vendor/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui-dist/swagger-ui.css",
    ]
    assert all(client.get(url).status_code == 200 for url in loads)
    assert client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json").json()
    assert "/v1/layers/{name}" in spec["paths"]
    assert "/health" in spec["paths"]


def test_layer_list_has_chinese_and_english_labels(client: TestClient) -> None:
    layers = {layer["name"]: layer for layer in client.get("/v1/layers").json()}
    assert layers["grids"]["label_zh"] == "网格"
    assert layers["illegal_buildings"]["label_en"] == "Illegal buildings"
    assert "people" not in layers  # phone numbers are not a public layer


def test_grids_layer_has_193_features(client: TestClient) -> None:
    response = client.get("/v1/layers/grids")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert "crs" not in body
    assert (body["numberMatched"], body["numberReturned"]) == (193, 193)
    first = body["features"][0]
    assert first["id"] == "532601001001001"
    assert first["properties"] == {
        "code": "532601001001001",
        "name": "东风社区第1网格",
        "community_code": "532601001001",
        "generation": 1,
    }
    assert first["geometry"]["type"] == "MultiPolygon"
    lon, lat = first["geometry"]["coordinates"][0][0][0]
    assert 104.1 < lon < 104.4 and 23.3 < lat < 23.5  # lon, lat order (RFC 7946)


def test_paging_follows_next_links_to_every_feature(client: TestClient) -> None:
    url = "/v1/layers/illegal_buildings?limit=300"
    codes: list[str] = []
    pages = 0
    while url:
        body = client.get(url).json()
        codes += [f["id"] for f in body["features"]]
        pages += 1
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), "")
    assert pages == 3
    assert len(codes) == len(set(codes)) == 823


def test_bbox_filters_features(client: TestClient, engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM stalls"
                " WHERE ST_Intersects(geom, ST_MakeEnvelope(104.244, 23.371, 104.30, 23.40, 4326))"
            )
        ).scalar_one()
    body = client.get(f"/v1/layers/stalls?bbox={NE_BBOX}&limit=10000").json()
    assert body["numberMatched"] == expected
    assert len(body["features"]) == expected
    assert all(104.244 <= f["geometry"]["coordinates"][0] <= 104.30 for f in body["features"])
    assert 0 < expected < 1620


def test_unknown_layer_is_404_naming_the_known_ones(client: TestClient) -> None:
    response = client.get("/v1/layers/buildings")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert "illegal_buildings" in body["message"]


def test_people_are_not_published(client: TestClient) -> None:
    assert client.get("/v1/layers/people").status_code == 404


def test_bad_bbox_says_how_to_fix_it(client: TestClient) -> None:
    response = client.get("/v1/layers/grids?bbox=104.3,23.4,104.2")
    assert response.status_code == 422
    assert "west,south,east,north" in response.json()["message"]
    swapped = client.get("/v1/layers/grids?bbox=104.30,23.40,104.20,23.30")
    assert swapped.status_code == 422
    assert "west > east" in swapped.json()["message"]


def test_limit_above_the_maximum_is_refused(client: TestClient) -> None:
    response = client.get("/v1/layers/incidents?limit=20000")
    assert response.status_code == 422
    assert "maximum page size 10000" in response.json()["message"]
    assert client.get("/v1/layers/incidents?limit=0").status_code == 422


def test_a_boundary_generation_that_does_not_exist_is_a_404_naming_those_that_do(client: TestClient) -> None:
    missing = client.get("/v1/layers/grids", params={"generation": 2})
    assert missing.status_code == 404
    assert missing.json()["message"] == "no boundary generation 2; the generations are 1"
    first = client.get("/v1/layers/grids", params={"generation": 1, "limit": 1})
    assert first.status_code == 200 and first.json()["numberMatched"] == 193
