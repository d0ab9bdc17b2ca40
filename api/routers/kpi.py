"""``/v1/kpi``: the subdistricts', communities' and grids' scores, and the quarterly PK of the subdistricts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from api.access import allow
from api.deps import ConnectionDep
from spatial import access, kpi
from spatial.errors import InvalidInput
from spatial.layers.incidents import SOURCES

router = APIRouter(prefix="/v1/kpi", tags=["kpi"])

SOURCE_HELP = f"narrow to one or more sources ({', '.join(SOURCES)}); default: every source. The seed's hotline "
SOURCE_HELP += "figures are source=hotline"


def _wants_csv(request: Request, format_: str | None) -> bool:
    if format_ is not None:
        return format_ == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _csv(body: str, filename: str) -> Response:
    return Response(
        body.encode("utf-8-sig"),  # a BOM, so that Excel reads the Chinese names as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "",
    summary="Scores per subdistrict, community or grid: 结案率, 按期结案率, 返工率, satisfaction, handling time",
    description="Cases reported in the period count. " + "; ".join(f"{k}: {v}" for k, v in kpi.DEFINITIONS.items()),
    **allow(*access.SCORE_READERS, doing="read scores"),
)
def scores(
    request: Request,
    conn: ConnectionDep,
    period: Annotated[str, Query(description="2017, 2017H1, 2017Q2 or 2017-05 (Beijing time)")],
    by: Literal["subdistrict", "community", "grid"] = "subdistrict",
    source: Annotated[list[str] | None, Query(description=SOURCE_HELP)] = None,
    at: Annotated[datetime | None, Query(description="the moment 'overdue' is judged at (default: now)")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv to download")] = None,  # noqa: A002
) -> Any:
    """Return the scores of every unit for the period, and the city's total; JSON or CSV."""
    if at is not None and at.tzinfo is None:
        raise InvalidInput(f"at={at.isoformat()} has no time zone: add one, e.g. +08:00")
    result = kpi.kpi(conn, period=kpi.parse_period(period), by=by, sources=tuple(source or ()) or None, at=at)
    if _wants_csv(request, format):
        return _csv(kpi.kpi_csv(result), f"kpi-{result['period']['label']}-{by}.csv")
    return JSONResponse(result)


@router.get(
    "/pk",
    summary="The quarterly PK (季度PK): the three subdistricts ranked on the four themes",
    **allow(*access.SCORE_READERS, doing="read the PK ranking"),
)
def pk_ranking(
    request: Request,
    conn: ConnectionDep,
    quarter: Annotated[str, Query(description="e.g. 2017Q2")],
    source: Annotated[list[str] | None, Query(description=SOURCE_HELP)] = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv to download")] = None,  # noqa: A002
) -> Any:
    """Return each theme's ranking with the scores and counts behind every rank; JSON or CSV."""
    result = kpi.pk(conn, quarter=kpi.parse_quarter(quarter), sources=tuple(source or ()) or None)
    if _wants_csv(request, format):
        return _csv(kpi.pk_csv(result), f"pk-{result['quarter']['label']}.csv")
    return JSONResponse(result)
