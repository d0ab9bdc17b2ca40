"""Exports: every format read back with pyogrio and compared with the database; RFC 7946; filters and totals.

The oracle for the responsibility chain is ``citygrid_owner_points`` at each footprint's point on surface,
not the export's own join, so the two code paths check each other.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import geojson_validator
import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from spatial import exports
from spatial.cli import app
from spatial.settings import clear_settings_cache

FORMATS = ["geojson", "gpkg", "shp.zip", "csv", "kml"]
BUILDING_COLUMNS = exports.DATASETS["illegal-buildings"].columns
DATES = ("discovered_at", "investigated_at", "notice_served_at", "scheduled_at", "demolished_at", "legalised_at")

ORACLE = """
WITH b AS (SELECT row_number() OVER (ORDER BY code) AS n, * FROM illegal_buildings),
o AS (SELECT * FROM citygrid_owner_points(
        (SELECT array_agg(ST_PointOnSurface(geom) ORDER BY n) FROM b), (SELECT array_agg(now()) FROM b)))
SELECT b.*, o.subdistrict_code, s.name AS subdistrict, o.community_code, c.name AS community, o.grid_code AS grid,
       g.name AS grid_name, sq.name AS squad, p.name AS grid_member, p.phone AS grid_member_phone
FROM b JOIN o ON o.row_no = b.n
LEFT JOIN subdistricts s ON s.generation = o.generation AND s.code = o.subdistrict_code
LEFT JOIN communities c ON c.generation = o.generation AND c.code = o.community_code
LEFT JOIN grids g ON g.generation = o.generation AND g.code = o.grid_code
LEFT JOIN squads sq ON sq.code = o.squad_code
LEFT JOIN people p ON p.id = o.grid_member_id
"""


@pytest.fixture(scope="module")
def database(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {row.code: row for row in conn.execute(text(ORACLE))}


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def download(planner_client: TestClient, tmp_path: Path, url: str, **params: Any) -> tuple[Path, Any]:
    response = planner_client.get(url, params=params)
    assert response.status_code == 200, response.text
    name = unquote(response.headers["content-disposition"].split("filename*=UTF-8''")[1])
    path = tmp_path / name
    path.write_bytes(response.content)
    return path, response


def read_back(path: Path) -> list[dict[str, Any]]:
    """Return the file's features with our field names (Shapefile names and Chinese CSV headers mapped back)."""
    frame = pyogrio.read_dataframe(path)
    renames = {col.shp_name: col.name for col in BUILDING_COLUMNS} if path.name.endswith(".shp.zip") else {}
    renames |= {col.label_zh: col.name for col in BUILDING_COLUMNS} if path.suffix == ".csv" else {}
    frame = frame.rename(columns=renames)
    frame["area_4544"] = frame.geometry.set_crs(4326, allow_override=True).to_crs(4544).area
    return frame.to_dict("records")


def text_or_none(value: Any) -> str | None:
    if value is None or value == "" or pd.isna(value):
        return None
    if hasattr(value, "date") and not isinstance(value, str):
        return str(value.date().isoformat())
    return str(value)


