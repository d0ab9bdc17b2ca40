"""The audit log (migration 0007): say who is acting in a transaction, record bulk acts, read the log.

Row triggers on every data table write the entries; writers only name themselves with ``act_as`` at the
start of their transaction. A bulk writer calls ``bulk`` instead, which also quiets the row triggers for
the rest of its transaction, and records the whole file as one entry. Nothing here updates or deletes an
entry: the table refuses both.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.errors import InvalidInput
from spatial.keys import ApiKey

_ACT_AS = text(
    "SELECT set_config('citygrid.actor', :actor, true), set_config('citygrid.role', :role, true), "
    "set_config('citygrid.key_id', :key_id, true)"
)
_RECORD = text(
    "INSERT INTO audit_log (actor, role, api_key_id, action, table_name, rows, after) "
    "VALUES (citygrid_audit_actor(), nullif(current_setting('citygrid.role', true), ''), "
    "CAST(nullif(current_setting('citygrid.key_id', true), '') AS bigint), :action, :table, :rows, "
    "CAST(:after AS jsonb))"
)
COLUMNS = "id, at, actor, role, api_key_id, action, table_name, row_key, rows, before, after, db_user"


def act_as(conn: Connection, key: ApiKey) -> None:
    """Name ``key`` as the actor of every write in ``conn``'s current transaction."""
    conn.execute(_ACT_AS, {"actor": key.actor, "role": key.role, "key_id": "" if key.id is None else str(key.id)})


def bulk(conn: Connection, key: ApiKey | None = None) -> None:
    """Quiet the row triggers for this transaction (a bulk writer records its act with ``record``)."""
    if key is not None:
        act_as(conn, key)
    conn.execute(text("SELECT set_config('citygrid.bulk', 'on', true)"))


def record(conn: Connection, *, action: str, table: str, rows: int, detail: dict[str, Any]) -> None:
    """Record one act over ``rows`` rows of ``table`` (an import, a load) by this transaction's actor."""
    conn.execute(
        _RECORD,
        {"action": action, "table": table, "rows": rows, "after": json.dumps(detail, ensure_ascii=False, default=str)},
    )


def entries(
    conn: Connection,
    *,
    table: str | None = None,
    row_key: str | None = None,
    api_key_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Return one page of entries, newest first, and how many match."""
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{moment.isoformat()} has no time zone: add one, e.g. +08:00")
    conditions = ["true"]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for column, value in (("table_name", table), ("row_key", row_key), ("api_key_id", api_key_id)):
        if value is not None:
            conditions.append(f"{column} = :{column}")
            params[column] = value
    if since is not None:
        conditions.append("at >= :since")
        params["since"] = since
    if until is not None:
        conditions.append("at < :until")
        params["until"] = until
    where = " AND ".join(conditions)  # our own column names; values are bound
    rows = conn.execute(
        text(f"SELECT {COLUMNS} FROM audit_log WHERE {where} ORDER BY id DESC LIMIT :limit OFFSET :offset"), params
    ).mappings()
    found = [{**row, "at": row["at"].isoformat()} for row in rows]
    matched = conn.execute(text(f"SELECT count(*) FROM audit_log WHERE {where}"), params).scalar_one()
    return found, matched
