"""OGC API – Features at /ogc: tipg mounted with our catalogue, Part 2 CRS, and real clients reading it.

GDAL's OAPIF driver (through pyogrio) and OWSLib read the API over HTTP from a live server and must get
the database's counts, attributes and coordinates, in CRS84/EPSG:4326 and in EPSG:4544.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import mapbox_vector_tile
import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV30SpecValidator
from owslib.ogcapi.features import Features
from sqlalchemy import Engine, text

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
PUBLIC = [
    "subdistricts", "communities", "grids", "streets", "rivers", "squads", "markets", "stalls", "illegal_buildings",
    "operations", "incidents",
]  # fmt: skip
# A 1 km square in EPSG:4544 (easting 422–423 km, northing 2584–2585 km) in the fixture city's south.
SQUARE_4544 = (422_000.0, 2_584_000.0, 423_000.0, 2_585_000.0)


@pytest.fixture(scope="module")
def server(live_server: str) -> str:
    """The live API's OGC root: GDAL and OWSLib speak HTTP, and pyogrio holds the GIL while GDAL reads."""
    return live_server + "/ogc"


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def buildings(engine: Engine) -> dict[str, Any]:
    query = "SELECT *, ST_AsText(geom) AS wkt, ST_AsText(ST_Transform(geom, 4544)) AS wkt_4544 FROM illegal_buildings"
    return {row.code: row for row in rows(engine, query)}


# --- the API itself ------------------------------------------------------------------------------------


def test_landing_page_links_to_our_openapi_and_conformance(client: TestClient) -> None:
    body = client.get("/ogc/").json()
    links = {link["rel"]: link["href"] for link in body["links"] if not link.get("templated")}
    assert links["service-desc"] == "http://testserver/ogc/api"
    assert links["conformance"] == "http://testserver/ogc/conformance"
    assert links["data"] == "http://testserver/ogc/collections"
    assert "文山市" in body["title"]


def test_conformance_declares_part_2_crs(client: TestClient) -> None:
    classes = client.get("/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in classes
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in classes


def test_collections_are_the_public_layers_with_their_crs(client: TestClient) -> None:
    body = client.get("/ogc/collections").json()
    assert [c["id"] for c in body["collections"]] == PUBLIC  # people and duties (phones) are not published
    assert body["numberMatched"] == 11
    for collection in body["collections"]:
        assert collection["crs"] == [CRS84, EPSG + "4326", EPSG + "4490", EPSG + "4544"]
        assert collection["storageCrs"] == CRS84
    grids = client.get("/ogc/collections/grids").json()
    assert grids["title"] == "网格 Grids"
    assert grids["storageCrs"] == CRS84
    west, south, east, north = grids["extent"]["spatial"]["bbox"][0]
    assert 104.2 < west < east < 104.3 and 23.3 < south < north < 23.4
    assert "tiles" in {link["href"].rsplit("/", 1)[-1] for link in grids["links"]}
    assert all(link["href"].startswith("http://testserver/ogc/") for link in grids["links"])
    interval = client.get("/ogc/collections/illegal_buildings").json()["extent"]["temporal"]["interval"][0]
    assert interval[0].startswith("2016-") and interval[1].startswith("2017-")


def test_unknown_collection_is_404_naming_the_collections(client: TestClient) -> None:
    response = client.get("/ogc/collections/people/items")
    assert response.status_code == 404
    assert "illegal_buildings" in response.json()["message"]


def test_items_page_with_next_links_to_every_feature(client: TestClient) -> None:
    url = "/ogc/collections/illegal_buildings/items?limit=300"
    codes: list[str] = []
    while url:
        body = client.get(url).json()
        assert body["numberMatched"] == 823
        codes += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), "")
    assert len(codes) == len(set(codes)) == 823


def test_grids_are_the_generation_in_force(client: TestClient) -> None:
    body = client.get("/ogc/collections/grids/items?limit=1000").json()
    assert body["numberMatched"] == 193
    item = client.get("/ogc/collections/grids/items/532601001001001").json()
    assert item["properties"] == {
        "code": "532601001001001", "name": "东风社区第1网格", "community_code": "532601001001", "generation": 1,
    }  # fmt: skip


