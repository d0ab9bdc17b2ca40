"""``/v1/owner``: who owns this point — the whole responsibility chain, for one point or a file of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from api.access import allow, caller_from
from api.deps import EngineDep, SettingsDep
from api.errors import UnsupportedMediaType, documented, error_response
from api.shortcut import Shortcut, send_json
from spatial import access, owner, owner_batch
from spatial.db import pooled_connection
from spatial.errors import InvalidInput

router = APIRouter(prefix="/v1/owner", tags=["owner"])

CRS_HELP = "wgs84 (default), cgcs2000, gcj02 (AMap, Tencent, WeChat), bd09 (Baidu) or EPSG:<code> (e.g. EPSG:4544)"


_PARAMETERS = [
    {"name": "lon", "in": "query", "required": True, "schema": {"type": "number"},
     "description": "longitude, or x (metres) for a projected EPSG crs"},
    {"name": "lat", "in": "query", "required": True, "schema": {"type": "number"},
     "description": "latitude, or y (metres) for a projected EPSG crs"},
    {"name": "crs", "in": "query", "required": False, "schema": {"type": "string"}, "description": CRS_HELP},
    {"name": "at", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"},
     "description": "ISO 8601 moment with time zone (default: now)"},
]  # fmt: skip


def _number(query: Mapping[str, str], name: str) -> float:
    text = query.get(name)
    if text is None:
        raise InvalidInput(f"{name} is missing: give lon and lat, e.g. ?lon=104.244&lat=23.371")
    try:
        return float(text)
    except ValueError:
        example = {"lon": "104.244", "lat": "23.371"}[name]
        raise InvalidInput(f"{name}={text!r} is not a number: give decimal degrees, e.g. {name}={example}") from None


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"at={text!r} is not an ISO 8601 moment, e.g. 2017-05-01T09:00:00+08:00") from None


@router.get(
    "",
    summary="Who owns this point (谁的责任): grid, community, subdistrict, squad, grid member, chiefs",
    **allow(
        "public",
        doing="ask who owns a point",
        openapi_extra={"parameters": _PARAMETERS, "security": [{"ApiKey": []}, {}]},
        responses={
            200: {
                "description": "the responsibility chain (phone numbers for staff keys only)",
                "content": {"application/json": {}},
            },
            **documented(
                401,
                404,
                422,
                s401="a key was sent but it is unknown or revoked",
                s404="not covered: the nearest grid and its distance are in `detail`",
                s422="bad coordinates, unknown crs, or longitude and latitude swapped",
            ),
        },
    ),  # fmt: skip
)
async def owner_of_point(request: Request) -> Response:
    """Return the chain of the point as of ``at``; a point on a shared edge is ``ambiguous`` (lowest code owns).

    The parameters are read here rather than declared to FastAPI (they are documented all the same): this
    endpoint sits inside every request of its users, and FastAPI's validation cost ≈10 % of its throughput.
    It runs in the event loop, not the thread pool: a lookup is ≈0.5 ms of database time, and at 16 clients
    thread hand-offs cost more than they save (measured: 1,270 → 1,530 req/s, p99 700 → 28 ms).
    Requests normally reach ``owner_response`` through ``OwnerLookupShortcut``; this route documents the
    endpoint and answers when the shortcut steps aside (under a root path).
    """
    return owner_response(request.query_params, request.headers, request.app.state)


def owner_response(query: Mapping[str, str], headers: Mapping[str, str], state: Any) -> Response:
    """Answer GET /v1/owner (see ``owner_body``) as a Response."""
    return Response(owner_body(query, headers, state), media_type="application/json")


def owner_body(query: Mapping[str, str], headers: Mapping[str, str], state: Any) -> bytes:
    """Answer GET /v1/owner: read lon, lat, crs and at, look the point up, and return the JSON body.

    The one place the answer is shaped, for the route and for the shortcut alike: phone numbers only for a
    staff key (``spatial.access``); a key that is sent must be valid. The lookup takes a pooled connection
    straight from the pool: SQLAlchemy's Connection around it was ≈10 % of a worker's own time per lookup.
    """
    key = caller_from(headers, state.read_engine)
    lon, lat = _number(query, "lon"), _number(query, "lat")
    crs, at = query.get("crs"), _moment(query.get("at"))
    conn = pooled_connection(state.read_engine)
    try:
        answer = owner.lookup(conn, lon, lat, crs=crs, at=at, rules=state.settings.owner)
    finally:
        conn.close()  # back to the pool (or dropped, when the lookup found it dead)
    return orjson.dumps(answer.as_dict(phones=access.sees_phones(key)))


class OwnerLookupShortcut(Shortcut):
    """GET /v1/owner answered from the scope (``api.shortcut``).

    The same parameters, answer and error bodies as the route (``owner_response``, ``api.errors``), without the
    per-request machinery that a lookup of ≈0.5 ms of database time does not need.
    """

    method, path = "GET", router.prefix

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer an owner lookup."""
        try:
            body = owner_body(_query_params(scope["query_string"]), Headers(scope=scope), scope["app"].state)
        except Exception as exc:  # answered as the application's handlers answer it, or raised on
            await error_response(exc)(scope, receive, send)
            return
        await send_json(send, body)


def _query_params(query_string: bytes) -> dict[str, str]:
    """Return the query's parameters, the last one of a repeated name winning (as Starlette's QueryParams)."""
    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


@router.post(
    "/batch",
    summary="Owners of up to 1,000,000 points (CSV with lon/lat columns, or a GeoJSON FeatureCollection)",
    description=(
        "Send `text/csv` (columns lon/lat, lng/lat, longitude/latitude or x/y; UTF-8) or `application/geo+json`. "
        "The answer streams back in the same order and format: each input row or feature with its chain, "
        "or with its own error (the batch does not fail for a bad row)."
    ),
    response_class=StreamingResponse,
    **allow(
        *access.STAFF_ROLES,
        doing="look up owners in bulk (a staff tool: its rows carry phone numbers)",
        responses={
            200: {"content": {"text/csv": {}, "application/geo+json": {}}},
            **documented(404, 415, s404="no boundary generation was in force at `at`"),
        },
    ),  # fmt: skip
)
async def owners_of_points(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    crs: Annotated[str | None, Query(description=CRS_HELP)] = None,
    at: Annotated[datetime | None, Query(description="ISO 8601 moment with time zone (default: now)")] = None,
) -> StreamingResponse:
    """Stream every input row back with its responsibility chain."""
    if at is not None and at.tzinfo is None:
        raise InvalidInput(f"at={at.isoformat()} has no time zone: add one, e.g. 2017-05-01T09:00:00+08:00")
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/csv", "application/csv"):
        batch = await run_in_threadpool(owner_batch.read_csv, body, crs=crs, max_points=settings.api.max_features)
        media_type = "text/csv; charset=utf-8"
    elif content_type in ("application/geo+json", "application/json"):
        batch = await run_in_threadpool(owner_batch.read_geojson, body, crs=crs, max_points=settings.api.max_features)
        media_type = "application/geo+json"
    else:
        raise UnsupportedMediaType(
            f"content-type {content_type or '(none)'} is not supported: send text/csv or application/geo+json"
        )

    def first_piece() -> Iterator[bytes]:  # in the thread pool: the generation's check and the first chunk query
        return owner_batch.primed(owner_batch.stream(engine, batch, at=at, rules=settings.owner))

    pieces = await run_in_threadpool(first_piece)
    return StreamingResponse(iterate_in_threadpool(pieces), media_type=media_type)
