"""Administration over HTTP: duty handovers, people's details, boundary files — admin only, audited."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.api.casekit import GRID_1, Keys, made_keys
from tests.db.test_import_boundaries import write_shapefile
from tests.support import FIXTURES

GRID = "532601001001001"  # held by P0396 since the swap of 2017-04-01
HANDOVER = {"role": "grid_member", "target_code": GRID, "person_id": "P0395", "at": "2030-01-01T00:00:00+08:00"}


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def holder(client: TestClient, at: str) -> str:
    answer = client.get("/v1/owner", params={"lon": GRID_1[0], "lat": GRID_1[1], "at": at}).json()
    person: str = answer["grid_member"]["id"]
    return person


def test_a_handover_changes_the_owner_from_its_moment_on(client: TestClient, keys: Keys, engine: Engine) -> None:
    assert client.post("/v1/duties/handovers", json=HANDOVER).status_code == 401
    for role in ("squad", "dispatcher", "planner"):
        assert client.post("/v1/duties/handovers", json=HANDOVER, headers=keys.header(role)).status_code == 403
    try:
        done = client.post("/v1/duties/handovers", json=HANDOVER, headers=keys.header("admin"))
        assert done.status_code == 201, done.text
        assert done.json() == {
            "role": "grid_member", "target_kind": "grid", "target_code": GRID, "at": "2030-01-01T00:00:00+08:00",
            "previous_person_id": "P0396", "person_id": "P0395",
        }  # fmt: skip
        assert holder(client, "2029-12-31T23:59:00+08:00") == "P0396"
        assert holder(client, "2030-01-01T00:00:00+08:00") == "P0395"
        again = client.post("/v1/duties/handovers", json=HANDOVER, headers=keys.header("admin"))
        assert again.status_code == 409 and "already holds" in again.json()["message"]
        earlier = {**HANDOVER, "person_id": "P0397", "at": "2029-06-01T00:00:00+08:00"}
        clash = client.post("/v1/duties/handovers", json=earlier, headers=keys.header("admin"))
        assert clash.status_code == 409 and "starts after" in clash.json()["message"]
        with engine.connect() as conn:
            logged = conn.execute(
                text("SELECT action, actor, after->>'person_id' FROM audit_log WHERE table_name = 'duties' "
                     "AND after->>'target_code' = :g ORDER BY id DESC LIMIT 2"), {"g": GRID},
            ).all()  # fmt: skip
        assert [tuple(r) for r in logged] == [("insert", "test admin", "P0395"), ("update", "test admin", "P0396")]
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM duties WHERE target_code = :g AND valid_from = '2030-01-01T00:00:00+08:00'"),
                {"g": GRID},
            )
            conn.execute(
                text("UPDATE duties SET valid_to = NULL WHERE target_code = :g AND person_id = 'P0396' "
                     "AND role = 'grid_member' AND valid_to = '2030-01-01T00:00:00+08:00'"), {"g": GRID},
            )  # fmt: skip
    assert holder(client, "2030-06-01T00:00:00+08:00") == "P0396"


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"person_id": "P0004"}, 422, "is a squad_leader, not a grid_member"),
        ({"person_id": "P9999"}, 404, "no person P9999"),
        ({"target_code": "532601009009009"}, 404, "no grid 532601009009009"),
        ({"role": "mayor"}, 422, "body.role"),
        ({"at": "2030-01-01T00:00:00"}, 422, "has no time zone"),
    ],
)
def test_bad_handovers_are_refused(
    client: TestClient, keys: Keys, change: dict[str, str], status: int, words: str
) -> None:
    response = client.post("/v1/duties/handovers", json={**HANDOVER, **change}, headers=keys.header("admin"))
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


def test_people_phone_list_for_staff_and_changes_for_admins(client: TestClient, keys: Keys, engine: Engine) -> None:
    assert client.get("/v1/people", params={"role": "squad_leader"}).status_code == 401
    assert client.get("/v1/people", headers=keys.header("public")).status_code == 403
    leaders = client.get("/v1/people", params={"role": "squad_leader"}, headers=keys.header("squad")).json()
    assert [(p["id"], p["phone"]) for p in leaders] == [
        ("P0004", "0876-0000004"), ("P0124", "0876-0000124"), ("P0228", "0876-0000228"),
    ]  # fmt: skip
    assert client.patch("/v1/people/P0456", json={"phone": "x"}, headers=keys.header("squad")).status_code == 403
    bad = client.patch("/v1/people/P0456", json={"phone": "call me"}, headers=keys.header("admin"))
    assert bad.status_code == 422 and "is not a phone number" in bad.json()["message"]
    try:
        changed = client.patch("/v1/people/P0456", json={"phone": "13987654321"}, headers=keys.header("admin"))
        assert changed.status_code == 200 and changed.json()["phone"] == "13987654321"
        with engine.connect() as conn:
            entry = conn.execute(
                text("SELECT before->>'phone', after->>'phone', actor FROM audit_log WHERE table_name = 'people' "
                     "AND row_key = 'P0456' ORDER BY id DESC LIMIT 1"),
            ).one()  # fmt: skip
        assert tuple(entry) == ("0876-0000456", "13987654321", "test admin")
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE people SET phone = '0876-0000456' WHERE id = 'P0456'"))


def test_boundary_files_over_http_admin_only_and_dry_run_writes_nothing(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    body = (FIXTURES / "grids.geojson").read_bytes()
    headers = {"content-type": "application/geo+json"}
    path = "/v1/boundaries/grids"
    assert client.post(path, content=body, headers=headers).status_code == 401
    assert client.post(path, content=body, headers={**headers, **keys.header("planner")}).status_code == 403
    with engine.connect() as conn:
        generations = conn.execute(text("SELECT count(*) FROM boundary_generations")).scalar_one()
    dry = client.post(path, params={"dry_run": "true"}, content=body, headers={**headers, **keys.header("admin")})
    assert dry.status_code == 200, dry.text
    assert dry.json()["counts"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 193}
    assert dry.json()["written"] is False and dry.json()["problems"] == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM boundary_generations")).scalar_one() == generations
    wrong = client.post(path, content=b"not a file", headers={"content-type": "text/plain", **keys.header("admin")})
    assert wrong.status_code == 415


def test_a_zipped_gbk_shapefile_without_a_cpg_is_read_as_gbk_and_encoding_can_be_forced(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    shapefile = tmp_path / "wg.shp"
    write_shapefile(gpd.read_file(FIXTURES / "grids.geojson").to_crs(4544), shapefile, encoding="GBK", cpg=False)
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for part in sorted(tmp_path.glob("wg.*")):
            archive.write(part, part.name)
    headers = {"content-type": "application/zip", **keys.header("admin")}
    path = "/v1/boundaries/grids"
    dry = client.post(path, params={"dry_run": "true"}, content=body.getvalue(), headers=headers)
    assert dry.status_code == 200, dry.text
    assert dry.json()["counts"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 193}
    wrong = client.post(path, params={"dry_run": "true", "encoding": "utf-8"}, content=body.getvalue(), headers=headers)
    assert wrong.status_code == 422
    assert wrong.json()["message"].endswith(
        "/grids.shp.zip: its text is not utf-8 (invalid start byte at byte 0); give its real encoding"
    )


def test_a_boundary_valid_from_without_a_time_zone_is_beijing_time(client: TestClient, keys: Keys) -> None:
    body = (FIXTURES / "grids.geojson").read_bytes()
    headers = {"content-type": "application/geo+json", **keys.header("admin")}
    path = "/v1/boundaries/grids"
    later = client.post(path, params={"dry_run": "true", "valid_from": "2030-01-01"}, content=body, headers=headers)
    assert later.status_code == 200, later.text
    assert later.json()["valid_from"] == "2030-01-01T00:00:00+08:00"
    early = client.post(path, params={"dry_run": "true", "valid_from": "2010-01-01"}, content=body, headers=headers)
    assert early.status_code == 422
    assert early.json()["message"] == (
        "valid_from 2010-01-01T00:00:00+08:00 is not after generation 1's start 2016-01-01T00:00:00+08:00"
    )