def test_property_filter_and_cql2(client: TestClient, engine: Engine) -> None:
    demolished = client.get("/ogc/collections/illegal_buildings/items?status=demolished&limit=1").json()
    assert demolished["numberMatched"] == 448
    expected = rows(engine, "SELECT count(*) FROM illegal_buildings WHERE status = 'demolished' AND floors >= 2")[0][0]
    cql = client.get(
        "/ogc/collections/illegal_buildings/items",
        params={"filter": "status = 'demolished' AND floors >= 2", "filter-lang": "cql2-text", "limit": 1},
    ).json()
    assert cql["numberMatched"] == expected
    bad = client.get("/ogc/collections/illegal_buildings/items", params={"filter": "status ==== 'x'"})
    assert bad.status_code == 400
    assert "not valid CQL2" in bad.json()["message"]
    unknown = client.get("/ogc/collections/illegal_buildings/items", params={"filter": "colour = 'red'"})
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["message"]


def test_datetime_filters_on_the_layers_moment(client: TestClient, engine: Engine) -> None:
    expected = rows(
        engine,
        "SELECT count(*) FROM illegal_buildings WHERE discovered_at >= '2017-01-01' AND discovered_at < '2017-04-01'",
    )[0][0]
    body = client.get(
        "/ogc/collections/illegal_buildings/items",
        params={"datetime": "2017-01-01T00:00:00+08:00/2017-04-01T00:00:00+08:00", "limit": 1},
    ).json()
    assert body["numberMatched"] == expected
    assert 0 < expected < 823


def test_bbox_in_crs84_in_4326_and_in_4544(client: TestClient, engine: Engine) -> None:
    lonlat = rows(
        engine,
        "SELECT count(*) FROM stalls WHERE ST_Intersects(geom, ST_MakeEnvelope(104.244, 23.371, 104.30, 23.40, 4326))",
    )[0][0]
    crs84 = client.get("/ogc/collections/stalls/items?bbox=104.244,23.371,104.30,23.40&limit=1").json()
    assert crs84["numberMatched"] == lonlat
    # EPSG:4326 is latitude first: the same box written in its own axis order.
    latlon = client.get(
        "/ogc/collections/stalls/items",
        params={"bbox": "23.371,104.244,23.40,104.30", "bbox-crs": EPSG + "4326", "limit": 1},
    ).json()
    assert latlon["numberMatched"] == lonlat
    # EPSG:4544 is northing first; the rectangle is exact in 4544, not its lon/lat envelope.
    west, south, east, north = SQUARE_4544
    projected = rows(
        engine,
        "SELECT count(*) FROM illegal_buildings"
        " WHERE ST_Intersects(ST_Transform(geom, 4544), ST_MakeEnvelope(:w, :s, :e, :n, 4544))",
        w=west, s=south, e=east, n=north,
    )[0][0]  # fmt: skip
    body = client.get(
        "/ogc/collections/illegal_buildings/items",
        params={"bbox": f"{south},{west},{north},{east}", "bbox-crs": EPSG + "4544", "limit": 1000},
    ).json()
    assert body["numberMatched"] == projected == 10
    swapped = client.get(
        "/ogc/collections/illegal_buildings/items", params={"bbox": "104.2,23.3,104.3,23.4", "bbox-crs": "EPSG:4326"}
    )
    assert swapped.status_code == 400
    assert "axis order" in swapped.json()["message"]


def test_output_crs_uses_the_authority_axis_order(client: TestClient, engine: Engine) -> None:
    row = rows(
        engine,
        "SELECT ST_X(p) AS x, ST_Y(p) AS y, ST_X(q) AS e, ST_Y(q) AS n FROM (SELECT ST_PointN(ST_ExteriorRing(geom), 1)"
        " AS p, ST_PointN(ST_ExteriorRing(ST_Transform(geom, 4544)), 1) AS q FROM illegal_buildings"
        " WHERE code = 'WJ0001') t",
    )[0]
    cases = {
        None: (row.x, row.y, CRS84),
        EPSG + "4326": (row.y, row.x, EPSG + "4326"),
        "EPSG:4490": (row.y, row.x, EPSG + "4490"),
        EPSG + "4544": (row.n, row.e, EPSG + "4544"),
    }
    for crs, (first, second, uri) in cases.items():
        response = client.get("/ogc/collections/illegal_buildings/items/WJ0001", params={"crs": crs} if crs else {})
        assert response.status_code == 200
        assert response.headers["content-crs"] == f"<{uri}>"
        body = response.json()
        assert "crs" not in body and "crs" not in body["geometry"]
        x, y = body["geometry"]["coordinates"][0][0]
        assert math.isclose(x, first, abs_tol=1e-6) and math.isclose(y, second, abs_tol=1e-6)
    unsupported = client.get("/ogc/collections/grids/items", params={"crs": "EPSG:3857"})
    assert unsupported.status_code == 400
    assert EPSG + "4544" in unsupported.json()["message"]


