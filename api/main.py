"""``create_app(settings)``: the one way the API is built, by ``citygrid serve`` and by the tests."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import NoMatchFound

from api import access, errors, ogc
from api.limits import BodyLimit
from api.routers import admin, audit, exports, health, incidents, kpi, layers, maps, open311, owner
from spatial import db
from spatial.errors import SetupError
from spatial.settings import Settings
from webmap.builder import STATIC_DIR, VENDOR_DIR


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the citygrid API for ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    app = FastAPI(
        title="citygrid",
        summary="城市管理综合行政执法 GIS — urban-management enforcement on PostGIS (Wenshan model)",
        version="0.1.0",
        # Any parameter may be refused, and any route that reads the database may find it down.
        responses=errors.documented(422, 503),
        # the documentation pages are served below from our own copy of Swagger UI: a city's network may have no
        # way out to a CDN (FastAPI's own pages load it from one); ReDoc is not served
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = db.engine_for(settings.database)
    app.state.read_engine = db.engine_for(settings.database, autocommit=True)
    errors.install(app)
    app.add_middleware(incidents.IntakeShortcut)  # added first, so inside the body limit: it reads the body
    app.add_middleware(BodyLimit, settings=settings.api)
    app.include_router(health.router)
    app.include_router(layers.router)
    app.include_router(owner.router)
    app.include_router(incidents.router)
    app.include_router(kpi.router)
    app.include_router(open311.router)
    app.include_router(maps.router)
    app.include_router(exports.router)
    app.include_router(audit.router)
    app.include_router(admin.router)
    ogc.install(app, settings)
    mount_static(app)
    serve_docs(app)
    app.add_middleware(owner.OwnerLookupShortcut)
    access.document_roles(app)
    # FastAPI builds an included router's routes (their dependencies and parameter models) when the first request
    # passes them: ≈0.3 s of the first request each worker process serves, which the map's first page load waited
    # for (its scripts and styles are matched after every router). Asking for a name no route has builds them all
    # here, before the worker serves anything.
    try:
        app.url_path_for("citygrid-build-every-route")
    except NoMatchFound:
        pass
    return app


def serve_docs(app: FastAPI) -> None:
    """Serve the OpenAPI documentation at /docs with the Swagger UI of the map's npm packages."""
    swagger = "/static/vendor/swagger-ui-dist"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{swagger}/swagger-ui-bundle.js",
            swagger_css_url=f"{swagger}/swagger-ui.css",
            swagger_favicon_url=f"{swagger}/favicon-32x32.png",
        )


def mount_static(app: FastAPI) -> None:
    """Serve the map's own script and the npm packages it uses (Leaflet and plugins, Swagger UI): no CDN needed."""
    if not all((VENDOR_DIR / package).is_dir() for package in ("leaflet", "swagger-ui-dist")):
        raise SetupError(f"the map's front-end packages are missing: run 'npm ci --prefix {VENDOR_DIR.parent}'")
    app.mount("/static/vendor", StaticFiles(directory=VENDOR_DIR), name="vendor")
    app.mount("/static/citygrid", StaticFiles(directory=STATIC_DIR), name="citygrid-static")
