"""``/health``: is the database there, and which PostgreSQL and PostGIS."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.access import allow
from api.deps import EngineDep
from spatial.db import server_versions

router = APIRouter(tags=["health"])


class DatabaseHealth(BaseModel):
    """Versions reported by the database server."""

    postgres: str
    postgis: str


class Health(BaseModel):
    """The service's health."""

    status: str
    database: DatabaseHealth


@router.get(
    "/health", response_model=Health, summary="Service and database health", **allow("public", doing="ask for health")
)
def health(engine: EngineDep) -> Health:
    """Return ok with the PostgreSQL and PostGIS versions; 503 when the database is unreachable."""
    return Health(status="ok", database=DatabaseHealth(**server_versions(engine)))
