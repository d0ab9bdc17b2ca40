"""POST /v1/incidents/bulk: a file with bad rows refused whole (each row named) or imported with skip_invalid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from spatial.intake import rows_of
from tests.api.casekit import GRID_1, GRID_2, Keys, made_keys

COLUMNS = ("lon", "lat", "item_code", "source", "reported_at")
ROWS = [
    dict(zip(COLUMNS, row, strict=True))
    for row in (
        (GRID_1[0], GRID_1[1], "0508", "patrol", "2025-08-01T09:00:00+08:00"),
        (GRID_2[0], GRID_2[1], "0101", "media", "2025-08-01T10:00:00+08:00"),
        (GRID_1[0], GRID_1[1], "0000", "patrol", "2025-08-01T11:00:00+08:00"),
        (GRID_2[0], GRID_2[1], "0302", "patrol", "yesterday"),
        (GRID_2[0] + 0.0005, GRID_2[1], "0302", "grid_member", "2025-08-02"),
    )
]


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM incidents")).scalar_one())


def test_a_file_with_bad_rows_is_refused_whole_then_imported_with_skip_invalid(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    body = rows_of(ROWS)
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    before = count(engine)
    refused = client.post("/v1/incidents/bulk", content=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["code"] == "import_refused"
    assert refused.json()["detail"]["errors"] == [
        {"row": 3, "error": "item_code 0000 is not one of the 147 catalogue items"},
        {"row": 4, "error": "reported_at yesterday is not an ISO 8601 time such as 2017-05-01T09:30:00+08:00, "
                            "or no such day"},
    ]  # fmt: skip
    assert count(engine) == before

    imported = client.post("/v1/incidents/bulk", params={"skip_invalid": "true"}, content=body, headers=headers)
    assert imported.status_code == 201, imported.text
    report = imported.json()
    assert (report["rows"], report["inserted"], report["invalid"], report["errors_listed"]) == (5, 3, 2, 2)
    assert count(engine) == before + 3
    with engine.connect() as conn:
        grids = (
            conn.execute(text("SELECT grid_code FROM incidents WHERE api_key_id = :k ORDER BY id"), {"k": keys.ids[0]})
            .scalars()
            .all()
        )
    assert grids == ["532601001001001", "532601001001002", "532601001001002"]


def test_geojson_bodies_roles_and_media_types(client: TestClient, keys: Keys) -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(GRID_1)},
             "properties": {"item_code": "0111", "reported_at": "2025-08-03T20:00:00+08:00"}},
        ],
    }  # fmt: skip
    geojson = json.dumps(collection).encode()
    response = client.post(
        "/v1/incidents/bulk", params={"source": "patrol"}, content=geojson,
        headers={**keys.header("admin"), "content-type": "application/geo+json"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["inserted"] == 1
    squad = client.post(
        "/v1/incidents/bulk", content=rows_of(ROWS[:1]), headers={**keys.header("squad"), "content-type": "text/csv"}
    )
    assert squad.status_code == 403
    wrong = client.post(
        "/v1/incidents/bulk", content=b"{}", headers={**keys.header("dispatcher"), "content-type": "text/plain"}
    )
    assert wrong.status_code == 415 and "text/csv" in wrong.json()["message"]


HEADER_LINE = "lon,lat,item_code,source,reported_at\n"
GOOD_LINE = f"{GRID_1[0]},{GRID_1[1]},0508,hotline,2025-08-01T09:00:00+08:00\n"


@pytest.mark.parametrize(
    ("bad_line", "message", "problem"),
    [
        (f"{GRID_1[0]},{GRID_1[1]},0508,hotline,2025-08-01T09:00:00+08:00,extra\n",
         "row 2 (line 3 counting the header) has more values than the header's 5 columns: quote a value that has a "
         'comma in it ("a, b") or name every column in the header; nothing was imported',
         "extra data after last expected column"),
        (f"{GRID_1[0]},{GRID_1[1]},0508,hotline\n",
         "row 2 (line 3 counting the header) has fewer values than the header's 5 columns: give every row a value "
         "for each column (an empty one where there is none); nothing was imported",
         'missing data for column "c4"'),
        (f'{GRID_1[0]},{GRID_1[1]},0508,"hotline,2025-08-01T09:00:00+08:00\n',
         'row 2 (line 3 counting the header) opens a quoted value (") that is never closed: close the quote, and '
         'double a quote inside a quoted value (""); nothing was imported',
         "unterminated CSV quoted field"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_csv_with_the_header_columns_is_refused_naming_the_row(
    client: TestClient, keys: Keys, engine: Engine, bad_line: str, message: str, problem: str
) -> None:
    body = (HEADER_LINE + GOOD_LINE + bad_line).encode()
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    before = count(engine)
    for params in ({}, {"skip_invalid": "true"}):  # no row can be skipped: the file cannot be read past it
        refused = client.post("/v1/incidents/bulk", params=params, content=body, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json() == {"code": "invalid_input", "message": message, "detail": {"row": 2, "problem": problem}}
    assert count(engine) == before


def test_a_number_float8_cannot_hold_is_a_bad_row_like_any_other(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    out_of_range = " is out of range (lon -180..180, lat -90..90, in at most 100 characters with an exponent under 100)"
    body = (
        HEADER_LINE
        + GOOD_LINE
        + "1e400,23.3680,0508,hotline,2025-08-01T09:00:00+08:00\n"
        + f"{GRID_1[0]},-1e-400,0508,hotline,2025-08-01T09:00:00+08:00\n"
        + f"{GRID_1[0]}{'0' * 100},{GRID_1[1]},0508,hotline,2025-08-01T09:00:00+08:00\n"
        + f"{GRID_1[0] / 100}e0002,{GRID_1[1] * 10}E-1,0508,hotline,2025-08-01T09:00:00+08:00\n"  # read as before
    ).encode()
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    before = count(engine)
    refused = client.post("/v1/incidents/bulk", content=body, headers=headers)
    assert refused.status_code == 422, refused.text
    errors = [
        {"row": 2, "error": "lon 1e400" + out_of_range},
        {"row": 3, "error": "lat -1e-400" + out_of_range},
        {"row": 4, "error": f"lon {GRID_1[0]}{'0' * 100}" + out_of_range},
    ]
    assert refused.json()["detail"]["errors"] == errors
    assert count(engine) == before
    imported = client.post("/v1/incidents/bulk", params={"skip_invalid": "true"}, content=body, headers=headers)
    assert imported.status_code == 201, imported.text
    assert (imported.json()["inserted"], imported.json()["errors"]) == (2, errors)
    assert count(engine) == before + 2


def test_rows_the_single_intake_would_refuse_are_bad_rows(client: TestClient, keys: Keys, engine: Engine) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()  # within the clock skew: taken
    later = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    at = "2025-08-01T09:00:00+08:00"
    where = f"{GRID_1[0]},{GRID_1[1]},0508,hotline"
    body = (
        "lon,lat,item_code,source,reported_at,status,due_at,closed_at,photos\n"
        f"{where},{at},,,,https://photos.example/1.jpg https://photos.example/2.jpg\n"
        f"{where},2099-04-01T08:00:00+08:00,,,,\n"
        f"{where},{later},,,,\n"
        f"{where},{at},closed,,2099-01-01T00:00:00+08:00,\n"
        f"{where},{at},,2025-07-31T09:00:00+08:00,,\n"
        f"{where},{at},closed,,2025-07-31T09:00:00+08:00,\n"
        f"{where},{at},,,,not-a-url;javascript:alert(1)\n"
        f"{where},{at},,,,https://photos.example/1.jpg;ftp://photos.example/2.jpg\n"
        f"{where},{soon},,,,\n"
    ).encode()
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    before = count(engine)
    imported = client.post("/v1/incidents/bulk", params={"skip_invalid": "true"}, content=body, headers=headers)
    assert imported.status_code == 201, imported.text
    how = "upload the photo and give its address (several: one space, comma or semicolon between them)"
    assert imported.json()["errors"] == [
        {"row": 2, "error": "reported_at 2099-04-01T08:00:00+08:00 is in the future: check the time and its zone"},
        {"row": 3, "error": f"reported_at {later} is in the future: check the time and its zone"},
        {"row": 4, "error": "closed_at 2099-01-01T00:00:00+08:00 is in the future: check the time and its zone"},
        {"row": 5, "error": "due_at is before reported_at"},
        {"row": 6, "error": "closed_at is before reported_at"},
        {"row": 7, "error": f"photo 'not-a-url' is not an http(s) URL: {how}"},
        {"row": 8, "error": f"photo 'ftp://photos.example/2.jpg' is not an http(s) URL: {how}"},
    ]
    assert (imported.json()["rows"], imported.json()["inserted"]) == (9, 2)
    assert count(engine) == before + 2


def test_a_gbk_file_whose_first_64_kb_are_ascii_is_read_as_gbk(client: TestClient, keys: Keys, engine: Engine) -> None:
    ascii_rows = [
        f"{GRID_1[0]},{GRID_1[1]},0508,patrol,2025-08-01T09:00:00+08:00,plain ascii {n:04d}\n" for n in range(1100)
    ]
    header = "lon,lat,item_code,source,reported_at,description\n"
    assert len((header + "".join(ascii_rows)).encode()) > 65_536
    last = f"{GRID_2[0]},{GRID_2[1]},0508,patrol,2025-08-01T09:00:00+08:00,东风路占道经营\n"
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    before = count(engine)
    imported = client.post(
        "/v1/incidents/bulk", content=(header + "".join(ascii_rows) + last).encode("gbk"), headers=headers
    )
    assert imported.status_code == 201, imported.text
    assert (imported.json()["rows"], imported.json()["inserted"]) == (1101, 1101)
    with engine.connect() as conn:
        description = conn.execute(text("SELECT description FROM incidents ORDER BY id DESC LIMIT 1")).scalar_one()
    assert description == "东风路占道经营"

    # still one encoding per file: UTF-8 where the text starts to be more than ASCII, GBK 64 kB further on
    body = (header + "".join(ascii_rows) + last + "".join(ascii_rows)).encode() + last.encode("gbk")
    refused = client.post("/v1/incidents/bulk", content=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["message"] == (
        "the file is utf-8 text where it starts to be more than ASCII, but row 2202 (line 2203 counting the header) "
        "has bytes that are not utf-8: save the whole file in one encoding, UTF-8 or GBK, and send it again"
    )
    assert count(engine) == before + 1101