def number(value: Any) -> float | None:
    text_value = text_or_none(value)
    return None if text_value is None else float(text_value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_like_the_database(
    planner_client: TestClient, tmp_path: Path, database: dict[str, Any], fmt: str
) -> None:
    path, response = download(planner_client, tmp_path, f"/v1/exports/illegal-buildings.{fmt}")
    assert response.headers["x-citygrid-count"] == "823"
    features = read_back(path)
    assert len(features) == 823
    assert {f["code"] for f in features} == set(database)
    for feature in features:
        row = database[feature["code"]]
        assert feature["address"] == row.address
        assert feature["status"] == row.status and feature["status_zh"] == exports.STATUS_ZH[row.status]
        assert int(feature["floors"]) == row.floors
        assert text_or_none(feature["campaign"]) == row.campaign
        assert (feature["subdistrict_code"], feature["subdistrict"]) == (row.subdistrict_code, row.subdistrict)
        assert (feature["community_code"], feature["community"]) == (row.community_code, row.community)
        assert (feature["grid_code"], feature["grid"]) == (row.grid, row.grid_name)
        assert (feature["squad"], feature["grid_member"]) == (row.squad, row.grid_member)
        assert feature["grid_member_phone"] == row.grid_member_phone
        for name in DATES:
            expected = getattr(row, name)
            assert text_or_none(feature[name]) == (expected.isoformat() if expected else None), name
        assert math.isclose(number(feature["footprint_m2"]) or 0, row.footprint_m2, abs_tol=0.1)
        if row.demolished_m2 is None:
            assert number(feature["demolished_m2"]) is None
        else:
            assert math.isclose(number(feature["demolished_m2"]) or 0, row.demolished_m2, abs_tol=0.1)
        assert math.isclose(feature["area_4544"], row.footprint_m2, abs_tol=0.1), feature["code"]


def test_geojson_is_rfc_7946(planner_client: TestClient) -> None:
    response = planner_client.get("/v1/exports/illegal-buildings.geojson")
    assert response.headers["content-type"] == "application/geo+json"
    document = response.json()
    assert "crs" not in document
    assert geojson_validator.validate_structure(document, check_crs=True) == {}
    checked = geojson_validator.validate_geometries(
        document, criteria_problematic=("self_intersection", "3d_coordinates", "outside_lat_lon_boundaries")
    )
    assert checked["invalid"] == {} and checked["problematic"] == {}
    for feature in document["features"]:
        assert "crs" not in feature["geometry"]
        polygon = shapely.geometry.shape(feature["geometry"])
        assert polygon.exterior.is_ccw  # the right-hand rule: exterior rings counter-clockwise
        for lon, lat in polygon.exterior.coords:  # longitude first
            assert 104.1 < lon < 104.4 and 23.3 < lat < 23.5


def test_shapefile_zip_has_utf8_codepage_and_short_field_names(planner_client: TestClient, tmp_path: Path) -> None:
    path, response = download(planner_client, tmp_path, "/v1/exports/illegal-buildings.shp.zip")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(path) as bundle:
        names = sorted(bundle.namelist())
        assert names == [f"illegal_buildings.{ext}" for ext in ("cpg", "dbf", "prj", "shp", "shx")]
        assert bundle.read("illegal_buildings.cpg").decode().strip() == "UTF-8"
    assert all(len(name) <= 10 for name in pyogrio.read_info(path)["fields"])


def test_filters_name_the_file_and_totals_come_in_the_headers(planner_client: TestClient, engine: Engine) -> None:
    response = planner_client.get("/v1/exports/illegal-buildings.geojson?subdistrict=开化&status=demolished")
    today = datetime.now(exports.CST).date().isoformat()
    disposition = response.headers["content-disposition"]
    assert f'filename="illegal-buildings_532601001_demolished_{today}.geojson"' in disposition
    assert f"filename*=UTF-8''{quote(f'违法建筑_开化街道_已拆除_{today}.geojson')}" in disposition
    expected = scalar(
        engine,
        "SELECT count(*) FROM illegal_buildings WHERE left(grid_code, 9) = '532601001' AND status = 'demolished'",
    )
    assert len(response.json()["features"]) == expected
    totals = json.loads(response.headers["x-citygrid-totals"])
    assert list(totals) == ["532601001", "total"]
    assert totals["532601001"]["count"] == totals["total"]["count"] == expected


def test_totals_per_subdistrict_match_the_database(planner_client: TestClient, engine: Engine) -> None:
    with engine.connect() as conn:
        expected = {
            row.code: {"count": row.count, "footprint_m2": float(row.footprint), "demolished_m2": float(row.demolished)}
            for row in conn.execute(
                text(
                    "SELECT left(grid_code, 9) AS code, count(*), round(sum(footprint_m2)::numeric, 2) AS footprint,"
                    " round(coalesce(sum(demolished_m2), 0)::numeric, 2) AS demolished FROM illegal_buildings"
                    " GROUP BY 1 ORDER BY 1"
                )
            )
        }
    header = json.loads(planner_client.get("/v1/exports/illegal-buildings.csv").headers["x-citygrid-totals"])
    total = header.pop("total")
    assert header.keys() == expected.keys()
    for code, values in expected.items():
        assert header[code]["count"] == values["count"]
        assert math.isclose(header[code]["footprint_m2"], values["footprint_m2"], abs_tol=0.011)
        assert math.isclose(header[code]["demolished_m2"], values["demolished_m2"], abs_tol=0.011)
    assert total["count"] == 823
    demolished = planner_client.get("/v1/exports/illegal-buildings/totals?status=demolished").json()
    assert demolished["total"]["count"] == 448
    measured = scalar(engine, "SELECT sum(demolished_m2) FROM illegal_buildings WHERE status = 'demolished'")
    assert math.isclose(demolished["total"]["demolished_m2"], measured, abs_tol=0.1)
    assert 399_000 < measured < 401_000  # the seed's ≈ 40 万 m²
    names = [row["name"] for row in demolished["subdistricts"]]
    assert names == ["开化街道", "卧龙街道", "新平街道"]
    assert demolished["filters"] == {"status": ["demolished"]}


def test_date_ranges_filter_inclusively(planner_client: TestClient, engine: Engine) -> None:
    expected = scalar(
        engine, "SELECT count(*) FROM illegal_buildings WHERE demolished_at BETWEEN '2017-01-01' AND '2017-03-31'"
    )
    body = planner_client.get(
        "/v1/exports/illegal-buildings.geojson?demolished_from=2017-01-01&demolished_to=2017-03-31"
    ).json()  # fmt: skip
    assert len(body["features"]) == expected
    assert all("2017-01-01" <= f["properties"]["demolished_at"] <= "2017-03-31" for f in body["features"])
    assert 0 < expected < 448


def test_empty_exports_are_valid_files(planner_client: TestClient, tmp_path: Path) -> None:
    body = planner_client.get("/v1/exports/illegal-buildings.geojson?discovered_to=2000-01-01").json()
    assert body == {"type": "FeatureCollection", "name": "illegal_buildings", "features": []}
    path, _ = download(planner_client, tmp_path, "/v1/exports/illegal-buildings.gpkg", discovered_to="2000-01-01")
    assert pyogrio.read_info(path)["features"] == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=gone", "status 'gone' is not one of: discovered, investigated"),
        ("subdistrict=东城", "subdistrict '东城' matches no subdistrict"),
        ("demolished_from=2017-04-01&demolished_to=2017-03-01", "demolished_from 2017-04-01 is after demolished_to"),
        ("discovered_from=31/03/2017", "is not a date: write YYYY-MM-DD"),
        ("stat=demolished", "stat"),
    ],
)
def test_bad_filters_say_what_to_fix(planner_client: TestClient, query: str, message: str) -> None:
    response = planner_client.get(f"/v1/exports/illegal-buildings.geojson?{query}")
    assert response.status_code == 422
    assert message in response.json()["message"]


