"""Bad input, sent to the API and the command line: a 4xx or a non-zero exit that says what to fix, and nothing
written (incidents, keys and the audit log are counted before and after)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from spatial.cli import app
from spatial.settings import ApiSettings, DatabaseSettings, Settings
from tests.api.casekit import GRID_1, Keys, made_keys

GOOD = {"lon": GRID_1[0], "lat": GRID_1[1], "item_code": "0508", "source": "patrol", "description": "test"}
TABLES = ("incidents", "incident_events", "api_keys", "audit_log")


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


@pytest.fixture
def unchanged(engine: Engine) -> Iterator[None]:
    """Fail the test if any of TABLES gained or lost a row."""

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}

    before = counts()
    yield
    assert counts() == before


BAD_REPORTS = [
    ({"lon": "NaN"}, 422, "not finite numbers"),
    ({"lon": 1e400}, 422, "not finite numbers"),
    ({"lon": 204.2, "lat": 23.38}, 422, "out of range"),
    ({"lon": GRID_1[1], "lat": GRID_1[0]}, 422, "look swapped: give lon first"),
    ({"crs": "EPSG:99999"}, 422, "unknown crs 'EPSG:99999'"),
    ({"crs": "mars"}, 422, "use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>"),
    ({"item_code": "9999"}, 422, "not one of the 147 catalogue items"),
    ({"source": "pigeon"}, 422, "body.source"),
    ({"lat": "north"}, 422, "body.lat: Input should be a valid number"),
    ({"photos": "http://x/1.jpg"}, 422, "body.photos: Input should be a valid list"),
    ({"photos": ["javascript:alert(1)"]}, 422, "is not an http(s) URL"),
    ({"description": "长" * 4001}, 422, "keep it to 4000"),
    ({"address": "路" * 501}, 422, "keep it to 500"),
    ({"reporter": {"name": "x" * 101}}, 422, "body.reporter.name"),
    ({"reported_at": "2025-03-03T10:00:00"}, 422, "has no time zone"),
    ({"reported_at": "2999-01-01T00:00:00+08:00"}, 422, "in the future"),
]


@pytest.mark.parametrize(("change", "status", "words"), BAD_REPORTS)
def test_bad_reports_are_refused_and_nothing_is_written(
    client: TestClient, keys: Keys, unchanged: None, change: dict[str, object], status: int, words: str
) -> None:
    body = json.dumps({**GOOD, **change}).replace("Infinity", "1e400")
    response = client.post(
        "/v1/incidents", content=body, headers={**keys.header("dispatcher"), "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert words in response.json()["message"], response.json()


def test_malformed_json_and_sql_looking_text(client: TestClient, keys: Keys, engine: Engine) -> None:
    headers = {**keys.header("dispatcher"), "content-type": "application/json"}
    broken = client.post("/v1/incidents", content=b'{"lon": 104.2', headers=headers)
    assert broken.status_code == 422 and "JSON decode error" in broken.json()["message"]
    wrong_shape = client.post("/v1/incidents", content=b"[1, 2]", headers=headers)
    assert wrong_shape.status_code == 422
    as_text = client.post("/v1/incidents", content=json.dumps(GOOD), headers={**headers, "content-type": "text/plain"})
    assert as_text.status_code == 422 and as_text.json()["detail"] == [  # only JSON is read as a report
        {
            "where": "body",
            "problem": "Input should be a valid dictionary or object to extract fields from; the body was not read "
            "as JSON: send it with content-type: application/json",
        }
    ]
    injected = "'; DROP TABLE incidents; -- 占道 \" OR 1=1"
    stored = client.post("/v1/incidents", json={**GOOD, "description": injected, "address": injected}, headers=headers)
    assert stored.status_code == 201, stored.text
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT description, address FROM incidents WHERE code = :c"), {"c": stored.json()["code"]}
        ).one()
    assert tuple(row) == (injected, injected)  # kept as text, never run


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"lon": "nan", "lat": "23.37"}, "not finite numbers"),
        ({"lon": "23.371", "lat": "104.244"}, "look swapped"),
        ({"lon": "104.244", "lat": "23.371", "crs": "EPSG:99999"}, "unknown crs"),
        ({"lon": "104.244; DROP TABLE grids", "lat": "23.371"}, "is not a number"),
        ({"lat": "23.371"}, "lon is missing"),
        ({"lon": "104.244", "lat": "23.371", "at": "yesterday"}, "not an ISO 8601 moment"),
    ],
)
def test_bad_owner_questions(client: TestClient, params: dict[str, str], words: str) -> None:
    response = client.get("/v1/owner", params=params)
    assert response.status_code == 422
    assert words in response.json()["message"]


def test_gbk_csv_from_chinese_excel_is_read(client: TestClient, keys: Keys, engine: Engine) -> None:
    gbk = (
        "lon,lat,item_code,source,reported_at,description,code\n"
        f"{GRID_1[0]},{GRID_1[1]},0508,patrol,2025-10-01T09:00:00+08:00,东风路占道经营,GBK-1\n"
    ).encode("gbk")
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    imported = client.post("/v1/incidents/bulk", content=gbk, headers=headers)
    assert imported.status_code == 201, imported.text
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT description FROM incidents WHERE code = 'GBK-1'")).scalar_one()
            == "东风路占道经营"
        )
    batch = client.post(
        "/v1/owner/batch", content="lon,lat,地址\n104.2430,23.3680,文笔路\n".encode("gbk"), headers=headers
    )
    assert batch.status_code == 200 and "文笔路" in batch.text and "532601001008006" in batch.text


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("lon,lat\n1,2\n".encode("utf-16"), "looks like UTF-16 or binary"),
        (b"PK\x03\x04 workbook", "is a zip (an .xlsx workbook?)"),
        (b"lon,lat,item_code,source\n104.2,23.3,0508,patrol,\xff\xff\xff\n", "neither UTF-8 nor GBK"),
    ],
)
def test_files_in_no_known_encoding_are_refused(
    client: TestClient, keys: Keys, unchanged: None, content: bytes, words: str
) -> None:
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    for path in ("/v1/incidents/bulk", "/v1/owner/batch"):
        response = client.post(path, content=content, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert words in response.json()["message"], path


def test_invalid_geojson_is_refused(client: TestClient, keys: Keys, unchanged: None) -> None:
    headers = {**keys.header("dispatcher"), "content-type": "application/geo+json"}
    for body, words in (
        (b'{"type": "Feat', "not valid GeoJSON"),
        (b'{"type": "Feature", "geometry": null}', "not a FeatureCollection"),
        (b'{"type": "FeatureCollection", "features": {"a": 1}}', "features is not a list"),
    ):
        response = client.post("/v1/owner/batch", content=body, headers=headers)
        assert response.status_code == 422 and words in response.json()["message"], body
    polygon = {"type": "Polygon", "coordinates": [[[104.24, 23.37], [104.25, 23.38], [104.25, 23.37], [104.24, 23.37]]]}
    cases = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": polygon,
                "properties": {"item_code": "0508", "source": "patrol", "reported_at": "2025-10-01T09:00:00+08:00"},
            }
        ],
    }
    refused = client.post("/v1/incidents/bulk", content=json.dumps(cases), headers=headers)
    assert refused.status_code == 422 and "nothing was imported" in refused.json()["message"]


def test_size_and_feature_limits_are_settings(database_url: str, role_keys: Keys, unchanged: None) -> None:
    from api.main import create_app

    settings = Settings(
        database=DatabaseSettings(DATABASE_URL=database_url),
        api=ApiSettings(max_upload_mb=1, max_body_kb=4, max_features=3),
    )
    with TestClient(create_app(settings)) as small:
        headers = {**role_keys.header("dispatcher"), "content-type": "text/csv"}
        huge = b"lon,lat\n" + b"104.2430,23.3680\n" * 70_000  # 1.2 MB
        response = small.post("/v1/owner/batch", content=huge, headers=headers)
        assert response.status_code == 413
        assert "over the limit of 1 MB (CITYGRID_API_MAX_UPLOAD_MB)" in response.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b"lon,lat\n"
            for _ in range(80):
                yield b"104.2430,23.3680\n" * 1000

        streamed = small.post("/v1/incidents/bulk", content=chunks(), headers=headers)
        assert streamed.status_code == 413 and "CITYGRID_API_MAX_UPLOAD_MB" in streamed.json()["message"]

        long_report = {**GOOD, "description": "x" * 5000}
        too_big = small.post("/v1/incidents", json=long_report, headers=role_keys.header("dispatcher"))
        assert too_big.status_code == 413 and "4 kB (CITYGRID_API_MAX_BODY_KB)" in too_big.json()["message"]

        def report_chunks() -> Iterator[bytes]:  # a report streamed without Content-Length, past the limit
            yield json.dumps({**GOOD, "description": ""})[:-2].encode()
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        report_headers = {**role_keys.header("dispatcher"), "content-type": "application/json"}
        streamed = small.post("/v1/incidents", content=report_chunks(), headers=report_headers)
        assert streamed.status_code == 413 and "4 kB (CITYGRID_API_MAX_BODY_KB)" in streamed.json()["message"]
        assert streamed.json()["code"] == "payload_too_large"
        moved = small.post("/v1/incidents/NONE/location", content=report_chunks(), headers=report_headers)
        assert moved.status_code == 413 and "4 kB (CITYGRID_API_MAX_BODY_KB)" in moved.json()["message"]

        four = b"lon,lat\n" + b"104.2430,23.3680\n" * 4
        over = small.post("/v1/owner/batch", content=four, headers=headers)
        assert over.status_code == 422 and "4 rows is more than 3 points" in over.json()["message"]
        cases = b"lon,lat,item_code,source,reported_at\n" + b"104.2430,23.3680,0508,patrol,2025-10-01\n" * 4
        over = small.post("/v1/incidents/bulk", content=cases, headers=headers)
        assert over.status_code == 422 and "4 rows, more than 3 (CITYGRID_API_MAX_FEATURES)" in over.json()["message"]


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["owner", "nan", "23.37"], "not finite numbers"),
        (["owner", "23.371", "104.244"], "look swapped"),
        (["owner", "104.244", "23.371", "--crs", "mars"], "unknown crs 'mars'"),
        (["owner", "104.244", "23.371", "--at", "yesterday"], "yesterday"),
        (["keys", "create", "--name", "x", "--role", "mayor"], "unknown role 'mayor'"),
        (["keys", "create", "--name", "x", "--role", "squad"], "acts within one subdistrict"),
        (["keys", "create", "--name", "x", "--role", "admin", "--subdistrict", "999"], "no subdistrict 999"),
        (["keys", "revoke", "999999"], "no active key 999999"),
        (["incidents", "reassign", "--generation", "99"], "no boundary generation 99"),
        (["audit", "--limit", "0"], "give 1 or more"),
    ],
)
def test_bad_command_lines_exit_non_zero_and_say_why(
    cli: CliRunner, unchanged: None, arguments: list[str], words: str
) -> None:
    result = cli.invoke(app, arguments)
    assert result.exit_code != 0, result.output
    assert words in " ".join(result.output.split()), result.output


def test_bad_files_on_the_command_line(cli: CliRunner, unchanged: None, tmp_path: Path) -> None:
    utf16 = tmp_path / "cases.csv"
    utf16.write_bytes("lon,lat,item_code,source\n104.2,23.3,0508,patrol\n".encode("utf-16"))
    result = cli.invoke(app, ["incidents", "import", str(utf16)])
    assert result.exit_code == 2 and "looks like UTF-16" in " ".join(result.output.split())

    layers = tmp_path / "layers"
    layers.mkdir()
    bowtie = [[[104.24, 23.37], [104.25, 23.38], [104.25, 23.37], [104.24, 23.38], [104.24, 23.37]]]
    market = {"code": "BOW1", "name": "蝴蝶市场", "kind": "农贸市场", "subdistrict_code": "532601001"}
    (layers / "markets.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": market, "geometry": {"type": "Polygon", "coordinates": bowtie}}
                ],
            }
        ),
        encoding="utf-8",
    )
    result = cli.invoke(app, ["load", str(layers)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert "markets.geojson" in said and "BOW1" in said and "--make-valid" in said
