"""Engines and sessions for the project's PostGIS, wherever it runs.

The URL is ``DATABASE_URL`` when set, otherwise the project-local cluster's (``spatial.cluster``).
Engines are cached once per URL and process, never built at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
import psycopg2
import psycopg2.extras
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from spatial.cluster import LocalCluster
from spatial.settings import DatabaseSettings

# json and jsonb values arrive parsed by orjson (several times faster than the json module on the owner chain)
psycopg2.extras.register_default_json(globally=True, loads=orjson.loads)
psycopg2.extras.register_default_jsonb(globally=True, loads=orjson.loads)


def local_cluster(settings: DatabaseSettings) -> LocalCluster:
    """Return the project-local cluster described by the settings."""
    return LocalCluster(settings.cluster_dir, bindir=settings.pg_bindir, database=settings.name)


def database_url(settings: DatabaseSettings) -> str:
    """Return ``DATABASE_URL`` if set, else the URL of the running project-local cluster."""
    if settings.url:
        return settings.url
    return local_cluster(settings).url()


@lru_cache(maxsize=8)
def _engine(url: str, pool_size: int, max_overflow: int, statement_timeout_ms: int, autocommit: bool) -> Engine:
    extra: dict[str, object] = {}
    if autocommit:
        # Hot paths of one statement each: no BEGIN/COMMIT round trips, nothing to reset when a connection comes
        # back.
        extra = {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
    return create_engine(
        url,
        **extra,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No ping per checkout (a round trip on every request): a connection found dead raises, the pool is
        # invalidated at once, and the API answers 503 with Retry-After until the database is back.
        pool_pre_ping=False,
        connect_args={
            # Generic plans for our few prepared statements (owner lookups): no re-planning per call.
            "options": f"-c statement_timeout={statement_timeout_ms} -c timezone=Asia/Shanghai"
            " -c plan_cache_mode=force_generic_plan",
            "application_name": "citygrid",
        },
    )


def engine_for(settings: DatabaseSettings, url: str | None = None, *, autocommit: bool = False) -> Engine:
    """Return the engine for ``url`` (default: the settings' database), cached per process.

    ``autocommit`` engines are for single-statement reads on hot paths, and for a write that is one statement (a
    report becoming a case: ``spatial.intake``); every other write uses a normal one.
    """
    return _engine(
        url or database_url(settings),
        settings.pool_size,
        settings.max_overflow,
        settings.statement_timeout_ms,
        autocommit,
    )


def pooled_connection(engine: Engine) -> PoolProxiedConnection:
    """Return a connection straight from ``engine``'s pool (``close()`` gives it back), for ``run_prepared``.

    A failure to connect is raised as SQLAlchemy's error, as ``Engine.connect()`` raises it (the API maps a
    database that cannot be reached to 503).
    """
    try:
        return engine.raw_connection()
    except psycopg2.Error as exc:
        raise DBAPIError.instance(None, None, exc, psycopg2.Error, connection_invalidated=True) from exc


def run_prepared(
    conn: Connection | PoolProxiedConnection, name: str, prepare: str, execute: str, params: Sequence[Any]
) -> dict[str, Any] | None:
    """Run a named prepared statement on ``conn`` (preparing it on the connection's first use); return row one.

    For the hot paths (owner lookups, intake): the plan is made once per database connection instead of once
    per request, and the row is read from the driver's cursor, past SQLAlchemy's result machinery. ``conn``
    may be a pooled connection straight from ``Engine.raw_connection()``, past SQLAlchemy's Connection too.
    """
    pooled = conn.connection if isinstance(conn, Connection) else conn
    info = pooled.info  # lives as long as the database connection, like the prepared statement
    raw = pooled.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cur:
            if name not in info:
                cur.execute(prepare)
                info[name] = True
            cur.execute(execute, list(params))
            values = cur.fetchone()
            if values is None:
                return None
            return {column.name: value for column, value in zip(cur.description, values, strict=True)}
    except psycopg2.Error as exc:
        # The driver's cursor bypasses SQLAlchemy, so wrap its errors as SQLAlchemy would (the API maps them: a
        # lost server is a 503), and drop a connection the server closed, lest the pool hand it out again.
        lost = isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(execute, list(params), exc, psycopg2.Error, connection_invalidated=lost) from exc


def server_versions(engine: Engine) -> dict[str, str]:
    """Return the PostgreSQL and PostGIS versions of the server behind ``engine``."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT current_setting('server_version') AS postgres, postgis_full_version() AS postgis")
        ).one()
    postgis = row.postgis.split('"')[1] if '"' in row.postgis else row.postgis
    return {"postgres": row.postgres, "postgis": postgis}
