"""Roles: each one allowed and refused where it should be, phone numbers and reporters only where needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from spatial.errors import InvalidInput
from spatial.keys import create_key, revoke_key
from tests.api.casekit import GRID_1, KAIHUA, WOLONG, WOLONG_POINT, Keys, made_keys, report

CENTRE = (104.2430, 23.3680)  # grid 532601001008006; its grid member is P0456 (0876-0000456)
CALLER = {"name": "李女士", "phone": "13987600000"}


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def reported(client: TestClient, keys: Keys, who: str, point: tuple[float, float], n: int) -> str:
    source = "open311" if who.startswith("public") else "hotline"
    body = report(point[0] + 0.0003 * n, point[1], item="0508", source=source, reporter=CALLER)
    response = client.post("/v1/incidents", json=body, headers=keys.header(who))
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


def test_phone_numbers_only_for_staff(client: TestClient, keys: Keys) -> None:
    params = {"lon": CENTRE[0], "lat": CENTRE[1]}
    anonymous = client.get("/v1/owner", params=params).json()
    public = client.get("/v1/owner", params=params, headers=keys.header("public")).json()
    assert {**anonymous, "at": None} == {**public, "at": None}
    assert anonymous["grid_member"] == {"id": "P0456", "name": "董凯", "title": "网格员"}
    assert "phone" not in anonymous["squad"]["leader"]
    assert "0876-" not in str(anonymous)
    for role in ("grid_member", "squad", "dispatcher", "planner", "admin"):
        staff = client.get("/v1/owner", params=params, headers=keys.header(role)).json()
        assert staff["grid_member"]["phone"] == "0876-0000456", role
        assert staff["squad"]["leader"]["phone"] == "0876-0000004", role


def test_a_bad_key_is_401_even_where_no_key_is_needed(client: TestClient, keys: Keys, engine: Engine) -> None:
    params = {"lon": CENTRE[0], "lat": CENTRE[1]}
    unknown = client.get("/v1/owner", params=params, headers={"X-API-Key": "cg_not-a-real-key"})
    assert unknown.status_code == 401 and "unknown API key" in unknown.json()["message"]
    with engine.begin() as conn:
        key, secret = create_key(conn, name="test soon revoked", role="dispatcher")
        assert key.id is not None
        revoke_key(conn, key.id)
    try:
        for method, path in (("GET", "/v1/owner"), ("GET", "/v1/incidents"), ("POST", "/v1/incidents")):
            response = client.request(
                method, path, params=params, json={}, headers={"Authorization": f"Bearer {secret}"}
            )
            assert response.status_code == 401, (path, response.text)
            assert "revoked" in response.json()["message"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM api_keys WHERE id = :id"), {"id": key.id})


@pytest.mark.parametrize(
    ("method", "path", "allowed", "refused"),
    [
        ("GET", "/v1/exports/illegal-buildings.csv", ("planner", "admin"), ("public", "squad", "dispatcher")),
        ("GET", "/v1/exports/incidents/totals", ("planner", "admin"), ("public", "grid_member", "dispatcher")),
        ("POST", "/v1/owner/batch", ("grid_member", "squad", "dispatcher", "planner", "admin"), ("public",)),
        ("POST", "/v1/incidents/bulk", ("dispatcher", "admin"), ("public", "squad", "planner")),
    ],
)
def test_roles_allowed_and_refused(
    client: TestClient, keys: Keys, method: str, path: str, allowed: tuple[str, ...], refused: tuple[str, ...]
) -> None:
    body = b"lon,lat\n104.2430,23.3680\n" if path.endswith("batch") else b""
    headers = {"content-type": "text/csv"}
    assert client.request(method, path, content=body, headers=headers).status_code == 401
    for role in refused:
        response = client.request(method, path, content=body, headers={**headers, **keys.header(role)})
        assert response.status_code == 403, (role, response.text)
        assert response.json()["detail"]["role"] == role
        assert "admin" in response.json()["detail"]["allowed_roles"]
    for role in allowed:
        response = client.request(method, path, content=body, headers={**headers, **keys.header(role)})
        # An empty file is refused for what it is (422), not for who sent it.
        assert response.status_code in ((422,) if path.endswith("bulk") else (200,)), (role, response.text)


def test_a_squad_reads_and_steps_only_its_own_subdistrict(client: TestClient, keys: Keys, engine: Engine) -> None:
    wolong_case = reported(client, keys, "dispatcher", WOLONG_POINT, 1)
    kaihua_case = reported(client, keys, "dispatcher", GRID_1, 2)
    for action in ("register", "dispatch"):
        for code in (wolong_case, kaihua_case):
            assert (
                client.post(f"/v1/incidents/{code}/{action}", json={}, headers=keys.header("dispatcher")).status_code
                == 200
            )

    touched = client.post(f"/v1/incidents/{wolong_case}/accept", json={}, headers=keys.header("squad"))
    assert touched.status_code == 403
    assert touched.json()["detail"] == {"key_subdistrict": KAIHUA, "subdistrict": WOLONG}
    assert client.get(f"/v1/incidents/{wolong_case}", headers=keys.header("squad")).status_code == 403
    assert client.get(f"/v1/incidents/{wolong_case}", headers=keys.header("grid_member")).status_code == 403
    assert client.get(f"/v1/incidents/{wolong_case}", headers=keys.header("squad_wolong")).status_code == 200
    assert client.post(f"/v1/incidents/{kaihua_case}/accept", json={}, headers=keys.header("squad")).status_code == 200
    assert (
        client.get(f"/v1/incidents/{wolong_case}/location", headers=keys.header("squad")).status_code == 405
    )  # moving is a POST; a GET is not a way round the scope

    asked_elsewhere = client.get("/v1/incidents", params={"subdistrict_code": WOLONG}, headers=keys.header("squad"))
    assert asked_elsewhere.status_code == 403
    with engine.connect() as conn:
        kaihua_cases = conn.execute(
            text("SELECT count(*) FROM incidents WHERE subdistrict_code = :s"), {"s": KAIHUA}
        ).scalar_one()
    own = client.get("/v1/incidents", params={"limit": 1000}, headers=keys.header("squad")).json()
    assert own["numberMatched"] == kaihua_cases
    assert {f["properties"]["subdistrict"]["code"] for f in own["features"]} == {KAIHUA}


def test_public_keys_see_only_their_own_reports(client: TestClient, keys: Keys) -> None:
    mine = reported(client, keys, "public", GRID_1, 3)
    theirs = reported(client, keys, "public_other", GRID_1, 4)
    assert client.get("/v1/incidents", headers={}).status_code == 401
    listed = client.get("/v1/incidents", headers=keys.header("public")).json()
    assert [f["properties"]["code"] for f in listed["features"]] == [mine]
    own = client.get(f"/v1/incidents/{mine}", headers=keys.header("public"))
    assert own.status_code == 200 and own.json()["reporter"] == CALLER
    assert "phone" not in own.json()["grid_member"]
    other = client.get(f"/v1/incidents/{theirs}", headers=keys.header("public"))
    assert other.status_code == 403 and "only the cases it reported" in other.json()["message"]


def test_reporters_only_for_the_roles_that_call_back(client: TestClient, keys: Keys) -> None:
    code = reported(client, keys, "dispatcher", GRID_1, 5)
    for role in ("dispatcher", "squad", "grid_member", "admin"):
        case = client.get(f"/v1/incidents/{code}", headers=keys.header(role)).json()
        assert case["reporter"] == CALLER, role
        assert case["grid_member"]["phone"].startswith("0876-"), role
    planner = client.get(f"/v1/incidents/{code}", headers=keys.header("planner")).json()
    assert "reporter" not in planner
    assert planner["grid_member"]["phone"].startswith("0876-")  # officers' phones are for all staff


def test_scoped_roles_need_a_subdistrict(conn) -> None:  # type: ignore[no-untyped-def]
    for role in ("squad", "grid_member"):
        with pytest.raises(InvalidInput, match="acts within one subdistrict"):
            create_key(conn, name="test unscoped", role=role)
    with pytest.raises(InvalidInput, match="unknown role 'mayor'"):
        create_key(conn, name="test", role="mayor")


def test_the_docs_say_which_role_each_endpoint_needs(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "an API key (`citygrid keys create`); `Authorization: Bearer cg_…` works too",
    }
    undocumented = []
    for path, operations in document["paths"].items():
        if not path.startswith(("/v1/", "/open311/", "/health", "/map")):
            continue
        for method, operation in operations.items():
            roles = operation.get("x-citygrid-roles")
            if not roles or not operation.get("description", "").startswith("**Roles:**"):
                undocumented.append(f"{method.upper()} {path}")
    assert undocumented == []
    exports = document["paths"]["/v1/exports/illegal-buildings.{fmt}"]["get"]
    assert exports["x-citygrid-roles"] == ["planner", "admin"]
    assert exports["description"].startswith("**Roles:** planner, admin.")
    assert set(exports["responses"]) >= {"200", "401", "403", "422"}
    register = document["paths"]["/v1/incidents/{code}/register"]["post"]
    assert register["x-citygrid-roles"] == ["dispatcher", "admin"]
