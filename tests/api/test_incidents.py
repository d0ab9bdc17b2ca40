"""POST /v1/incidents: the chain stored equals the owner lookup's, due times, idempotency, duplicates, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from spatial.crs import wgs84_to_gcj02
from spatial.keys import revoke_key
from spatial.workflow import actions_from, add_working_time
from tests.api.casekit import GRID_1, GRID_2, Keys, made_keys, report

CST = timezone(timedelta(hours=8))
METRE_LON = 1 / (111_320 * 0.9179)  # degrees of longitude per metre at 23.38° N


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def post(client: TestClient, keys: Keys, body: dict[str, object], who: str = "dispatcher", **headers: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/incidents", json=body, headers={**keys.header(who), **headers})


def test_a_report_is_stored_with_the_chain_the_owner_lookup_gives(client: TestClient, keys: Keys) -> None:
    for at, member in (("2017-03-15T10:00:00+08:00", "P0395"), ("2017-05-15T10:00:00+08:00", "P0396")):
        response = post(client, keys, report(*GRID_1, at=at, item="0101"))
        assert response.status_code == 201, response.text
        case = response.json()
        assert response.headers["location"] == f"/v1/incidents/{case['code']}"
        assert case["code"].startswith("XC" + at[:10].replace("-", "") + "-")
        assert case["status"] == "collected"
        assert case["grid"] == {"code": "532601001001001", "name": case["grid"]["name"]}
        assert case["grid_member"]["id"] == member  # the holder on the day of the report (rotation 2017-04-01)
        owner = client.get("/v1/owner", params={"lon": GRID_1[0], "lat": GRID_1[1], "at": at}).json()
        assert case["grid"]["code"] == owner["grid"]["code"]
        assert case["community"] == {"code": owner["community"]["code"], "name": owner["community"]["name"]}
        assert case["subdistrict"]["code"] == owner["subdistrict"]["code"] == "532601001"
        assert case["squad"]["code"] == owner["squad"]["code"]
        assert case["grid_member"]["id"] == owner["grid_member"]["id"]
        assert case["street_chief"]["id"] == owner["street_chief"]["person"]["id"]
        assert case["outside"] is owner["outside"] is False
        events = client.get(f"/v1/incidents/{case['code']}", headers=keys.header("dispatcher")).json()["events"]
        assert [(e["action"], e["from_status"], e["to_status"], e["at"]) for e in events] == [
            ("report", None, "collected", datetime.fromisoformat(at).isoformat())
        ]


def test_a_gcj02_point_lands_where_its_wgs84_point_does(client: TestClient, keys: Keys) -> None:
    lon, lat = wgs84_to_gcj02(*GRID_2)
    response = post(client, keys, report(lon, lat, crs="gcj02", item="0102"))
    assert response.status_code == 201, response.text
    case = response.json()
    assert case["grid"]["code"] == "532601001001002"
    assert case["point"]["lon"] == pytest.approx(GRID_2[0], abs=1e-8)
    assert case["point"]["lat"] == pytest.approx(GRID_2[1], abs=1e-8)
    as_wgs84 = post(client, keys, report(lon, lat, item="0103"))  # the same numbers read as WGS-84: ≈365 m off
    assert as_wgs84.json()["grid"]["code"] != "532601001001002"


@pytest.mark.parametrize(
    ("n", "item", "reported", "due"),
    [
        (1, "0508", "2017-09-29T10:00:00+08:00", "2017-09-30T10:00:00+08:00"),  # 1 working day: 30 Sep was 调休
        (2, "0508", "2017-09-30T10:00:00+08:00", "2017-10-09T10:00:00+08:00"),  # then the National Day week
        (3, "0101", "2017-09-30T17:00:00+08:00", "2017-10-09T12:00:00+08:00"),  # 4 working hours
        (4, "0302", "2017-03-03T20:00:00+08:00", "2017-03-08T18:00:00+08:00"),  # 24 working hours from Friday night
    ],
)
def test_due_times_follow_the_official_calendar(
    client: TestClient, keys: Keys, n: int, item: str, reported: str, due: str
) -> None:
    lon = GRID_1[0] + 40 * METRE_LON * n  # apart, so that none is another's possible duplicate
    response = post(client, keys, report(lon, GRID_1[1], at=reported, item=item))
    assert response.status_code == 201, response.text
    got = datetime.fromisoformat(response.json()["due_at"])
    assert got == datetime.fromisoformat(due)
    item_limits = {"0508": (1, "working_days"), "0101": (4, "working_hours"), "0302": (24, "working_hours")}
    assert got == add_working_time(datetime.fromisoformat(reported), *item_limits[item])  # type: ignore[arg-type]


def test_a_retried_post_with_the_same_idempotency_key_returns_the_first_result(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    body = report(GRID_2[0] + 60 * METRE_LON, GRID_2[1], at="2025-04-01T09:00:00+08:00", item="0104")
    first = post(client, keys, body, **{"Idempotency-Key": "retry-7f3a"})
    again = post(client, keys, body, **{"Idempotency-Key": "retry-7f3a"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["code"] == first.json()["code"]
    assert again.json()["grid"] == first.json()["grid"]
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM incidents WHERE idempotency_key = 'retry-7f3a'")).scalar_one()
    assert count == 1

    changed = post(client, keys, {**body, "description": "another report"}, **{"Idempotency-Key": "retry-7f3a"})
    assert changed.status_code == 422
    assert changed.json()["code"] == "idempotency_key_reused"
    assert "use a new key" in changed.json()["message"]

    other_client = post(client, keys, body, who="admin", **{"Idempotency-Key": "retry-7f3a"})
    assert other_client.status_code == 201  # keys are per API key: another caller's key is its own
    assert other_client.json()["code"] != first.json()["code"]


def test_a_report_near_an_open_one_of_the_same_item_is_flagged_a_possible_duplicate(
    client: TestClient, keys: Keys
) -> None:
    lon, lat = GRID_2[0] - 80 * METRE_LON, GRID_2[1]
    first = post(client, keys, report(lon, lat, at="2025-05-06T09:00:00+08:00", item="0105")).json()
    assert first["duplicate_of"] is None
    near = post(client, keys, report(lon + 2 * METRE_LON, lat, at="2025-05-06T20:00:00+08:00", item="0105")).json()
    assert near["duplicate_of"] == first["code"]
    earlier = post(client, keys, report(lon, lat, at="2025-05-05T10:00:00+08:00", item="0105")).json()
    assert earlier["duplicate_of"] == first["code"]  # within 24 h either way
    far = post(client, keys, report(lon + 5 * METRE_LON, lat, at="2025-05-06T20:00:00+08:00", item="0105")).json()
    assert far["duplicate_of"] is None
    other_item = post(client, keys, report(lon, lat, at="2025-05-06T20:00:00+08:00", item="0106")).json()
    assert other_item["duplicate_of"] is None
    next_day = post(client, keys, report(lon, lat, at="2025-05-07T09:30:00+08:00", item="0105")).json()
    assert next_day["duplicate_of"] == near["code"]  # the first is 24.5 h before; `near` is within 24 h
    later = post(client, keys, report(lon, lat, at="2025-05-09T09:30:00+08:00", item="0105")).json()
    assert later["duplicate_of"] is None


def test_a_closed_or_rejected_case_is_not_a_duplicate_target(client: TestClient, keys: Keys) -> None:
    lon, lat = GRID_2[0] - 120 * METRE_LON, GRID_2[1]
    first = post(client, keys, report(lon, lat, at="2025-05-12T09:00:00+08:00", item="0107")).json()
    rejected = client.post(
        f"/v1/incidents/{first['code']}/reject", json={"note": "not our matter"}, headers=keys.header("dispatcher")
    )
    assert rejected.status_code == 200, rejected.text
    second = post(client, keys, report(lon, lat, at="2025-05-12T10:00:00+08:00", item="0107")).json()
    assert second["duplicate_of"] is None


def test_reports_that_cannot_be_stored_say_why(client: TestClient, keys: Keys, engine: Engine) -> None:
    body = report(*GRID_1, at="2025-06-01T09:00:00+08:00", item="0108")
    no_key = client.post("/v1/incidents", json=body)
    assert no_key.status_code == 401 and "X-API-Key" in no_key.json()["message"]
    wrong_key = client.post("/v1/incidents", json=body, headers={"X-API-Key": "cg_not-a-key"})
    assert wrong_key.status_code == 401 and wrong_key.json()["code"] == "unauthorized"
    assert post(client, keys, body, who="planner").status_code == 403
    public_hotline = post(client, keys, body, who="public")
    assert public_hotline.status_code == 403 and "open311" in public_hotline.json()["message"]
    bearer = client.post(
        "/v1/incidents",
        json={**body, "source": "open311"},
        headers={"Authorization": f"Bearer {keys.secrets['public']}"},
    )
    assert bearer.status_code == 201

    cases = {
        "unknown item": (report(*GRID_1, item="9999"), "not one of the 147 catalogue items"),
        "not covered": (report(104.0, 23.0), "not covered"),
        "swapped": (report(GRID_1[1], GRID_1[0]), "swapped"),
        "naive time": (report(*GRID_1, at="2025-06-01T09:00:00"), "no time zone"),
        "future": (report(*GRID_1, at="2099-01-01T09:00:00+08:00"), "in the future"),
        "photo": (report(*GRID_1, photos=["file:///tmp/a.jpg"]), "not an http(s) URL"),
        "crs": (report(*GRID_1, crs="EPSG:999999"), "unknown crs"),
    }
    for name, (bad, words) in cases.items():
        response = post(client, keys, bad)
        assert response.status_code == 422, name
        assert words in response.json()["message"], (name, response.json())
    assert post(client, keys, report(*GRID_1, source="radio")).status_code == 422

    with engine.begin() as conn:
        revoke_key(conn, keys.ids[list(keys.secrets).index("public_other")])
    revoked = post(client, keys, {**body, "source": "open311"}, who="public_other")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]


def test_overdue_cases_are_listed(client: TestClient, keys: Keys) -> None:
    params = {"overdue": "true", "at": "2017-07-01T00:00:00+08:00", "source": "hotline", "limit": 5}
    page = client.get("/v1/incidents", params=params, headers=keys.header("dispatcher")).json()
    assert page["numberMatched"] == 770  # 769 still open, and one closed since
    assert page["numberReturned"] == 5
    for feature in page["features"]:
        assert feature["properties"]["due_at"] < "2017-07-01"
    # overdue at a moment past: open then, whatever the case is now (these four were closed 1-3 June)
    june = client.get(
        "/v1/incidents",
        params={**params, "at": "2017-06-01T00:00:00+08:00", "status": "closed", "limit": 1000},
        headers=keys.header("dispatcher"),
    ).json()
    assert june["numberMatched"] == 4
    assert sorted(f["properties"]["code"] for f in june["features"]) == [
        "RX2017-002275", "RX2017-003025", "RX2017-003044", "RX2017-003054",
    ]  # fmt: skip
    kaihua = client.get(
        "/v1/incidents", params={**params, "subdistrict_code": "532601001"}, headers=keys.header("dispatcher")
    ).json()
    assert kaihua["numberMatched"] == 375
    handling = client.get(
        "/v1/incidents", params={**params, "status": "handling"}, headers=keys.header("dispatcher")
    ).json()
    assert handling["numberMatched"] == 140


def test_a_case_reads_with_its_chain_and_next_actions(client: TestClient, engine: Engine, keys: Keys) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT item_code, status, grid_code, grid_member_id, due_at, satisfaction"
                " FROM incidents WHERE code = :c"
            ),
            {"c": "RX2017-000001"},
        ).one()
    case = client.get("/v1/incidents/RX2017-000001", headers=keys.header("dispatcher")).json()
    assert case["source"] == "hotline"
    assert (case["item"]["code"], case["status"], case["grid"]["code"]) == (row.item_code, row.status, row.grid_code)
    assert case["grid_member"]["id"] == row.grid_member_id
    assert datetime.fromisoformat(case["due_at"]) == row.due_at
    assert case["events"] == []  # the fixture's cases were loaded, not walked
    assert row.satisfaction is not None and case["next_actions"] == []  # closed and already evaluated
    assert [a["action"] for a in case["next_actions"]] == [
        a.name for a in actions_from(row.status, evaluated=row.satisfaction is not None)
    ]
    missing = client.get("/v1/incidents/RX1999-000001", headers=keys.header("dispatcher"))
    assert missing.status_code == 404 and "RX2017-000001" in missing.json()["message"]
