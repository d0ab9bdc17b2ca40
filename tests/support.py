"""Helpers shared by the tests: where the fixture is, and fresh databases on the test server."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from spatial import db
from spatial.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "geojson"


def server_url() -> str:
    return db.database_url(DatabaseSettings())


def fresh_database(name: str) -> str:
    """Drop and create database ``name`` on the test server; return its SQLAlchemy URL.

    ``CITYGRID_TEST_SUFFIX`` is appended to the name, so that two test runs on one server do not collide.
    """
    name += os.environ.get("CITYGRID_TEST_SUFFIX", "")
    server = make_url(server_url())
    admin = server.set(database="postgres")
    conn = psycopg2.connect(
        host=admin.host, port=admin.port, user=admin.username, password=admin.password, dbname=admin.database
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return server.set(database=name).render_as_string(hide_password=False)


def buildings_in_tile(conn: Connection, z: int, x: int, y: int, *, status: str | None = None) -> int:
    """Count what an illegal-building tile holds: footprints whose box meets it, clipped with MVT's edge buffer.

    Below zoom 14 a tile draws each footprint's bounding box, sent as its diagonal.
    """
    drawn = "geom" if z >= 14 else "ST_BoundingDiagonal(geom)"
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM illegal_buildings WHERE geom && ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326)"
                f" AND ST_AsMVTGeom(ST_Transform({drawn}, 3857), ST_TileEnvelope(:z, :x, :y)) IS NOT NULL"
                " AND (CAST(:status AS text) IS NULL OR status = :status)"
            ),
            {"z": z, "x": x, "y": y, "status": status},
        ).scalar_one()
    )
