"""The audit log: every write recorded with who, when, before and after; nobody can alter it."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from spatial.cli import app
from tests.api.casekit import GRID_1, GRID_2, Keys, made_keys, report


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def entries(engine: Engine, table: str, row_key: str) -> list[dict]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM audit_log WHERE table_name = :t AND row_key = :k ORDER BY id"),
            {"t": table, "k": row_key},
        ).mappings()
        return [dict(r) for r in rows]


def test_a_report_and_its_steps_are_recorded_with_who_and_before_after(
    client: TestClient, keys: Keys, engine: Engine
) -> None:
    created = client.post(
        "/v1/incidents", json=report(*GRID_1, source="hotline"), headers=keys.header("dispatcher")
    ).json()
    code = created["code"]
    client.post(f"/v1/incidents/{code}/register", json={}, headers=keys.header("dispatcher"))
    log = entries(engine, "incidents", code)
    assert [(e["action"], e["actor"], e["role"]) for e in log] == [
        ("insert", "test dispatcher", "dispatcher"),
        ("update", "test dispatcher", "dispatcher"),
    ]
    assert log[0]["before"] is None and log[0]["after"]["status"] == "collected"
    assert (log[1]["before"]["status"], log[1]["after"]["status"]) == ("collected", "registered")
    assert log[0]["api_key_id"] == keys.ids[list(keys.secrets).index("dispatcher")]
    assert log[0]["after"]["grid_code"] == created["grid"]["code"]


def test_the_log_refuses_update_delete_and_truncate_even_from_the_owner(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (actor, action, table_name) VALUES ('test', 'note', 'none')"))
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(DBAPIError, match="the audit log is append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE actor = 'someone else'")).scalar_one() == 0


def test_only_admins_read_the_log_and_no_method_writes_it(client: TestClient, keys: Keys) -> None:
    assert client.get("/v1/audit").status_code == 401
    for role in ("public", "squad", "dispatcher", "planner"):
        assert client.get("/v1/audit", headers=keys.header(role)).status_code == 403, role
    page = client.get("/v1/audit", params={"table": "api_keys", "limit": 3}, headers=keys.header("admin"))
    assert page.status_code == 200
    assert page.json()["numberReturned"] == 3
    for entry in page.json()["entries"]:
        assert "key_hash" not in (entry["after"] or {}) and "key_hash" not in (entry["before"] or {})
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.request(method, "/v1/audit", headers=keys.header("admin")).status_code == 405, method


def test_a_bulk_import_is_one_entry_and_a_refused_one_none(client: TestClient, keys: Keys, engine: Engine) -> None:
    rows = "lon,lat,item_code,source,reported_at,code\n" + "".join(
        f"{GRID_2[0] + 0.0001 * n},{GRID_2[1]},0508,patrol,2025-10-0{n}T09:00:00+08:00,AUD-{n}\n" for n in range(1, 4)
    )
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    headers = {**keys.header("dispatcher"), "content-type": "text/csv"}
    bad = rows + "104.0,23.0,9999,patrol,2025-10-04T09:00:00+08:00,AUD-4\n"
    assert client.post("/v1/incidents/bulk", content=bad, headers=headers).status_code == 422
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == before  # nothing written
    assert client.post("/v1/incidents/bulk", content=rows, headers=headers).status_code == 201
    with engine.connect() as conn:
        added = conn.execute(
            text("SELECT actor, action, table_name, rows, after FROM audit_log ORDER BY id DESC LIMIT 1"),
        ).all()
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == before + 1
    assert (added[0].actor, added[0].action, added[0].table_name, added[0].rows) == (
        "test dispatcher", "import", "incidents", 3,
    )  # fmt: skip
    assert added[0].after["inserted"] == 3


def test_the_fixture_load_is_one_entry_per_layer(engine: Engine) -> None:
    with engine.connect() as conn:
        loads = dict(
            conn.execute(text("SELECT table_name, rows FROM audit_log WHERE action = 'load' ORDER BY id")).all()
        )
    assert loads["grids"] == 193
    assert loads["subdistricts"] == 3
    assert loads["illegal_buildings"] == 823
    assert loads["incidents"] == 4746


def test_command_line_writes_name_the_operating_system_user(cli: CliRunner, engine: Engine, tmp_path: Path) -> None:
    created = cli.invoke(app, ["keys", "create", "--name", "test audit desk", "--role", "dispatcher"])
    assert created.exit_code == 0, created.output
    with engine.connect() as conn:
        key_id = conn.execute(text("SELECT id FROM api_keys WHERE name = 'test audit desk'")).scalar_one()
    revoked = cli.invoke(app, ["keys", "revoke", str(key_id)])
    assert revoked.exit_code == 0, revoked.output
    log = entries(engine, "api_keys", str(key_id))
    actor = f"citygrid command line ({getpass.getuser()})"
    assert [(e["action"], e["actor"], e["role"]) for e in log] == [
        ("insert", actor, "admin"),
        ("update", actor, "admin"),
    ]
    assert "key_hash" not in log[0]["after"] and log[1]["after"]["revoked_at"] is not None
    shown = cli.invoke(app, ["audit", "--table", "api_keys", "--row", str(key_id), "--json"])
    assert shown.exit_code == 0 and shown.output.count('"table_name": "api_keys"') == 2
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM api_keys WHERE id = :id"), {"id": key_id})