def test_other_datasets_export_with_their_chain(planner_client: TestClient, tmp_path: Path, engine: Engine) -> None:
    path, response = download(planner_client, tmp_path, "/v1/exports/incidents.gpkg", subdistrict="532601002")
    frame = pyogrio.read_dataframe(path)
    expected = scalar(engine, "SELECT count(*) FROM incidents WHERE subdistrict_code = '532601002'")
    assert len(frame) == expected == json.loads(response.headers["x-citygrid-totals"])["total"]["count"]
    assert set(frame["subdistrict"]) == {"卧龙街道"}
    assert str(frame["reported_at"].dt.tz) == "UTC"
    with engine.connect() as conn:
        query = text("SELECT reported_at FROM incidents WHERE code = :code")
        first = conn.execute(query, {"code": frame["code"][0]}).scalar()
    assert frame["reported_at"][0].to_pydatetime() == first
    stalls = planner_client.get("/v1/exports/stalls.geojson?licensed=false").json()
    assert len(stalls["features"]) == scalar(engine, "SELECT count(*) FROM stalls WHERE NOT licensed")
    path, _ = download(planner_client, tmp_path, "/v1/exports/markets.kml")
    markets = {row["code"]: row for row in pyogrio.read_dataframe(path).to_dict("records")}
    with engine.connect() as conn:
        areas = dict(conn.execute(text("SELECT code, ST_Area(ST_Transform(geom, 4544)) FROM markets")).all())
    assert markets.keys() == areas.keys() and len(areas) == 21
    assert all(math.isclose(markets[code]["area_m2"], area, abs_tol=0.01) for code, area in areas.items())
    refused = planner_client.get("/v1/exports/stalls.geojson?campaign=x")
    assert refused.status_code == 422
    assert "stalls" in refused.json()["message"]


