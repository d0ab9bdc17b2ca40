"""The closed loop over HTTP: every state, a failed check back to handling, every illegal step, roles, moves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from spatial.workflow import ACTIONS, actions_from
from tests.api.casekit import GRID_1, GRID_2, WOLONG_POINT, Keys, made_keys, report

METRE_LON = 1 / (111_320 * 0.9179)

# The steps that bring a new case to each status (an admin key may take every step).
PATHS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "collected": [],
    "registered": [("register", {})],
    "dispatched": [("register", {}), ("dispatch", {})],
    "handling": [("register", {}), ("dispatch", {}), ("accept", {})],
    "feedback": [("register", {}), ("dispatch", {}), ("accept", {}), ("feedback", {})],
    "verified": [("register", {}), ("dispatch", {}), ("accept", {}), ("feedback", {}), ("verify", {})],
    "closed": [("register", {}), ("dispatch", {}), ("accept", {}), ("feedback", {}), ("verify", {}), ("close", {})],
    "rejected": [("reject", {"note": "not a matter of the catalogue"})],
}


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def new_case(
    client: TestClient, keys: Keys, n: int, *, who: str = "admin", at: str = "2025-07-01T09:00:00+08:00"
) -> str:
    body = report(
        GRID_1[0] + 30 * METRE_LON * n, GRID_1[1], at=at, item="0109", source="open311" if who == "public" else "patrol"
    )
    response = client.post("/v1/incidents", json=body, headers=keys.header(who))
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


def step(client: TestClient, keys: Keys, code: str, action: str, who: str = "admin", **body: Any):  # type: ignore[no-untyped-def]
    return client.post(f"/v1/incidents/{code}/{action}", json=body, headers=keys.header(who))


def test_a_case_walks_the_whole_loop_with_a_failed_check_sent_back_to_handling(client: TestClient, keys: Keys) -> None:
    code = new_case(client, keys, 1, who="public")
    walk = [
        ("register", "dispatcher", {"at": "2025-07-01T09:30:00+08:00"}, "registered"),
        ("dispatch", "dispatcher", {"at": "2025-07-01T09:35:00+08:00"}, "dispatched"),
        ("accept", "squad", {"at": "2025-07-01T10:00:00+08:00"}, "handling"),
        ("feedback", "squad", {"at": "2025-07-01T15:00:00+08:00", "note": "stall removed"}, "feedback"),
        ("rework", "grid_member", {"at": "2025-07-01T16:00:00+08:00", "note": "the stall is back"}, "handling"),
        ("feedback", "squad", {"at": "2025-07-02T10:00:00+08:00", "note": "stall removed, owner warned"}, "feedback"),
        ("verify", "grid_member", {"at": "2025-07-02T11:00:00+08:00"}, "verified"),
        ("close", "dispatcher", {"at": "2025-07-02T11:30:00+08:00"}, "closed"),
        ("evaluate", "public", {"at": "2025-07-03T09:00:00+08:00", "satisfaction": "basically_satisfied"}, "closed"),
    ]
    for action, who, body, status in walk:
        response = step(client, keys, code, action, who, **body)
        assert response.status_code == 200, (action, response.text)
        assert response.json()["status"] == status
    case = client.get(f"/v1/incidents/{code}", headers=keys.header("dispatcher")).json()
    assert case["reworks"] == 1
    assert case["closed_at"] == "2025-07-02T11:30:00+08:00"
    assert case["satisfaction"] == "basically_satisfied"
    assert case["next_actions"] == []
    assert [(e["action"], e["from_status"], e["to_status"]) for e in case["events"]] == [
        ("report", None, "collected"),
        ("register", "collected", "registered"),
        ("dispatch", "registered", "dispatched"),
        ("accept", "dispatched", "handling"),
        ("feedback", "handling", "feedback"),
        ("rework", "feedback", "handling"),
        ("feedback", "handling", "feedback"),
        ("verify", "feedback", "verified"),
        ("close", "verified", "closed"),
        ("evaluate", "closed", "closed"),
    ]
    assert case["events"][5]["note"] == "the stall is back"
    assert case["events"][5]["actor"] == "test grid_member (P0395)"


def test_every_illegal_step_is_a_409_that_names_the_allowed_ones(client: TestClient, keys: Keys) -> None:
    tried = 0
    for n, (status, path) in enumerate(PATHS.items(), start=2):
        code = new_case(client, keys, n)
        for action, body in path:
            assert step(client, keys, code, action, **body).status_code == 200
        allowed = [a.name for a in actions_from(status)]
        assert [
            a["action"]
            for a in client.get(f"/v1/incidents/{code}", headers=keys.header("dispatcher")).json()["next_actions"]
        ] == allowed
        for action in ACTIONS:
            if action.name in allowed:
                continue
            body = {"satisfaction": "satisfied"} if action.name == "evaluate" else {"note": "trying"}
            response = step(client, keys, code, action.name, **body)
            assert response.status_code == 409, (status, action.name, response.text)
            error = response.json()
            assert error["code"] == "conflict"
            assert error["detail"]["status"] == status
            assert [a["action"] for a in error["detail"]["allowed"]] == allowed
            for name in allowed:
                assert name in error["message"]
            tried += 1
    assert tried == 68  # 8 statuses × 10 actions, less the 12 allowed ones


def test_evaluation_and_deferral_are_allowed_once(client: TestClient, keys: Keys) -> None:
    code = new_case(client, keys, 20)
    for action, body in PATHS["closed"]:
        step(client, keys, code, action, **body)
    assert step(client, keys, code, "evaluate", satisfaction="dissatisfied").status_code == 200
    again = step(client, keys, code, "evaluate", satisfaction="satisfied")
    assert again.status_code == 409 and "already evaluated: dissatisfied" in again.json()["message"]

    deferred = new_case(client, keys, 21)
    step(client, keys, deferred, "register")
    assert step(client, keys, deferred, "defer", note="waiting for the owner to return").json()["deferred"] is True
    twice = step(client, keys, deferred, "defer", note="still waiting")
    assert twice.status_code == 409 and "already deferred" in twice.json()["message"]
    assert [a["action"] for a in twice.json()["detail"]["allowed"]] == ["dispatch"]


def test_roles_and_subdistricts_decide_who_may_step(client: TestClient, keys: Keys) -> None:
    code = new_case(client, keys, 30)  # in 开化街道 (Kaihua)
    squad_registers = step(client, keys, code, "register", "squad")
    assert squad_registers.status_code == 403
    assert squad_registers.json()["detail"]["allowed_roles"] == ["dispatcher", "admin"]
    assert step(client, keys, code, "register", "planner").status_code == 403
    assert client.post(f"/v1/incidents/{code}/register", json={}).status_code == 401
    step(client, keys, code, "register", "dispatcher")
    step(client, keys, code, "dispatch", "dispatcher")
    other_squad = step(client, keys, code, "accept", "squad_wolong")
    assert other_squad.status_code == 403 and "532601002" in other_squad.json()["message"]
    assert step(client, keys, code, "accept", "squad").status_code == 200

    wolong = client.post(
        "/v1/incidents", json=report(*WOLONG_POINT, at="2025-07-01T09:00:00+08:00", item="0110"),
        headers=keys.header("dispatcher"),
    ).json()["code"]  # fmt: skip
    step(client, keys, wolong, "register", "dispatcher")
    step(client, keys, wolong, "dispatch", "dispatcher")
    assert step(client, keys, wolong, "accept", "squad_wolong").status_code == 200

    mine = new_case(client, keys, 31, who="public")
    for action, body in PATHS["closed"]:
        step(client, keys, mine, action, **body)
    theirs = step(client, keys, mine, "evaluate", "public_other", satisfaction="satisfied")
    assert theirs.status_code == 403 and "only the cases it reported" in theirs.json()["message"]
    assert step(client, keys, mine, "evaluate", "public", satisfaction="satisfied").status_code == 200


def test_steps_need_their_notes_and_come_in_order(client: TestClient, keys: Keys) -> None:
    code = new_case(client, keys, 40)
    no_note = step(client, keys, code, "reject")
    assert no_note.status_code == 422 and "needs a note" in no_note.json()["message"]
    backwards = step(client, keys, code, "register", at="2025-06-30T09:00:00+08:00")
    assert backwards.status_code == 422 and "before the case's last step" in backwards.json()["message"]
    naive = step(client, keys, code, "register", at="2025-07-02T09:00:00")
    assert naive.status_code == 422 and "no time zone" in naive.json()["message"]
    for action, body in PATHS["closed"]:
        step(client, keys, code, action, **body)
    assert step(client, keys, code, "evaluate").status_code == 422  # satisfaction is required
    assert step(client, keys, code, "evaluate", satisfaction="delighted").status_code == 422
    assert client.post("/v1/incidents/RX1999-000001/register", json={}, headers=keys.header("admin")).status_code == 404


def test_a_step_dated_in_the_future_is_refused_and_the_case_goes_on(client: TestClient, keys: Keys) -> None:
    """A step dated ahead would hold back every later one (they come in order): it is refused, as a report is."""
    code = new_case(client, keys, 41)
    ahead = step(client, keys, code, "register", at="2030-05-01T10:00:00+08:00")
    assert ahead.status_code == 422
    assert ahead.json()["message"] == (
        "at=2030-05-01T10:00:00+08:00 is in the future: a step is recorded when it happened; check the clock, "
        "or leave at out to mean now"
    )
    moved = client.post(
        f"/v1/incidents/{code}/location",
        json={"lon": GRID_2[0], "lat": GRID_2[1], "reason": "re-measured", "at": "2030-05-01T10:00:00+08:00"},
        headers=keys.header("grid_member"),
    )
    assert moved.status_code == 422 and "is in the future" in moved.json()["message"]
    assert [step(client, keys, code, action).status_code for action in ("register", "dispatch")] == [200, 200]


def test_a_step_given_no_time_follows_a_last_step_a_little_ahead_of_this_clock(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    """Another writer's clock a minute ahead: the next step, given no time, is recorded at that step's time."""
    code = new_case(client, keys, 42)
    ahead = datetime.now(UTC) + timedelta(minutes=1)
    assert step(client, keys, code, "register", at=ahead.isoformat()).status_code == 200
    dispatched = step(client, keys, code, "dispatch")
    assert dispatched.status_code == 200, dispatched.text
    with engine.connect() as conn:
        times = (
            conn.execute(
                text(
                    "SELECT e.at FROM incident_events e JOIN incidents i ON i.id = e.incident_id"
                    " WHERE i.code = :code AND e.action IN ('register', 'dispatch') ORDER BY e.id"
                ),
                {"code": code},
            )
            .scalars()
            .all()
        )
    assert times == [ahead, ahead]


def test_moving_a_point_across_a_grid_boundary_reassigns_the_case_and_says_why(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    at = "2017-05-15T10:00:00+08:00"  # after the 2017-04-01 rotation: P0396 holds grid …001, P0395 …002
    body = report(*GRID_1, at=at, item="0112")
    case = client.post("/v1/incidents", json=body, headers=keys.header("dispatcher")).json()
    assert (case["grid"]["code"], case["grid_member"]["id"]) == ("532601001001001", "P0396")
    reason = "the caller described the shop east of the crossing"
    moved = client.post(
        f"/v1/incidents/{case['code']}/location",
        json={"lon": GRID_2[0], "lat": GRID_2[1], "reason": reason},
        headers=keys.header("grid_member"),
    )
    assert moved.status_code == 200, moved.text
    after = moved.json()
    owner = client.get("/v1/owner", params={"lon": GRID_2[0], "lat": GRID_2[1], "at": at}).json()
    assert after["grid"]["code"] == owner["grid"]["code"] == "532601001001002"
    assert after["grid_member"]["id"] == owner["grid_member"]["id"] == "P0395"
    assert after["community"]["code"] == owner["community"]["code"]
    assert after["street_chief"]["id"] == owner["street_chief"]["person"]["id"]
    assert after["point"] == {"lon": GRID_2[0], "lat": GRID_2[1]}
    event = after["events"][-1]
    assert event["action"] == "move"
    assert "re-assigned from grid 532601001001001 to 532601001001002" in event["note"]
    assert event["note"].endswith(reason)
    with engine.connect() as conn:
        metres = conn.execute(
            text(
                "SELECT ST_Distance(ST_SetSRID(ST_MakePoint(:a, :b), 4326)::geography,"
                " ST_SetSRID(ST_MakePoint(:c, :d), 4326)::geography)"
            ),
            {"a": GRID_1[0], "b": GRID_1[1], "c": GRID_2[0], "d": GRID_2[1]},
        ).scalar_one()
    assert event["note"].startswith(f"moved {round(metres, 1)} m")

    no_reason = client.post(
        f"/v1/incidents/{case['code']}/location", json={"lon": GRID_1[0], "lat": GRID_1[1], "reason": " "},
        headers=keys.header("dispatcher"),
    )  # fmt: skip
    assert no_reason.status_code == 422
    nowhere = client.post(
        f"/v1/incidents/{case['code']}/location", json={"lon": 104.0, "lat": 23.0, "reason": "typo"},
        headers=keys.header("dispatcher"),
    )  # fmt: skip
    assert nowhere.status_code == 422 and "not covered" in nowhere.json()["message"]
    assert (
        client.get(f"/v1/incidents/{case['code']}", headers=keys.header("dispatcher")).json()["grid"]["code"]
        == "532601001001002"
    )  # unchanged
    planner = client.post(
        f"/v1/incidents/{case['code']}/location", json={"lon": GRID_1[0], "lat": GRID_1[1], "reason": "x"},
        headers=keys.header("planner"),
    )  # fmt: skip
    assert planner.status_code == 403

    step(client, keys, case["code"], "reject", note="duplicate of a letter")
    closed = client.post(
        f"/v1/incidents/{case['code']}/location", json={"lon": GRID_1[0], "lat": GRID_1[1], "reason": "late fix"},
        headers=keys.header("dispatcher"),
    )  # fmt: skip
    assert closed.status_code == 409


def test_the_workflow_is_described(client: TestClient) -> None:
    described = client.get("/v1/incidents/workflow").json()
    assert [a["action"] for a in described["actions"]] == [a.name for a in ACTIONS]
    assert [s["status"] for s in described["statuses"]] == [
        "collected", "registered", "dispatched", "handling", "feedback", "verified", "closed", "rejected",
    ]  # fmt: skip
    rework = next(a for a in described["actions"] if a["action"] == "rework")
    assert (rework["from_statuses"], rework["to_status"], rework["roles"]) == (
        ["feedback"], "handling", ["grid_member", "dispatcher", "admin"],
    )  # fmt: skip
