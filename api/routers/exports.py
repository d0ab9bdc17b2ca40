"""``/v1/exports``: the demolition campaign's files, and incidents, stalls and markets, in five formats.

GET ``/v1/exports/{dataset}.{format}`` with the dataset's filters answers the file, named after the
filters and the date (``Content-Disposition``), with the totals per subdistrict in ``X-Citygrid-Totals``;
``/v1/exports/{dataset}/totals`` answers the same totals with names, as a sidecar.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from api.access import allow
from api.deps import EngineDep
from api.errors import documented
from spatial import access, exports
from spatial.layers.illegal_buildings import STATUSES as BUILDING_STATUSES
from spatial.layers.incidents import SOURCES as INCIDENT_SOURCES
from spatial.layers.incidents import STATUSES as INCIDENT_STATUSES

router = APIRouter(prefix="/v1/exports", tags=["exports"])

FormatName = Literal["geojson", "gpkg", "shp.zip", "csv", "kml"]
Header = Annotated[
    Literal["zh", "en"], Query(description="CSV header: Chinese labels (zh, default) or field names (en)")
]
Filters = dict[str, list[str]]

Many = Annotated[list[str] | None, Query(description="repeat for several values")]
Area = Annotated[list[str] | None, Query(description="code or name (current boundaries); repeat for several")]
Day = Annotated[str | None, Query(description="YYYY-MM-DD (inclusive)", examples=["2017-03-31"])]
One = Annotated[str | None, Query()]

FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the file; totals per subdistrict in the X-Citygrid-Totals header (JSON, codes)",
        "content": {fmt.media_type.split(";")[0]: {} for fmt in exports.FORMATS.values()},
    },
    **documented(422, s422="an unknown filter, value, area name or a reversed date range"),
}
EXPORTERS_ONLY = allow(*access.EXPORTERS, doing="download exports", responses=FILE_RESPONSES)
TOTALS_ONLY = allow(*access.EXPORTERS, doing="read export totals")


def _filters(**values: Sequence[str] | str | None) -> Filters:
    return {
        name: ([value] if isinstance(value, str) else list(value))
        for name, value in values.items()
        if value is not None
    }


def illegal_building_filters(
    status: Annotated[list[str] | None, Query(description=f"one of {', '.join(BUILDING_STATUSES)}")] = None,
    subdistrict: Area = None,
    community: Area = None,
    grid: Area = None,
    campaign: One = None,
    discovered_from: Day = None,
    discovered_to: Day = None,
    demolished_from: Day = None,
    demolished_to: Day = None,
) -> Filters:
    """Return the illegal-building filters of a request."""
    return _filters(
        status=status, subdistrict=subdistrict, community=community, grid=grid, campaign=campaign,
        discovered_from=discovered_from, discovered_to=discovered_to, demolished_from=demolished_from,
        demolished_to=demolished_to,
    )  # fmt: skip


def incident_filters(
    status: Annotated[list[str] | None, Query(description=f"one of {', '.join(INCIDENT_STATUSES)}")] = None,
    subdistrict: Area = None,
    community: Area = None,
    grid: Area = None,
    source: Annotated[list[str] | None, Query(description=f"one of {', '.join(INCIDENT_SOURCES)}")] = None,
    item: Many = None,
    reported_from: Day = None,
    reported_to: Day = None,
    closed_from: Day = None,
    closed_to: Day = None,
) -> Filters:
    """Return the incident filters of a request (days in Beijing time)."""
    return _filters(
        status=status, subdistrict=subdistrict, community=community, grid=grid, source=source, item=item,
        reported_from=reported_from, reported_to=reported_to, closed_from=closed_from, closed_to=closed_to,
    )  # fmt: skip


def stall_filters(
    subdistrict: Area = None,
    community: Area = None,
    grid: Area = None,
    kind: Many = None,
    licensed: Annotated[str | None, Query(description="true or false")] = None,
    market: Many = None,
) -> Filters:
    """Return the stall filters of a request."""
    return _filters(
        subdistrict=subdistrict, community=community, grid=grid, kind=kind, licensed=licensed, market=market
    )


def market_filters(
    subdistrict: Area = None,
    community: Area = None,
    grid: Area = None,
    kind: Many = None,
    rectified_from: Day = None,
    rectified_to: Day = None,
) -> Filters:
    """Return the market filters of a request."""
    return _filters(
        subdistrict=subdistrict, community=community, grid=grid, kind=kind, rectified_from=rectified_from,
        rectified_to=rectified_to,
    )  # fmt: skip


def _undeclared(request: Request, dataset: str) -> dict[str, list[str]]:
    """Return the query parameters that are not the dataset's filters, so that a misspelt one is refused."""
    known = {"header", *exports.dataset_named(dataset).filters}
    return {k: request.query_params.getlist(k) for k in request.query_params if k not in known}


