"""The planners' map: ``/map``, and the data its layers load — heat cells, hotspots, vector tiles, chiefs."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from api.access import allow
from api.deps import ConnectionDep, SettingsDep
from api.errors import documented
from spatial import exports, hotspots, map_counts, tiles
from spatial.catalogue import category, item
from spatial.changes import SharedCache
from spatial.errors import InvalidInput
from spatial.layers import incidents as incidents_layer
from spatial.layers import streets as streets_layer
from spatial.layers.base import BBox, current_generation
from webmap.builder import build_map

router = APIRouter(tags=["map"])
hotspots.load_statistics()  # once per worker, at start

# Heat cells and hotspot answers as sent, shared by every worker (spatial.changes.SharedCache).
_HEAT = SharedCache("heat", "incidents")
_HOTSPOTS = SharedCache("hotspots", "incidents", size=32)
_MAP_INCIDENTS = SharedCache("map_incidents", "incidents", size=32)


def _compressed(request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None) -> Response:
    """Send gzip-compressed ``body`` as it is to a client that accepts gzip, decompressed to any other."""
    headers = {**(headers or {}), "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(body, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(body), media_type=media_type, headers=headers)


def _json(body: dict[str, Any]) -> bytes:
    # Heat cell centres come from PostgreSQL as numeric (Decimal): sent as JSON numbers, as FastAPI would.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=float).encode()


def incident_filters(
    conn: ConnectionDep,
    from_: Annotated[datetime | None, Query(alias="from", description="reported at or after (ISO 8601)")] = None,
    to: Annotated[datetime | None, Query(description="reported before (ISO 8601)")] = None,
    item_code: Annotated[str | None, Query(alias="item", description="catalogue item, e.g. 0508")] = None,
    category_code: Annotated[str | None, Query(alias="category", description="catalogue category, e.g. 05")] = None,
    subdistrict: Annotated[
        str | None, Query(description="subdistrict code or name, e.g. 532601001, 开化街道 or 开化")
    ] = None,
    source: Annotated[str | None, Query(description=", ".join(incidents_layer.SOURCES))] = None,
    status: Annotated[str | None, Query(description="case status: " + ", ".join(incidents_layer.STATUSES))] = None,
) -> hotspots.Filters:
    """Return the incident filters of a request, refusing unknown codes, names and values as the exports do."""
    try:
        if item_code is not None:
            item(item_code)
        if category_code is not None:
            category(category_code)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    for name, moment in (("from", from_), ("to", to)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{name}={moment.isoformat()} has no time zone: add one, e.g. +08:00")
    if source is not None:
        exports.check_choices("source", [source], incidents_layer.SOURCES)
    if status is not None:
        exports.check_choices("status", [status], incidents_layer.STATUSES)
    subdistrict_code = exports.resolve_areas(conn, "subdistrict", [subdistrict])[0][0] if subdistrict else None
    return hotspots.Filters(
        item=item_code, category=category_code, date_from=from_, date_to=to, subdistrict=subdistrict_code,
        source=source, status=status,
    )  # fmt: skip


FiltersDep = Annotated[hotspots.Filters, Depends(incident_filters)]


def heat_view(
    bbox: Annotated[str, Query(description="west,south,east,north in WGS-84 degrees")],
    zoom: Annotated[int, Query(ge=0, le=22, description="the map's zoom: cells are ≈8 pixels")],
) -> tuple[tuple[float, float, float, float], int]:
    """Read the view a heat map is asked for: (west, south, east, north) and the zoom."""
    box = BBox.parse(bbox)
    return (box.west, box.south, box.east, box.north), zoom


HeatViewDep = Annotated[tuple[tuple[float, float, float, float], int], Depends(heat_view)]


def _generation(conn: Connection, asked: int | None = None) -> int:
    """Return the boundary generation asked for, or the current one; refuse when no boundaries are loaded."""
    chosen = asked or current_generation(conn)
    if chosen is None:
        raise InvalidInput("no boundaries are loaded")
    return chosen


@router.get(
    "/map",
    summary="The planners' map (城市管理综合执法地图)",
    # errors are JSON: no response_class for every status
    **allow("public", doing="open the map", responses={200: {"content": {"text/html": {}}}}),
)
def planners_map(
    settings: SettingsDep,
    lang: Annotated[str, Query(pattern="^(zh|en)$", description="zh (default) or en")] = "zh",
    basemap: Annotated[str | None, Query(pattern="^(osm|tianditu|none)$", description="base map")] = None,
) -> HTMLResponse:
    """Return the map page: layers, legend, filters, click for the owner chain; data load from the API."""
    if basemap == "tianditu" and not settings.map.tianditu_key:
        raise InvalidInput("basemap=tianditu needs a 天地图 key: set CITYGRID_MAP_TIANDITU_KEY")
    return HTMLResponse(build_map(settings.map, lang=lang, basemap=basemap))


@router.get(
    "/v1/tiles/{layer}/{z}/{x}/{y}.pbf",
    summary="Vector tile (MVT) of a large layer",
    response_class=Response,
    **allow(
        "public",
        doing="read tiles",
        responses={200: {"content": {"application/vnd.mapbox-vector-tile": {}}}, **documented(404)},
    ),  # fmt: skip
)
def vector_tile(
    request: Request,
    conn: ConnectionDep,
    layer: str,
    z: int,
    x: int,
    y: int,
    status: Annotated[str | None, Query(description="only features with this status (not stalls)")] = None,
    subdistrict: Annotated[
        str | None, Query(description="only features in this subdistrict: code or name, e.g. 532601001 or 开化")
    ] = None,
) -> Response:
    """Return one Mapbox Vector Tile of ``layer`` (illegal_buildings, incidents, stalls).

    What a tile carries depends on its zoom for illegal_buildings: below 14 each footprint is sent as its
    bounding box's diagonal (a two-point LineString: draw the box it spans) with its status only; from 14 the
    footprint polygon; from 16 also code, floors and footprint_m2. For the polygons at every zoom, read the
    GeoJSON layer or the export.
    """
    data = tiles.tile(conn, layer, z, x, y, status=status, subdistrict=subdistrict, gzipped=True)
    return _compressed(request, data, "application/vnd.mapbox-vector-tile", {"Cache-Control": "max-age=60"})


@router.get("/v1/heat", summary="Incident density cells for the heat map", **allow("public", doing="read the heat map"))
def heat(
    request: Request,
    conn: ConnectionDep,
    filters: FiltersDep,
    shown: HeatViewDep,
) -> Response:
    """Return ``cells`` as [lat, lon, count] and their ``total`` for the incidents matching the filters."""
    view, zoom = shown
    body = _HEAT.get_gzip(conn, (*view, zoom, filters), lambda: _heat_json(conn, filters, view, zoom))
    return _compressed(request, body, "application/json")


def _heat_json(
    conn: Connection,
    filters: hotspots.Filters,
    view: tuple[float, float, float, float],
    zoom: int,
    points: hotspots.Points | None = None,
) -> bytes:
    """Return the /v1/heat answer: from ``points`` (read with ``view``) when given, else by its own query.

    The query is the map counts' (spatial.map_counts) where they answer the filters and zoom, else a count of
    the incidents in view.
    """
    if points is not None and points.in_view is not None:
        cells = incidents_layer.heat_of_points(points.lon[points.in_view], points.lat[points.in_view], zoom=zoom)
    elif map_counts.serves(filters, zoom=zoom):
        cells = map_counts.read(conn, filters, h3_cells=False, view=view, zoom=zoom).heat or []
    else:
        where, params = filters.where()
        cells = incidents_layer.heat(conn, bbox=view, zoom=zoom, where=where, params=params)
    return _heat_body(cells)


def _heat_body(cells: list[list[Any]]) -> bytes:
    """Return the /v1/heat answer of ``cells`` ([lat, lon, count] each): the cells and their total."""
    return _json({"cells": cells, "total": sum(c[2] for c in cells)})


@router.get(
    "/v1/map/incidents",
    summary="The map's incident layers in one answer: heat cells and hotspots",
    **allow("public", doing="read the heat map"),
)
def map_incidents(
    request: Request,
    conn: ConnectionDep,
    filters: FiltersDep,
    shown: HeatViewDep,
    cell: Annotated[str, Query(description="hotspot cells: h3:<5..11> (default h3:9) or grid")] = "h3:9",
) -> Response:
    """Return ``{"heat": <as /v1/heat>, "hotspots": <as /v1/hotspots>}`` for the same filters.

    What the map asks for when it opens and when a filter changes. Both answers count the same incidents, so
    when neither is kept yet they are counted once: from the map counts (spatial.map_counts) where they answer
    the filters, zoom and cell (the map's first view does), else from the points, read from the database once
    (the slowest part of each on its own).
    """
    view, zoom = shown
    kind, _ = hotspots.parse_cell(cell)
    generation = _generation(conn)

    def both() -> bytes:
        if map_counts.serves(filters, zoom=zoom, cell=cell):
            counted = map_counts.read(conn, filters, view=view, zoom=zoom)
            found = hotspots.analyse(conn, filters, cell=cell, generation=generation, counts=lambda: counted.h3 or {})
            heat = _heat_body(counted.heat or [])
        else:
            points = hotspots.read_points(conn, filters, view=view) if kind == "h3" else None
            found = hotspots.analyse(conn, filters, cell=cell, generation=generation, points=points)
            heat = _heat_json(conn, filters, view, zoom, points)
        return b'{"heat":' + heat + b',"hotspots":' + _json(found) + b"}"

    # kept whole, as sent: a load after the first (on any worker, or after a restart) is one lookup
    body = _MAP_INCIDENTS.get_gzip(conn, (*view, zoom, filters, cell, generation), both)
    return _compressed(request, body, "application/json")


@router.get(
    "/v1/hotspots",
    summary="Getis-Ord Gi* hotspots of incidents (GeoJSON)",
    **allow("public", doing="read hotspots", responses={200: {"content": {"application/geo+json": {}}}}),
)
async def hotspots_of_incidents(
    request: Request,
    conn: ConnectionDep,
    filters: FiltersDep,
    cell: Annotated[str, Query(description="h3:<5..11> (default h3:9) or grid")] = "h3:9",
    generation: Annotated[int | None, Query(ge=1, description="boundary generation (default: current)")] = None,
) -> Response:
    """Return one feature per cell with count, z, p_sim, p_value and Gi_Bin (±3/±2/±1 = 99/95/90 %)."""

    def answer() -> bytes:
        chosen = _generation(conn, generation)
        counts = (lambda: map_counts.read(conn, filters).h3 or {}) if map_counts.serves(filters, cell=cell) else None
        return _HOTSPOTS.get_gzip(
            conn,
            (filters, cell, chosen),
            lambda: _json(hotspots.analyse(conn, filters, cell=cell, generation=chosen, counts=counts)),
        )

    return _compressed(request, await run_in_threadpool(answer), "application/geo+json")


@router.get(
    "/v1/streets/chiefs",
    summary="Streets with a street chief (街长) now",
    **allow("public", doing="read street chiefs"),
)
def street_chiefs(conn: ConnectionDep) -> list[dict[str, Any]]:
    """Return street code and name with the chief's id and name, for colouring streets by chief."""
    return streets_layer.chiefs(conn, datetime.now(UTC))
