"""``/v1/audit``: the audit log, read-only and for administrators; no endpoint changes it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.access import allow
from api.deps import ConnectionDep, SettingsDep
from spatial import access, audit

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "",
    summary="The audit log: who wrote what and when, with each row before and after (newest first)",
    **allow(*access.AUDIT_READERS, doing="read the audit log"),
)
def audit_log(
    conn: ConnectionDep,
    settings: SettingsDep,
    table: Annotated[str | None, Query(description="a table, e.g. incidents, grids, api_keys")] = None,
    row_key: Annotated[str | None, Query(description="a row's key, e.g. a case code RX2017-000001")] = None,
    api_key_id: Annotated[int | None, Query(description="acts of one API key")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with time zone")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with time zone")] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Return one page of audit entries and how many match."""
    page_size = min(limit or settings.api.default_page_size, settings.api.max_page_size)
    found, matched = audit.entries(
        conn, table=table, row_key=row_key, api_key_id=api_key_id, since=since, until=until, limit=page_size,
        offset=offset,
    )  # fmt: skip
    return {"numberMatched": matched, "numberReturned": len(found), "entries": found}
