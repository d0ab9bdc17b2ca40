"""``/ogc``: OGC API – Features (Parts 1, 2 and 3) and OGC API – Tiles for every public layer, served by tipg.

tipg is mounted as a sub-application, with three thin additions of ours (``spatial/ogc.py`` has the domain
side): the catalogue comes from our layer descriptions; Part 2 (``crs``, ``bbox-crs``, ``Content-Crs``, the
``crs``/``storageCrs`` of each collection) is added around tipg's routes; and the landing page, conformance
declaration, error bodies and OpenAPI 3.0 document are ours. A mounted application's own startup does not
run, so the asyncpg pool and the catalogue are opened on the first ``/ogc`` request and closed by the
parent application's lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import asyncpg
from anyio import to_thread
from cql2 import Expr
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from morecantile import Tile
from morecantile import tms as tile_matrix_sets
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tipg import dependencies as tipg_dependencies
from tipg.collections import Catalog
from tipg.database import close_db_connection, connect_to_db
from tipg.errors import DEFAULT_STATUS_CODES, TiPgError
from tipg.factory import DEFAULT_TEMPLATES, Endpoints, create_html_response, features_settings, mvt_settings
from tipg.model import Conformance, Landing, Link
from tipg.resources.enums import MediaType
from tipg.resources.response import ORJSONResponse
from tipg.settings import PostgresSettings

from api.errors import domain_response, error_body, validation_response
from spatial import db, ogc
from spatial.errors import CitygridError, DatabaseUnavailable, InvalidInput, NotFound
from spatial.settings import Settings

PREFIX = "/ogc"
TITLE = "citygrid OGC API — 文山市城市管理综合行政执法"

PART2_CONFORMANCE = "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    PART2_CONFORMANCE,
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
]

log = logging.getLogger(__name__)

CRS_HELP = "output CRS (OGC API – Features Part 2): " + ", ".join(ogc.CRS_URIS) + "; default CRS84"
BBOX_CRS_HELP = "CRS of `bbox`, corners in that CRS's axis order: " + ", ".join(ogc.CRS_URIS) + "; default CRS84"
FILTER_CRS_HELP = (
    "CRS of the geometries in `filter`, coordinates in that CRS's axis order: " + ", ".join(ogc.CRS_URIS)
    + "; default CRS84"
)  # fmt: skip


# --- dependencies handed to tipg's routes -------------------------------------------------------------


def collection_for_request(
    request: Request,
    collectionId: Annotated[str, Path(description="collection id, e.g. illegal_buildings")],  # noqa: N803 (OGC name)
    crs: Annotated[str | None, Query(description=CRS_HELP)] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description=BBOX_CRS_HELP)] = None,
) -> ogc.LayerCollection:
    """Return the requested collection, set to answer in ``crs`` and to filter by ``bbox`` in ``bbox-crs``."""
    catalog: Catalog = request.app.state.collection_catalog
    collection = catalog["collections"].get(collectionId)
    if not isinstance(collection, ogc.LayerCollection):
        known = ", ".join(catalog["collections"])
        raise NotFound(f"no collection {collectionId!r}; collections: {known}", detail={"collections": known})
    bbox_text = request.query_params.get("bbox")
    bbox = ogc.parse_ogc_bbox(bbox_text, ogc.parse_ogc_crs(bbox_crs, parameter="bbox-crs")) if bbox_text else None
    _check_limit(request)
    return collection.for_request(output_crs=ogc.parse_ogc_crs(crs), bbox=bbox)


def _check_limit(request: Request) -> None:
    """Refuse ``limit`` outside 1..the maximum (OGC API Features): tipg takes 0 for its default of 10.

    tipg declares ``limit`` on its own routes, so it is read here, from the query, before they run; a
    ``limit`` that is not a whole number is left to their validation.
    """
    text = request.query_params.get("limit")
    if text is None or not text.strip().lstrip("-").isdigit():
        return
    tiles = "z" in request.path_params
    most = mvt_settings.max_features_per_tile if tiles else features_settings.max_features_per_query
    if not 1 <= int(text) <= most:
        raise InvalidInput(
            f"limit={text} is out of range: give 1 to {most} {'features per tile' if tiles else 'features per page'}",
            detail={"parameter": "limit", "minimum": 1, "maximum": most},
        )


def bbox_in_lonlat(
    bbox: Annotated[str | None, Query(description="lower and upper corner, in the axis order of bbox-crs")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description=BBOX_CRS_HELP)] = None,
) -> list[float] | None:
    """Replace tipg's ``bbox`` parser: return the lon/lat box holding ``bbox`` given in ``bbox-crs``.

    For a projected ``bbox-crs`` this box is a coarse, index-friendly superset; the collection applies the
    exact projected rectangle as well (``OgcBBox.exact_filter``).
    """
    if not bbox:
        return None
    return list(ogc.parse_ogc_bbox(bbox, ogc.parse_ogc_crs(bbox_crs, parameter="bbox-crs")).lonlat_bounds())


def cql2_filter(
    query: Annotated[str | None, Query(alias="filter", description="CQL2 filter (text or JSON)")] = None,
    filter_lang: Annotated[
        str | None, Query(alias="filter-lang", description="cql2-text (default) or cql2-json")
    ] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs", description=FILTER_CRS_HELP)] = None,
) -> Expr | None:
    """Replace tipg's ``filter`` parser: return the filter with its geometries read in ``filter-crs``.

    A malformed filter is a 400 that says where it went wrong; ``filter-crs`` (OGC API Features Part 3) is
    one of the CRSs the collections list, coordinates in its axis order as for ``bbox-crs``.
    """
    if filter_lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidInput(f"filter-lang={filter_lang!r} is not supported: use cql2-text or cql2-json")
    crs = ogc.parse_ogc_crs(filter_crs, parameter="filter-crs")
    if query is None:
        return None
    try:
        expr = tipg_dependencies.filter_query(query=query, filter_lang=None)
    except Exception as exc:  # cql2 raises its own ParseError and ValidationError, and bare Exception
        raise InvalidInput(f"filter is not valid CQL2 ({str(exc).strip()})", detail={"filter": query}) from exc
    return ogc.filter_in_storage_crs(expr, crs) if expr is not None else None


def datetime_interval(
    datetime: Annotated[str | None, Query(description="instant or interval: " + ogc.DATETIME_HELP)] = None,
) -> list[str] | None:
    """Replace tipg's ``datetime`` parser, which lets a malformed datetime through to fail inside the query."""
    return ogc.parse_ogc_datetime(datetime) if datetime else None


