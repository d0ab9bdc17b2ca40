"""Incidents (案件): reported at a point, stored with their whole responsibility chain.

The chain comes from ``citygrid_owner`` as of the moment of the report, in the statement that inserts
the incident: the same function answers "who owns this point", so the two never disagree.
"""

from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, Table, Text, text
from sqlalchemy.engine import Connection

from spatial.changes import VersionedCache, incidents_version
from spatial.layers.base import Field, Layer, geometry_column, metadata

SOURCES = ("hotline", "letter", "patrol", "grid_member", "media", "open311")
STATUSES = ("collected", "registered", "dispatched", "handling", "feedback", "verified", "closed", "rejected")

table = Table(
    "incidents",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("source", Text, nullable=False),
    Column("item_code", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("deferred", Boolean, nullable=False),
    Column("satisfaction", Text),
    geometry_column("geom", "POINT", nullable=False),
    Column("generation", Integer),
    Column("grid_code", Text),
    Column("community_code", Text),
    Column("subdistrict_code", Text),
    Column("squad_code", Text),
    Column("grid_member_id", Text),
    Column("street_code", Text),
    Column("street_chief_id", Text),
    Column("river_code", Text),
    Column("river_chief_id", Text),
    Column("outside", Boolean, nullable=False),
)

events_table = Table(
    "incident_events",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("incident_id", BigInteger, nullable=False),
    Column("from_status", Text),
    Column("to_status", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False),
)

# Columns filled from citygrid_owner(geom, reported_at) on insert.
CHAIN_COLUMNS = (
    "generation", "grid_code", "community_code", "subdistrict_code", "squad_code", "grid_member_id",
    "street_code", "street_chief_id", "river_code", "river_chief_id", "outside",
)  # fmt: skip

layer = Layer(
    name="incidents",
    table=table,
    label_zh="案件",
    label_en="Incidents",
    fields=(
        Field("code", "text"),
        Field("source", "text"),
        Field("item_code", "text"),
        Field("status", "text"),
        Field("description", "text", required=False),
        Field("reported_at", "timestamptz"),
        Field("due_at", "timestamptz", required=False),
        Field("closed_at", "timestamptz", required=False),
        Field("satisfaction", "text", required=False),
        Field("reworks", "integer", required=False),
    ),
    key=("code",),
    geometry_types=("Point",),
    published=(
        "code",
        "source",
        "item_code",
        "status",
        "reported_at",
        "due_at",
        "closed_at",
        "satisfaction",
        "grid_code",
        "community_code",
        "subdistrict_code",
        "squad_code",
    ),  # fmt: skip
    assigned=True,
)


_HEAT: VersionedCache[list[list[float]]] = VersionedCache(size=64)
HEAT_CELL_PX = 16


def heat_cell(zoom: int) -> float:
    """Return the side in degrees of a heat cell at ``zoom``: about HEAT_CELL_PX screen pixels."""
    return 360.0 / (2**zoom) / 256 * HEAT_CELL_PX


def heat(
    conn: Connection, *, bbox: tuple[float, float, float, float], zoom: int, where: str, params: dict[str, Any]
) -> list[list[float]]:
    """Return [lat, lon, count] of incidents in ``bbox`` counted in cells of about 16 screen pixels at ``zoom``.

    ``where`` is a condition on ``incidents i`` built by our own code (spatial.hotspots.Filters) with its values
    in ``params``. A heat map needs densities, not points: a million incidents come back as some thousands of
    cells. Cells are integer pairs, so PostgreSQL hashes them (grouping snapped geometries would sort them).
    """
    cell = heat_cell(zoom)

    def compute() -> list[list[float]]:
        rows = conn.execute(
            text(
                "SELECT (gy + 0.5) * :cell AS lat, (gx + 0.5) * :cell AS lon, n FROM ("
                " SELECT floor(ST_X(i.geom) / :cell)::int AS gx, floor(ST_Y(i.geom) / :cell)::int AS gy,"
                " count(*) AS n FROM incidents i"
                " WHERE i.geom && ST_MakeEnvelope(:west, :south, :east, :north, 4326)"
                f" AND {where} GROUP BY 1, 2) cells"
            ),
            {**params, "cell": cell, "west": bbox[0], "south": bbox[1], "east": bbox[2], "north": bbox[3]},
        )
        return [[round(r.lat, 6), round(r.lon, 6), int(r.n)] for r in rows]

    key = (bbox, zoom, where, tuple(sorted(params.items())))
    return _HEAT.get(key, incidents_version(conn), compute)


def heat_of_points(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64], *, zoom: int) -> list[list[float]]:
    """Return what ``heat`` returns, [lat, lon, count] per cell, for incidents already read as coordinates.

    The same cells, counts and centres as the SQL (in another order): IEEE division and floor give the same
    cell numbers in numpy and in PostgreSQL, and a centre ``(g + 0.5) * cell`` is exact in binary (``cell``
    is 45 / 2^(zoom + 1) degrees), so rounding it gives what rounding PostgreSQL's exact numeric gives.
    """
    if len(lon) == 0:
        return []
    cell = heat_cell(zoom)
    gx, gy = np.floor(lon / cell).astype(np.int64), np.floor(lat / cell).astype(np.int64)
    x0, y0 = int(gx.min()), int(gy.min())
    height = int(gy.max()) - y0 + 1
    found, counts = np.unique((gx - x0) * height + (gy - y0), return_counts=True)
    cx, cy = found // height + x0, found % height + y0
    return [
        [round((y + 0.5) * cell, 6), round((x + 0.5) * cell, 6), n]
        for x, y, n in zip(cx.tolist(), cy.tolist(), counts.tolist(), strict=True)
    ]