def export_response(
    engine: EngineDep, request: Request, dataset: str, fmt: str, filters: Mapping[str, Sequence[str]], header: str
) -> Response:
    """Return the export as a streamed or written file, with its name and totals in the headers."""
    with engine.connect() as conn:
        export = exports.prepare(conn, dataset, fmt, {**_undeclared(request, dataset), **filters})
    totals_url = request.url_for("export_totals_" + dataset.replace("-", "_"))
    totals_query = [(k, v) for k, v in request.query_params.multi_items() if k != "header"]
    snapshot = exports.Snapshot(engine, export)
    headers = {
        "Content-Disposition": export.content_disposition(),
        "X-Citygrid-Totals": snapshot.totals.header(),
        "X-Citygrid-Count": str(snapshot.totals.total["count"]),
        "Link": f'<{totals_url}?{urlencode(totals_query)}>; rel="describedby"; type="application/json"',
    }
    media_type = export.format.media_type
    if export.format.streamed:
        return StreamingResponse(snapshot.stream(header=header), media_type=media_type, headers=headers)
    directory = Path(tempfile.mkdtemp(prefix="citygrid-export-"))
    try:
        path = snapshot.write_file(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        snapshot.close()
    cleanup = BackgroundTask(shutil.rmtree, directory, ignore_errors=True)
    return FileResponse(path, media_type=media_type, headers=headers, background=cleanup)


def totals_response(
    engine: EngineDep, request: Request, dataset: str, filters: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Return the sidecar: count and m² per subdistrict (with names) and in all, for the same filters."""
    with engine.connect() as conn:
        export = exports.prepare(conn, dataset, "geojson", {**_undeclared(request, dataset), **filters})
        totals = exports.totals(conn, export)
    return {
        "dataset": dataset,
        "filters": export.applied,
        "file_name": export.file_name().rsplit(".", 1)[0],
        "generated_at": datetime.now(exports.CST).isoformat(timespec="seconds"),
        **totals.as_dict(),
    }


BuildingFilters = Annotated[Filters, Depends(illegal_building_filters)]
IncidentFilters = Annotated[Filters, Depends(incident_filters)]
StallFilters = Annotated[Filters, Depends(stall_filters)]
MarketFilters = Annotated[Filters, Depends(market_filters)]


@router.get("/illegal-buildings.{fmt}", summary="违法建筑 Illegal buildings as a file (拆违台账)", **EXPORTERS_ONLY)
def illegal_buildings_file(
    engine: EngineDep, request: Request, fmt: FormatName, filters: BuildingFilters, header: Header = "zh"
) -> Response:
    """Return illegal-building footprints with their chain, status dates and areas (m², EPSG:4544)."""
    return export_response(engine, request, "illegal-buildings", fmt, filters, header)


@router.get(
    "/illegal-buildings/totals", name="export_totals_illegal_buildings", summary="违法建筑 totals", **TOTALS_ONLY
)
def illegal_buildings_totals(engine: EngineDep, request: Request, filters: BuildingFilters) -> dict[str, Any]:
    """Return count, footprint m² and demolished m² per subdistrict for the same filters."""
    return totals_response(engine, request, "illegal-buildings", filters)


@router.get("/incidents.{fmt}", summary="案件 Incidents as a file", **EXPORTERS_ONLY)
def incidents_file(
    engine: EngineDep, request: Request, fmt: FormatName, filters: IncidentFilters, header: Header = "zh"
) -> Response:
    """Return incidents with the chain they were assigned when reported."""
    return export_response(engine, request, "incidents", fmt, filters, header)


@router.get("/incidents/totals", name="export_totals_incidents", summary="案件 totals", **TOTALS_ONLY)
def incidents_totals(engine: EngineDep, request: Request, filters: IncidentFilters) -> dict[str, Any]:
    """Return the number of incidents per subdistrict for the same filters."""
    return totals_response(engine, request, "incidents", filters)


@router.get("/stalls.{fmt}", summary="摊点 Stalls as a file", **EXPORTERS_ONLY)
def stalls_file(
    engine: EngineDep, request: Request, fmt: FormatName, filters: StallFilters, header: Header = "zh"
) -> Response:
    """Return stalls with their market and chain."""
    return export_response(engine, request, "stalls", fmt, filters, header)


@router.get("/stalls/totals", name="export_totals_stalls", summary="摊点 totals", **TOTALS_ONLY)
def stalls_totals(engine: EngineDep, request: Request, filters: StallFilters) -> dict[str, Any]:
    """Return the number of stalls per subdistrict for the same filters."""
    return totals_response(engine, request, "stalls", filters)


@router.get("/markets.{fmt}", summary="市场 Markets as a file", **EXPORTERS_ONLY)
def markets_file(
    engine: EngineDep, request: Request, fmt: FormatName, filters: MarketFilters, header: Header = "zh"
) -> Response:
    """Return markets with their area (m², EPSG:4544) and chain."""
    return export_response(engine, request, "markets", fmt, filters, header)


@router.get("/markets/totals", name="export_totals_markets", summary="市场 totals", **TOTALS_ONLY)
def markets_totals(engine: EngineDep, request: Request, filters: MarketFilters) -> dict[str, Any]:
    """Return the number and area of markets per subdistrict for the same filters."""
    return totals_response(engine, request, "markets", filters)