def tile_in_matrix(
    tileMatrixSetId: Annotated[str, Path(description="a tile matrix set, e.g. WebMercatorQuad")],  # noqa: N803
    z: Annotated[int, Path(description="tile matrix (zoom) of the tile matrix set")],
    x: Annotated[int, Path(description="column of the tile in its tile matrix")],
    y: Annotated[int, Path(description="row of the tile in its tile matrix")],
) -> Tile:
    """Replace tipg's tile parameters: a zoom, column or row outside the tile matrix set is a 404, not a 500."""
    if tileMatrixSetId not in tile_matrix_sets.list():
        return Tile(x, y, z)  # tipg's own route answers an unknown tile matrix set
    return ogc.tile_in_matrix_set(tile_matrix_sets.get(tileMatrixSetId), z, x, y)


# --- landing page and conformance (ours: tipg's would point at the parent application's OpenAPI) --------


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _landing(request: Request, endpoints: Endpoints, f: str | None) -> Any:
    base = _base(request)
    data = Landing(
        title=TITLE,
        description="Every public layer of citygrid: boundaries (current generation), streets, rivers, squads, "
        "markets, stalls, illegal buildings, joint operations and incidents. CRS: " + ", ".join(ogc.CRS_URIS),
        links=[
            Link(title="This document", href=f"{base}/", type=MediaType.json, rel="self"),
            Link(
                title="API definition (OpenAPI 3.0)",
                href=f"{base}/api",
                type=MediaType.openapi30_json,
                rel="service-desc",
            ),  # fmt: skip
            Link(title="API documentation", href=f"{base}/api.html", type=MediaType.html, rel="service-doc"),
            Link(title="Conformance", href=f"{base}/conformance", type=MediaType.json, rel="conformance"),
            *endpoints.links(request),
        ],
    )
    if f == "html" or (f is None and _wants_html(request)):
        body = data.model_dump(exclude_none=True, mode="json")
        return create_html_response(request, body, DEFAULT_TEMPLATES, "landing", TITLE)
    return ORJSONResponse(data.model_dump(exclude_none=True, mode="json"))