def test_geojson_is_streamed_in_chunks(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "CHUNK_ROWS", 300)
    with engine.connect() as conn:
        export = exports.prepare(conn, "illegal-buildings", "geojson", {})
    snapshot = exports.Snapshot(engine, export)
    chunks = list(snapshot.stream())
    assert len(chunks) == 5  # the head, three pages of at most 300 features, the tail
    assert len(json.loads(b"".join(chunks))["features"]) == 823


@pytest.fixture
def uncached_settings() -> Iterator[None]:
    """The CLI reads DATABASE_URL through cached settings: start from, and leave, an empty cache."""
    clear_settings_cache()
    yield
    clear_settings_cache()


def test_cli_writes_the_file_and_its_totals_sidecar(settings, tmp_path: Path, uncached_settings: None) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app,
        ["export", "illegal-buildings", "--format", "gpkg", "--status", "demolished", "--subdistrict", "卧龙街道",
         "--out", str(tmp_path)],
        env={"DATABASE_URL": settings.database.url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    today = datetime.now(exports.CST).date().isoformat()  # files are named by their day in Beijing time
    path = tmp_path / f"违法建筑_卧龙街道_已拆除_{today}.gpkg"
    frame = gpd.read_file(path)
    sidecar = json.loads((tmp_path / f"{path.name}.totals.json").read_text(encoding="utf-8"))
    assert len(frame) == sidecar["total"]["count"] == sidecar["subdistricts"][0]["count"]
    assert set(frame["subdistrict"]) == {"卧龙街道"} and set(frame["status"]) == {"demolished"}
    assert "合计 total" in result.output
    wrong = CliRunner().invoke(
        app, ["export", "stalls", "--campaign", "x"], env={"DATABASE_URL": settings.database.url}
    )  # fmt: skip
    assert wrong.exit_code == 2
    assert "does not apply to stalls" in wrong.output


def test_field_types_do_not_change_with_the_filter(planner_client: TestClient, tmp_path: Path) -> None:
    # With status=demolished every legalised_at is empty; a column of empty dates once became String (29) in a
    # Shapefile and DateTime in a GeoPackage instead of Date.
    for fmt in ("shp.zip", "gpkg"):
        types = []
        for status in ("demolished", "legalised"):
            path, _ = download(
                planner_client, tmp_path, f"/v1/exports/illegal-buildings.{fmt}", subdistrict="开化", status=status
            )
            info = pyogrio.read_info(path)
            assert info["features"] > 0
            types.append(dict(zip(info["fields"], map(str, info["dtypes"]), strict=True)))
        numpy_types = {"text": "object", "date": "datetime64[D]", "int": "int32", "float": "float64"}
        expected = {col.shp_name if fmt == "shp.zip" else col.name: numpy_types[col.kind] for col in BUILDING_COLUMNS}
        assert types == [expected, expected], fmt


def test_case_statuses_are_named_as_the_workflow_names_them(planner_client: TestClient) -> None:
    body = planner_client.get("/v1/exports/incidents.geojson", params={"status": ["collected", "closed"]}).json()
    names = {(f["properties"]["status"], f["properties"]["status_zh"]) for f in body["features"]}
    assert names == {("collected", "信息收集"), ("closed", "结案")}
    disposition = planner_client.get("/v1/exports/incidents.csv", params={"status": "closed"}).headers
    assert quote("案件_已结案") not in disposition["content-disposition"]
    assert quote("案件_结案") in disposition["content-disposition"]