def test_cql2_bbox_is_lon_lat_on_every_layer(client: TestClient, engine: Engine) -> None:
    # BBOX(...) is ST_MakeEnvelope without an SRID, which PostGIS refused to compare with the stored geometries.
    envelope = "ST_MakeEnvelope(104.24, 23.37, 104.25, 23.38, 4326)"
    stalls = client.get(
        "/ogc/collections/stalls/items", params={"filter": "S_INTERSECTS(geom, BBOX(104.24,23.37,104.25,23.38))"}
    )
    assert stalls.status_code == 200
    assert stalls.json()["numberMatched"] == rows(engine, f"SELECT count(*) FROM stalls WHERE geom && {envelope}")[0][0]
    assert stalls.json()["numberMatched"] == 26
    grids = client.get(
        "/ogc/collections/grids/items", params={"filter": "S_INTERSECTS(geom, BBOX(104.24,23.37,104.25,23.38))"}
    )
    assert grids.status_code == 200
    assert grids.json()["numberMatched"] == 15


def test_unexpected_database_errors_are_logged(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    import asyncpg
    from starlette.requests import Request

    from api.ogc import build_app

    handler = build_app(settings).exception_handlers[asyncpg.PostgresError]
    scope = {
        "type": "http", "method": "GET", "path": "/collections/stalls/items", "query_string": b"filter=x",
        "headers": [], "server": ("testserver", 80), "scheme": "http", "root_path": "",
    }  # fmt: skip
    error = asyncpg.exceptions.InternalServerError("ST_Intersects: Operation on mixed SRID geometries")
    with caplog.at_level("ERROR", logger="api.ogc"):
        response = handler(Request(scope), error)
    assert response.status_code == 500
    [record] = caplog.records
    assert "SQLSTATE XX000" in record.getMessage() and "/collections/stalls/items?filter=x" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is error


def test_malformed_datetime_is_400_saying_what_a_datetime_is(client: TestClient) -> None:
    for value in ("garbage", "2017-01-01", "../..", "2017-01-01T00:00:00Z/2017-02-01T00:00:00Z/x"):
        response = client.get("/ogc/collections/incidents/items", params={"datetime": value})
        assert response.status_code == 400, value
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["code"] == "invalid_input"
        assert "e.g. 2017-03-01T00:00:00+08:00" in body["message"], value
    backwards = client.get(
        "/ogc/collections/incidents/items", params={"datetime": "2017-04-01T00:00:00Z/2017-01-01T00:00:00Z"}
    )
    assert backwards.status_code == 400
    assert backwards.json()["message"].endswith("starts after it ends: swap the two")
    tile = client.get("/ogc/collections/incidents/tiles/WebMercatorQuad/15/25868/14197", params={"datetime": "x"})
    assert tile.status_code == 400


def test_tiles_outside_the_tile_matrix_set_are_404(client: TestClient) -> None:
    too_deep = client.get("/ogc/collections/grids/tiles/WebMercatorQuad/99/0/0")
    assert too_deep.status_code == 404
    assert too_deep.json()["message"] == "tile 99/0/0 does not exist: WebMercatorQuad has tile matrices 0 to 24"
    for z, x, y in ((3, 8, 0), (3, 0, 8), (3, -1, 0), (-1, 0, 0)):
        response = client.get(f"/ogc/collections/grids/tiles/WebMercatorQuad/{z}/{x}/{y}")
        assert response.status_code == 404, (z, x, y)
    assert "columns 0 to 7 and rows 0 to 7" in client.get("/ogc/collections/grids/tiles/WebMercatorQuad/3/8/0").text
    assert client.get("/ogc/collections/grids/tiles/WebMercatorQuad/3/7/7").status_code == 200


def test_filter_crs_reads_the_filter_in_that_crs_and_axis_order(client: TestClient, engine: Engine) -> None:
    def grids(filter_text: str, filter_crs: str | None = None) -> list[str]:
        params = {"filter": filter_text, **({"filter-crs": filter_crs} if filter_crs else {})}
        response = client.get("/ogc/collections/grids/items", params=params)
        assert response.status_code == 200, response.text
        return [feature["id"] for feature in response.json()["features"]]

    # One place (easting 422704.85, northing 2585826.86 in EPSG:4544), written in each CRS's authority axis order.
    lon, lat = rows(
        engine, "SELECT ST_X(p), ST_Y(p) FROM ST_Transform(ST_SetSRID(ST_Point(422704.85, 2585826.86), 4544), 4326) p"
    )[0]
    assert grids(f"S_INTERSECTS(geom, POINT({lon} {lat}))") == ["532601001008006"]
    assert grids(f"S_INTERSECTS(geom, POINT({lon} {lat}))", CRS84) == ["532601001008006"]
    assert grids(f"S_INTERSECTS(geom, POINT({lat} {lon}))", EPSG + "4326") == ["532601001008006"]
    assert grids(f"S_INTERSECTS(geom, POINT({lat} {lon}))", "EPSG:4490") == ["532601001008006"]
    assert grids("S_INTERSECTS(geom, POINT(2585826.86 422704.85))", EPSG + "4544") == ["532601001008006"]
    point = '{"type": "Point", "coordinates": [2585826.86, 422704.85]}'
    json_filter = '{"op": "s_intersects", "args": [{"property": "geom"}, ' + point + "]}"
    assert grids(json_filter, EPSG + "4544") == ["532601001008006"]
    # A BBOX in EPSG:4544 is the exact projected square, as bbox with bbox-crs is.
    west, south, east, north = SQUARE_4544
    square = client.get(
        "/ogc/collections/illegal_buildings/items",
        params={"filter": f"S_INTERSECTS(geom, BBOX({south},{west},{north},{east}))", "filter-crs": EPSG + "4544"},
    )
    assert square.json()["numberMatched"] == 10
    unsupported = client.get(
        "/ogc/collections/grids/items", params={"filter": "S_INTERSECTS(geom, POINT(1 2))", "filter-crs": EPSG + "3857"}
    )
    assert unsupported.status_code == 400
    assert unsupported.json()["message"].startswith("filter-crs='http://www.opengis.net/def/crs/EPSG/0/3857' is not")
    assert EPSG + "4544" in unsupported.json()["message"]


def test_bbox_west_of_east_and_limit_out_of_range_are_400(client: TestClient) -> None:
    swapped = client.get("/ogc/collections/stalls/items", params={"bbox": "104.3,23.3,104.2,23.4"})
    assert swapped.status_code == 400
    assert "has west > east, which OGC API reads as a box across the antimeridian" in swapped.json()["message"]
    projected = client.get(
        "/ogc/collections/stalls/items", params={"bbox": "2584000,423000,2585000,422000", "bbox-crs": EPSG + "4544"}
    )
    assert projected.status_code == 400
    for limit in ("0", "-1", "10001"):
        response = client.get("/ogc/collections/stalls/items", params={"limit": limit})
        assert response.status_code == 400, limit
    assert client.get("/ogc/collections/stalls/items?limit=0").json()["message"] == (
        "limit=0 is out of range: give 1 to 10000 features per page"
    )
    assert len(client.get("/ogc/collections/stalls/items?limit=1").json()["features"]) == 1


def test_html_views(client: TestClient) -> None:
    for path in ("/ogc/", "/ogc/collections", "/ogc/collections/grids", "/ogc/collections/grids/items?limit=5"):
        response = client.get(path, params={"f": "html"})
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
    assert "illegal_buildings" in client.get("/ogc/collections?f=html").text


def test_openapi_document_is_valid_openapi_30(client: TestClient) -> None:
    response = client.get("/ogc/api")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.0.3"
    validate(document, cls=OpenAPIV30SpecValidator)
    items = document["paths"]["/collections/{collectionId}/items"]["get"]
    names = {p["name"] for p in items["parameters"]}
    assert {"bbox", "bbox-crs", "crs", "datetime", "limit", "offset", "filter"} <= names


def test_vector_tiles_hold_the_features_of_the_tile(client: TestClient, engine: Engine) -> None:
    z, lon, lat = 15, 104.244, 23.371  # the city centre
    x = int((lon + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
    expected = rows(
        engine,
        "SELECT count(*) FROM illegal_buildings WHERE ST_Intersects(ST_Transform(geom, 3857),"
        " ST_TileEnvelope(:z, :x, :y))",
        z=z, x=x, y=y,
    )[0][0]  # fmt: skip
    response = client.get(f"/ogc/collections/illegal_buildings/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert response.status_code == 200
    tile = mapbox_vector_tile.decode(response.content)
    assert len(tile["default"]["features"]) == expected
    assert expected > 0


# --- third-party clients over HTTP ---------------------------------------------------------------------


def test_gdal_oapif_reads_every_layer_with_the_database_counts(server: str, engine: Engine) -> None:
    layers = dict(pyogrio.list_layers(f"OAPIF:{server}"))
    assert list(layers) == PUBLIC
    counts = {name: rows(engine, f"SELECT count(*) FROM {name}")[0][0] for name in PUBLIC}  # our own table names
    counts.update(subdistricts=3, communities=26, grids=193)  # one generation is in force
    for name in PUBLIC:
        frame = pyogrio.read_dataframe(f"OAPIF:{server}", layer=name, read_geometry=name != "squads")
        assert len(frame) == counts[name], name


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:4544"])
def test_gdal_oapif_reads_buildings_like_the_database(server: str, engine: Engine, crs: str) -> None:
    frame = pyogrio.read_dataframe(f"OAPIF:{server}", layer="illegal_buildings", CRS=crs)
    assert frame.crs.to_epsg() == int(crs.split(":")[1]) or (crs == "EPSG:4326" and frame.crs.to_epsg() is None)
    database = buildings(engine)
    assert sorted(frame["code"]) == sorted(database)
    for record in frame.to_dict("records"):
        row = database[record["code"]]
        assert record["status"] == row.status and record["floors"] == row.floors
        assert record["address"] == row.address and record["grid_code"] == row.grid_code
        assert math.isclose(record["footprint_m2"], row.footprint_m2, abs_tol=1e-6)
        assert record["discovered_at"].date() == row.discovered_at
        expected = shapely.from_wkt(row.wkt_4544 if crs == "EPSG:4544" else row.wkt)
        # GDAL gives GIS-friendly order (easting/longitude first) after reading the authority order we sent.
        assert shapely.equals_exact(record["geometry"], expected, tolerance=1e-6), record["code"]
        if crs == "EPSG:4544":
            assert math.isclose(record["geometry"].area, row.footprint_m2, abs_tol=0.01)


def test_gdal_oapif_filters_a_4544_rectangle_on_the_server(server: str, engine: Engine) -> None:
    west, south, east, north = SQUARE_4544
    frame = pyogrio.read_dataframe(
        f"OAPIF:{server}", layer="illegal_buildings", CRS="EPSG:4544", bbox=(west, south, east, north)
    )
    expected = rows(
        engine,
        "SELECT code FROM illegal_buildings"
        " WHERE ST_Intersects(ST_Transform(geom, 4544), ST_MakeEnvelope(:w, :s, :e, :n, 4544)) ORDER BY code",
        w=west, s=south, e=east, n=north,
    )  # fmt: skip
    assert sorted(frame["code"]) == [r.code for r in expected]
    assert len(expected) == 10


def _all_items(features: Features, collection: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = features.collection_items(collection, limit=500, offset=len(found), **params)
        found += page["features"]
        if len(found) >= page["numberMatched"]:
            return found


@pytest.mark.parametrize("crs", ["4326", "4544"])
def test_owslib_reads_buildings_like_the_database(server: str, engine: Engine, crs: str) -> None:
    features = Features(server)
    assert "illegal_buildings" in [c["id"] for c in features.collections()["collections"]]
    assert EPSG + crs in features.collection("illegal_buildings")["crs"]
    items = _all_items(features, "illegal_buildings", crs=EPSG + crs)
    database = buildings(engine)
    assert len(items) == 823 and {item["id"] for item in items} == set(database)
    for item in items:
        row = database[item["id"]]
        properties = item["properties"]
        assert properties["status"] == row.status and properties["campaign"] == row.campaign
        assert properties["demolished_m2"] == row.demolished_m2
        assert properties["demolished_at"] == (row.demolished_at.isoformat() if row.demolished_at else None)
        expected = shapely.from_wkt(row.wkt_4544 if crs == "4544" else row.wkt)
        # OWSLib hands over the JSON as sent: authority order, latitude/northing first.
        ring = [(b, a) for a, b in item["geometry"]["coordinates"][0]]
        assert shapely.equals_exact(shapely.Polygon(ring), expected, tolerance=1e-6), item["id"]


def test_owslib_filters_by_property_and_date(server: str, engine: Engine) -> None:
    features = Features(server)
    page = features.collection_items("illegal_buildings", limit=1, status="demolished")
    assert page["numberMatched"] == 448
    expected = rows(
        engine, "SELECT count(*) FROM illegal_buildings WHERE demolished_at BETWEEN :a AND :b",
        a=date(2017, 1, 1), b=date(2017, 6, 30),
    )[0][0]  # fmt: skip
    page = features.collection_items(
        "illegal_buildings", limit=1, filter="demolished_at BETWEEN DATE('2017-01-01') AND DATE('2017-06-30')"
    )
    assert page["numberMatched"] == expected
