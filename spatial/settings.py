"""Settings, one small pydantic-settings class per concern, each built by a cached function.

Nothing is read at import time: call ``database_settings()`` and friends when needed, and
``clear_settings_cache()`` in tests that change the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DatabaseSettings(BaseSettings):
    """Where the database is: ``DATABASE_URL`` if given, else the project-local cluster."""

    model_config = SettingsConfigDict(env_prefix="CITYGRID_DB_", extra="ignore")

    url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    cluster_dir: Path = PROJECT_ROOT / ".citygrid"
    pg_bindir: Path | None = None
    name: str = "citygrid"
    pool_size: int = 10
    max_overflow: int = 20
    statement_timeout_ms: int = 30_000

    @model_validator(mode="after")
    def _normalise_url(self) -> DatabaseSettings:
        # Users paste the libpq form; SQLAlchemy needs a driver name to pick psycopg2.
        if self.url and self.url.startswith(("postgres://", "postgresql://")):
            self.url = "postgresql+psycopg2://" + self.url.split("://", 1)[1]
        return self


class ApiSettings(BaseSettings):
    """How the HTTP API is served and paged."""

    model_config = SettingsConfigDict(env_prefix="CITYGRID_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    default_page_size: int = 1000
    max_page_size: int = 10_000
    # Request bodies: files (owner batches, case imports) and everything else (a report, a step, a form).
    max_upload_mb: int = 512
    max_body_kb: int = 256
    max_features: int = 1_000_000  # points in an owner batch, rows in a case import
    # Worker processes for 'citygrid serve'; by default two per core: a lookup holds its worker while
    # PostgreSQL answers, so one per core leaves the cores idle for that time (benchmarks/owner.py).
    workers: int | None = None

    def worker_count(self) -> int:
        """Return the number of worker processes to serve with."""
        return self.workers or 2 * (os.cpu_count() or 1)

    @model_validator(mode="after")
    def _check_paging(self) -> ApiSettings:
        if not 0 < self.default_page_size <= self.max_page_size:
            raise ValueError("CITYGRID_API_DEFAULT_PAGE_SIZE must be between 1 and CITYGRID_API_MAX_PAGE_SIZE")
        if min(self.max_upload_mb, self.max_body_kb, self.max_features) < 1:
            raise ValueError("CITYGRID_API_MAX_UPLOAD_MB, _MAX_BODY_KB and _MAX_FEATURES must be at least 1")
        return self


class OwnerSettings(BaseSettings):
    """Rules of "who owns this point" (DESIGN.md, Responsibility)."""

    model_config = SettingsConfigDict(env_prefix="CITYGRID_OWNER_", extra="ignore")

    outside_tolerance_m: float = 200.0
    street_radius_m: float = 50.0
    river_radius_m: float = 100.0
    edge_tolerance_m: float = 0.5


class MapSettings(BaseSettings):
    """The planners' map: its base map and where it opens."""

    model_config = SettingsConfigDict(env_prefix="CITYGRID_MAP_", extra="ignore")

    basemap: str = "osm"  # osm | tianditu | none
    tianditu_key: str | None = None
    centre_lon: float = 104.244
    centre_lat: float = 23.371
    zoom: int = 14

    @model_validator(mode="after")
    def _check_basemap(self) -> MapSettings:
        if self.basemap not in ("osm", "tianditu", "none"):
            raise ValueError("CITYGRID_MAP_BASEMAP must be osm, tianditu or none")
        if self.basemap == "tianditu" and not self.tianditu_key:
            raise ValueError("CITYGRID_MAP_BASEMAP=tianditu needs CITYGRID_MAP_TIANDITU_KEY (a 天地图 key)")
        return self


@lru_cache
def database_settings() -> DatabaseSettings:
    """Return the database settings read from the environment (cached)."""
    return DatabaseSettings()


@lru_cache
def api_settings() -> ApiSettings:
    """Return the API settings read from the environment (cached)."""
    return ApiSettings()


@lru_cache
def owner_settings() -> OwnerSettings:
    """Return the responsibility-rule settings read from the environment (cached)."""
    return OwnerSettings()


@lru_cache
def map_settings() -> MapSettings:
    """Return the map settings read from the environment (cached)."""
    return MapSettings()


def clear_settings_cache() -> None:
    """Forget cached settings so that the next call reads the environment again."""
    for build in (database_settings, api_settings, owner_settings, map_settings):
        build.cache_clear()


class Settings:
    """Every concern's settings together: what ``create_app`` and the CLI are built from."""

    def __init__(
        self,
        database: DatabaseSettings | None = None,
        api: ApiSettings | None = None,
        owner: OwnerSettings | None = None,
        map: MapSettings | None = None,  # noqa: A002 - the concern is called map
    ) -> None:
        self.database = database or database_settings()
        self.api = api or api_settings()
        self.owner = owner or owner_settings()
        self.map = map or map_settings()
