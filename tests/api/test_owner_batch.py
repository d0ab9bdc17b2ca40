"""POST /v1/owner/batch and ``citygrid owner --file``: every row back, in order, errors per row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import shapely
from fastapi.testclient import TestClient
from shapely.strtree import STRtree
from typer.testing import CliRunner

from spatial import crs
from spatial.cli import app

ROWS = (
    "id,name,lon,lat\n"
    "1,中心,104.244,23.371\n"
    "2,坏数,abc,23.3\n"
    "3,颠倒,23.371,104.244\n"
    "4,远处,104.5,23.5\n"
    "5,街边,104.217011,23.363428\n"
)


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_batch_keeps_order_and_reports_bad_rows(planner_client: TestClient) -> None:
    response = planner_client.post("/v1/owner/batch", content=ROWS.encode(), headers={"content-type": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = parse(response.text)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["grid_code"] for r in rows] == ["532601001008006", "", "", "", "532601001006007"]
    assert rows[0]["grid_member_name"] == "董凯" and rows[0]["squad_name"] == "开化街道城管执法中队"
    assert rows[1]["error"] == "coordinates missing or not numbers"
    assert "look swapped" in rows[2]["error"]
    assert rows[3]["error"] == "not covered: 25905.6 m from grid 532601003007003"
    assert (rows[4]["street_code"], rows[4]["street_chief_id"]) == ("ST001", "P0604")
    assert rows[0]["name"] == "中心"  # every input column comes back


def test_geojson_batch_in_gcj02(planner_client: TestClient) -> None:
    lon, lat = crs.wgs84_to_gcj02(104.217011, 23.363428)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"n": 1}, "geometry": {"type": "Point", "coordinates": [lon, lat]}},
            {"type": "Feature", "properties": {"n": 2}, "geometry": None},
        ],
    }
    response = planner_client.post(
        "/v1/owner/batch?crs=gcj02", content=json.dumps(collection), headers={"content-type": "application/geo+json"}
    )
    assert response.status_code == 200
    features = response.json()["features"]
    assert features[0]["properties"]["owner"]["grid_code"] == "532601001006007"
    assert features[0]["properties"]["owner"]["ambiguous"] is False
    assert features[1]["properties"] == {"n": 2, "owner_error": "coordinates missing or not numbers"}


def test_batch_refuses_other_formats_and_missing_columns(planner_client: TestClient) -> None:
    assert (
        planner_client.post("/v1/owner/batch", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    )
    response = planner_client.post("/v1/owner/batch", content=b"a,b\n1,2\n", headers={"content-type": "text/csv"})
    assert response.status_code == 422
    assert "no longitude column" in response.json()["message"]
    # GBK files are read (tests/api/test_bad_input.py); UTF-16 is not.
    utf16 = "id,lon,lat\n1,104.244,23.371\n".encode("utf-16")
    refused = planner_client.post("/v1/owner/batch", content=utf16, headers={"content-type": "text/csv"})
    assert refused.status_code == 422
    assert "UTF-16" in refused.json()["message"]


def test_api_grid_equals_point_in_polygon_on_the_exported_grids(planner_client: TestClient) -> None:
    """10,000 random points over the city's bounding box: our grid is shapely's containing grid."""
    layer = planner_client.get("/v1/layers/grids").json()
    polygons = [shapely.geometry.shape(f["geometry"]) for f in layer["features"]]
    codes = [f["id"] for f in layer["features"]]
    west, south, east, north = shapely.union_all(polygons).bounds
    rng = np.random.default_rng(2017)
    lon = rng.uniform(west, east, 10_000)
    lat = rng.uniform(south, north, 10_000)
    body = "lon,lat\n" + "".join(f"{x:.8f},{y:.8f}\n" for x, y in zip(lon, lat, strict=True))
    rows = parse(
        planner_client.post("/v1/owner/batch", content=body.encode(), headers={"content-type": "text/csv"}).text
    )
    assert len(rows) == 10_000
    tree = STRtree(polygons)
    inside = outside = 0
    for x, y, row in zip(lon, lat, rows, strict=True):
        hits = [codes[i] for i in tree.query(shapely.Point(x, y), predicate="covered_by")]
        if hits:
            inside += 1
            if row["ambiguous"] == "true":
                assert hits[0] in row["candidates"].split()
            else:
                assert hits == [row["grid_code"]]
        else:
            outside += 1
            # Outside every grid: flagged outside, unless within the 0.5 m edge tolerance of one.
            nearest = min(polygons[i].distance(shapely.Point(x, y)) for i in tree.query_nearest(shapely.Point(x, y)))
            assert row["outside"] == "true" or nearest * 111_000 < 0.5
    assert inside + outside == 10_000 and inside > 5_000


def test_cli_owner_file_writes_every_row(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    points = tmp_path / "points.csv"
    points.write_text(ROWS, encoding="utf-8")
    out = tmp_path / "owners.csv"
    result = CliRunner().invoke(
        app, ["owner", "--file", str(points), "--out", str(out)], env={"DATABASE_URL": settings.database.url}
    )
    assert result.exit_code == 0, result.output
    assert "5 rows, 2 with bad coordinates" in result.output
    rows = parse(out.read_text(encoding="utf-8"))
    assert [r["grid_code"] for r in rows] == ["532601001008006", "", "", "", "532601001006007"]


def test_cli_owner_single_point(settings) -> None:  # type: ignore[no-untyped-def]
    env = {"DATABASE_URL": settings.database.url}
    result = CliRunner().invoke(app, ["owner", "104.244", "23.371", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["grid"]["code"] == "532601001008006"
    far = CliRunner().invoke(app, ["owner", "104.1953751", "23.3625449"], env=env)
    assert far.exit_code == 2
    assert "not covered" in far.output


def test_csv_batch_with_quotes_and_crlf_writes_rows_back_as_csv(planner_client: TestClient) -> None:
    plain = "id,lon,lat\r\n1,104.244,23.371\r\n\r\n2,104.217011,23.363428\r\n"
    quoted = 'id,name,lon,lat\n1,"文山, 开化",104.244,23.371\n2,"两行\n地址",104.217011,23.363428\n'
    for body, names in ((plain, None), (quoted, ["文山, 开化", "两行\n地址"])):
        response = planner_client.post("/v1/owner/batch", content=body.encode(), headers={"content-type": "text/csv"})
        rows = parse(response.text)
        assert [(r["id"], r["grid_code"]) for r in rows] == [("1", "532601001008006"), ("2", "532601001006007")]
        if names is not None:
            assert [r["name"] for r in rows] == names


def test_a_row_longer_than_the_header_gets_its_own_error_and_shifts_nothing(planner_client: TestClient) -> None:
    body = "id,lon,lat,note\n1,104.244,23.371,a,5\n2,104.244,23.371\n3,104.217011,23.363428,c\n"
    response = planner_client.post("/v1/owner/batch", content=body.encode(), headers={"content-type": "text/csv"})
    assert response.status_code == 200
    assert response.text.splitlines()[0].startswith("id,lon,lat,note,grid_code,")
    rows = parse(response.text)
    assert [(r["id"], r["lon"], r["lat"], r["note"]) for r in rows] == [
        ("1", "104.244", "23.371", "a"), ("2", "104.244", "23.371", ""), ("3", "104.217011", "23.363428", "c"),
    ]  # fmt: skip
    assert [r["grid_code"] for r in rows] == ["", "532601001008006", "532601001006007"]
    assert [r["error"] for r in rows] == [
        "line 2 has 5 fields but the header 4: not looked up, as which field is which is unclear; "
        "the fields after the 4th are left out here",
        "",
        "",
    ]


def test_a_geojson_feature_that_is_not_a_point_says_so(planner_client: TestClient) -> None:
    line = {"type": "LineString", "coordinates": [[104.244, 23.371], [104.245, 23.372]]}
    point = {"type": "Point", "coordinates": [104.244, 23.371]}
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"n": 1}, "geometry": line},
            {"type": "Feature", "properties": {"n": 2}, "geometry": point},
        ],
    }
    response = planner_client.post(
        "/v1/owner/batch", content=json.dumps(collection), headers={"content-type": "application/geo+json"}
    )
    assert response.status_code == 200
    features = response.json()["features"]
    assert features[0]["properties"] == {
        "n": 1, "owner_error": "the geometry is a LineString, not a Point: give each feature one point"
    }  # fmt: skip
    assert features[1]["properties"]["owner"]["grid_code"] == "532601001008006"


NO_GENERATION = "no boundary generation was in force at 2000-01-01T00:00:00+08:00; ask about a later moment"


def test_a_batch_before_any_boundary_generation_is_a_404_as_a_single_lookup(planner_client: TestClient) -> None:
    at = {"at": "2000-01-01T00:00:00+08:00"}
    single = planner_client.get("/v1/owner", params={"lon": 104.244, "lat": 23.371, **at})
    assert (single.status_code, single.json()["message"]) == (404, NO_GENERATION)
    csv_batch = planner_client.post(
        "/v1/owner/batch", params=at, content=ROWS.encode(), headers={"content-type": "text/csv"}
    )
    assert (csv_batch.status_code, csv_batch.json()["message"]) == (404, NO_GENERATION)
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [104.244, 23.371]}},
    ]}  # fmt: skip
    geojson_batch = planner_client.post(
        "/v1/owner/batch", params=at, content=json.dumps(points), headers={"content-type": "application/geo+json"}
    )
    assert (geojson_batch.status_code, geojson_batch.json()["message"]) == (404, NO_GENERATION)


def test_cli_owner_file_before_any_boundary_generation_is_refused(tmp_path: Path, cli: CliRunner) -> None:
    points = tmp_path / "points.csv"
    points.write_text(ROWS, encoding="utf-8")
    out = tmp_path / "owners.csv"
    result = cli.invoke(app, ["owner", "--file", str(points), "--at", "2000-01-01", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output == f"error: {NO_GENERATION}\n"
    assert not out.exists()


def test_cli_owner_names_a_file_it_cannot_read_or_write_in_one_line(tmp_path: Path, cli: CliRunner) -> None:
    missing = cli.invoke(app, ["owner", "--file", str(tmp_path / "nonexist.csv")])
    assert missing.exit_code == 2
    assert missing.output == f"error: cannot read {tmp_path}/nonexist.csv: No such file or directory\n"
    points = tmp_path / "points.csv"
    points.write_text(ROWS, encoding="utf-8")
    nowhere = tmp_path / "nonexistent" / "dir" / "x.csv"
    unwritable = cli.invoke(app, ["owner", "--file", str(points), "--out", str(nowhere)])
    assert unwritable.exit_code == 2
    assert unwritable.output == f"error: cannot write {nowhere}: No such file or directory\n"
    single = cli.invoke(app, ["owner", "104.244", "23.371", "--json", "--out", str(nowhere)])
    assert single.exit_code == 2
    assert single.output == f"error: cannot write {nowhere}: No such file or directory\n"