def _conformance(request: Request, f: str | None) -> Any:
    data = Conformance(conformsTo=CONFORMANCE).model_dump(mode="json")
    if f == "html" or (f is None and _wants_html(request)):
        return create_html_response(request, data, DEFAULT_TEMPLATES, "conformance")
    return ORJSONResponse(data)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept.split("text/html")[0]


# --- Part 2 around tipg's responses ---------------------------------------------------------------------


class Part2Headers:
    """Add Part 2 to tipg's answers: ``Content-Crs`` on features, ``crs``/``storageCrs`` on collections.

    tipg builds its collection documents with CRS84 only and returns them as finished responses, so the two
    members are added here to the JSON body of ``/collections`` and ``/collections/{id}``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        parts = path.strip("/").split("/")
        is_features = len(parts) in (3, 4) and parts[0] == "collections" and parts[2] == "items"
        is_collections = parts[0] == "collections" and len(parts) <= 2
        if not (is_features or is_collections):
            await self.app(scope, receive, send)
            return
        if is_features:
            await self.app(scope, receive, self._with_content_crs(scope, send))
            return
        await self._with_crs_members(scope, receive, send)

    def _with_content_crs(self, scope: Scope, send: Send) -> Callable[[Message], Any]:
        query = dict(_query_pairs(scope))
        crs_uri: str | None
        try:
            crs_uri = ogc.parse_ogc_crs(query.get("crs")).uri
        except InvalidInput:
            crs_uri = None

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200 and crs_uri:
                MutableHeaders(scope=message)["Content-Crs"] = f"<{crs_uri}>"
            await send(message)

        return send_with_header

    async def _with_crs_members(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            assert start is not None
            body = b"".join(chunks)
            headers = MutableHeaders(scope=start)
            if start["status"] == 200 and headers.get("content-type", "").startswith("application/json"):
                body = _add_crs_members(body)
                headers["content-length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, collect)


def _add_crs_members(body: bytes) -> bytes:
    document = json.loads(body)
    collections = document.get("collections", [document] if "id" in document else [])
    for collection in collections:
        collection["crs"] = list(ogc.CRS_URIS)
        collection["storageCrs"] = ogc.STORAGE_CRS.uri
    if "collections" in document:
        document["crs"] = list(ogc.CRS_URIS)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _query_pairs(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"))


# --- the pool and the catalogue, opened on first use ----------------------------------------------------


class OpenOnFirstUse:
    """Open tipg's asyncpg pool and build the catalogue before the first request that needs them.

    Lazily, so that the API starts (and ``/health`` answers 503) while the database is down. It also makes
    ``/ogc`` the application root for URL building: tipg writes its links from ``request.base_url`` (and
    ``request.app.url_path_for``), which would otherwise be the parent application's root.
    """

    def __init__(self, app: ASGIApp, ogc_app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.ogc_app = ogc_app
        self.settings = settings
        self.lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] == "http":
            scope["app_root_path"] = scope.get("root_path", "")
            if not getattr(self.ogc_app.state, "collection_catalog", None):
                async with self.lock:
                    if not getattr(self.ogc_app.state, "collection_catalog", None):
                        await open_catalogue(self.ogc_app, self.settings)
        await self.app(scope, receive, send)


async def open_catalogue(ogc_app: FastAPI, settings: Settings) -> None:
    """Open the asyncpg pool tipg queries with and build the collections from our layers."""
    engine = db.engine_for(settings.database)
    url = make_url(db.database_url(settings.database)).set(drivername="postgresql")
    try:
        collections = await to_thread.run_sync(_build_catalogue, engine)
        if getattr(ogc_app.state, "pool", None) is None:
            await connect_to_db(
                ogc_app,
                schemas=["public"],
                settings=PostgresSettings.model_validate(
                    {
                        "database_url": url.render_as_string(hide_password=False),
                        "db_min_conn_size": 1,
                        "db_max_conn_size": settings.database.pool_size,
                    }
                ),
                server_settings={
                    "application_name": "citygrid-ogc",
                    "timezone": "Asia/Shanghai",
                    "statement_timeout": str(settings.database.statement_timeout_ms),
                },
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable("the database is not reachable right now; retry shortly") from exc
    ogc_app.state.collection_catalog = Catalog(collections=dict(collections), last_updated=datetime.now())


def _build_catalogue(engine: Engine) -> dict[str, ogc.LayerCollection]:
    with engine.connect() as conn:
        return ogc.catalogue(conn)


async def close_catalogue(ogc_app: FastAPI) -> None:
    """Close the asyncpg pool if it was opened."""
    if getattr(ogc_app.state, "pool", None) is not None:
        await close_db_connection(ogc_app)
        ogc_app.state.pool = None
    ogc_app.state.collection_catalog = None


# --- errors and the OpenAPI 3.0 document ----------------------------------------------------------------


def _error_handlers(ogc_app: FastAPI) -> None:
    """Answer every error with our ``{code, message, detail}`` body; invalid parameters are 400 (OGC API)."""

    def domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CitygridError)
        return domain_response(exc, invalid_status=400)

    def from_tipg(_: Request, exc: Exception) -> JSONResponse:
        status = next((DEFAULT_STATUS_CODES[cls] for cls in type(exc).__mro__ if cls in DEFAULT_STATUS_CODES), 500)
        status = 400 if status == 422 else status
        code = "not_found" if status == 404 else "invalid_parameter" if status == 400 else "server_error"
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc, code="invalid_parameter", status=400)

    def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = 400 if exc.status_code == 422 else exc.status_code
        return JSONResponse(error_body("http_error", str(exc.detail)), status_code=status)

    def database(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, asyncpg.PostgresError)
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in ("22", "42"):  # data exception, syntax error or undefined column: the caller's filter
            message = f"the database refused the query: {str(exc).splitlines()[0]}; check filter and property names"
            return JSONResponse(error_body("invalid_parameter", message), status_code=400)
        # Anything else is ours to fix (XX000 is PostGIS refusing a query we built): the caller only learns
        # that it failed, so the log must say what did.
        log.error("OGC API query failed: %s %s (SQLSTATE %s)", request.method, request.url, sqlstate, exc_info=exc)
        return JSONResponse(error_body("server_error", "the database failed to answer"), status_code=500)

    ogc_app.add_exception_handler(CitygridError, domain)
    ogc_app.add_exception_handler(TiPgError, from_tipg)
    ogc_app.add_exception_handler(RequestValidationError, validation)
    ogc_app.add_exception_handler(StarletteHTTPException, http_error)
    ogc_app.add_exception_handler(asyncpg.PostgresError, database)


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI document rewritten from 3.1 (what FastAPI writes) to 3.0.3 (what OGC API names).

    Rules, applied to every schema: a ``null`` alternative in ``anyOf``/``oneOf`` (or in a ``type`` list)
    becomes ``nullable``; ``prefixItems`` (tuples) become ``items``; an ``examples`` list becomes ``example``;
    ``const`` becomes a one-value ``enum``; numeric ``exclusiveMinimum``/``Maximum`` become ``minimum``/
    ``maximum`` with the boolean flag; JSON Schema keywords 3.0 does not know (``$schema``, ``$id``, and the
    ``exemples`` misspelling in morecantile's models) are dropped.
    """

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        for key in ("anyOf", "oneOf"):
            options = node.get(key)
            if isinstance(options, list) and {"type": "null"} in options:
                rest = [option for option in options if option != {"type": "null"}]
                del node[key]
                node["nullable"] = True
                if len(rest) == 1 and "$ref" in rest[0]:
                    node["allOf"] = rest
                elif len(rest) == 1:
                    node.update(rest[0])
                else:
                    node[key] = rest
        if isinstance(node.get("type"), list):
            types = [t for t in node["type"] if t != "null"]
            node["nullable"] = node.get("nullable", False) or len(types) < len(node["type"])
            node["type"] = types[0] if types else "string"
        if node.get("type") == "null":
            node.pop("type")
            node["nullable"] = True
        if isinstance(node.get("prefixItems"), list):
            positions = node.pop("prefixItems")
            unique = [p for i, p in enumerate(positions) if p not in positions[:i]]
            node["items"] = unique[0] if len(unique) == 1 else {"anyOf": unique}
        if isinstance(node.get("examples"), list):
            examples = node.pop("examples")
            if examples:
                node["example"] = examples[0]
        if "const" in node:
            node["enum"] = [node.pop("const")]
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
                node[plain] = node.pop(bound)
                node[bound] = True
        for unknown in ("$schema", "$id", "exemples"):
            node.pop(unknown, None)
        return {key: convert(value) for key, value in node.items()}

    converted: dict[str, Any] = convert(document)
    converted["openapi"] = "3.0.3"
    return converted


