"""``create_app(settings)``: the one way the API is built, by ``citygrid serve`` and by the tests."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.routers import health, layers, owner
from spatial import db
from spatial.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the citygrid API for ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    app = FastAPI(
        title="citygrid",
        summary="城市管理综合行政执法 GIS — urban-management enforcement on PostGIS (Wenshan model)",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.engine = db.engine_for(settings.database)
    app.state.read_engine = db.engine_for(settings.database, autocommit=True)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(layers.router)
    app.include_router(owner.router)
    return app