# --- assembly -------------------------------------------------------------------------------------------


def build_app(settings: Settings) -> FastAPI:
    """Return the OGC API application (mounted at ``/ogc`` by ``install``)."""
    ogc_app = FastAPI(
        title=TITLE,
        version="1.0.0",
        description="OGC API – Features (Parts 1, 2, 3) and OGC API – Tiles, served by tipg.",
        openapi_url="/api",
        docs_url="/api.html",
        redoc_url=None,
    )
    endpoints = Endpoints(
        title=TITLE,
        with_common=False,
        collection_dependency=collection_for_request,
        templates=DEFAULT_TEMPLATES,
        with_tiles_viewer=True,
    )

    @ogc_app.get("/", tags=["OGC Common"], summary="Landing page", response_model=None)
    def landing(request: Request, f: Annotated[str | None, Query(description="json or html")] = None) -> Any:
        """Return the landing page: links to the API definition, conformance and collections."""
        return _landing(request, endpoints, f)

    @ogc_app.get("/conformance", tags=["OGC Common"], summary="Conformance classes", response_model=None)
    def conformance(request: Request, f: Annotated[str | None, Query(description="json or html")] = None) -> Any:
        """Return the conformance classes this API implements, Part 2 (CRS) included."""
        return _conformance(request, f)

    ogc_app.include_router(endpoints.router)
    ogc_app.dependency_overrides[tipg_dependencies.bbox_query] = bbox_in_lonlat
    ogc_app.dependency_overrides[tipg_dependencies.filter_query] = cql2_filter
    ogc_app.dependency_overrides[tipg_dependencies.datetime_query] = datetime_interval
    ogc_app.dependency_overrides[tipg_dependencies.TileParams] = tile_in_matrix
    _error_handlers(ogc_app)

    def openapi() -> dict[str, Any]:
        if ogc_app.openapi_schema is None:
            document = get_openapi(
                title=ogc_app.title,
                version=ogc_app.version,
                description=ogc_app.description,
                routes=ogc_app.routes,
            )
            ogc_app.openapi_schema = openapi_30(document)
        return ogc_app.openapi_schema

    ogc_app.openapi = openapi  # type: ignore[method-assign]
    ogc_app.add_middleware(Part2Headers)
    ogc_app.add_middleware(OpenOnFirstUse, ogc_app=ogc_app, settings=settings)
    return ogc_app


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the OGC API at ``/ogc`` on ``app`` and close its pool when ``app`` shuts down."""
    ogc_app = build_app(settings)
    app.mount(PREFIX, ogc_app)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(parent: Any) -> AsyncIterator[Any]:
        try:
            async with inner(parent) as state:
                yield state
        finally:
            await close_catalogue(ogc_app)

    app.router.lifespan_context = lifespan
