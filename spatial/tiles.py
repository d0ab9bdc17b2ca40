"""Vector tiles (Mapbox Vector Tile, ``ST_AsMVT``) for the layers too large to send as GeoJSON.

A tile holds only what falls in it, simplified to the tile's resolution by PostGIS, so the map stays fast
with 100,000 footprints or a million incidents: the browser never receives a whole layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial import exports
from spatial.changes import SharedCache
from spatial.errors import InvalidInput, NotFound
from spatial.layers import illegal_buildings, incidents


@dataclass(frozen=True)
class TileLayer:
    """A layer served as vector tiles: its table and the properties each feature carries.

    Below ``detail_zoom`` a feature carries only ``overview`` properties (what the map styles it by): at zoom
    13 one tile holds ~40,000 footprints of two pixels each, and encoding a unique code, floors and area for
    each more than doubled the tile's time (0.37 s → 0.84 s) for values no one can point at that small.
    """

    table: str
    properties: tuple[str, ...]  # SQL expressions over the table aliased ``t``
    status_column: str | None = "status"
    statuses: tuple[str, ...] = ()  # the values of ``status_column``
    overview: tuple[str, ...] | None = None  # None: ``properties`` at every zoom
    detail_zoom: int = 0
    boxes_below: int = 0  # below this zoom a polygon is sent as the diagonal of its bounding box

    def properties_at(self, z: int) -> tuple[str, ...]:
        """Return the properties a tile of zoom ``z`` carries."""
        return self.properties if self.overview is None or z >= self.detail_zoom else self.overview

    def geometry_at(self, z: int) -> str:
        """Return the SQL of what a tile of zoom ``z`` draws of each feature (over the table aliased ``t``).

        Below ``boxes_below`` a footprint is a few pixels wide and its bounding box is what the eye sees: the
        map draws the box from its diagonal (a two-point line), which PostgreSQL clips and encodes in half the
        time of the polygon (zoom 13, 39,000 footprints: 0.11 s against 0.22 s), and the browser fills a
        rectangle instead of tracing a ring.
        """
        return "ST_BoundingDiagonal(t.geom)" if z < self.boxes_below else "t.geom"


TILE_LAYERS = {
    "illegal_buildings": TileLayer(
        "illegal_buildings",
        # float8: a number in the tile (numeric would be written as a string)
        ("t.code", "t.status", "t.floors", "round(t.footprint_m2::numeric, 1)::float8 AS footprint_m2"),
        overview=("t.status",),
        detail_zoom=16,
        boxes_below=14,  # the map at zoom 14 draws zoom-13 tiles: a footprint of 700 m² is 2.7 pixels wide
        statuses=illegal_buildings.STATUSES,
    ),
    "incidents": TileLayer(
        "incidents", ("t.code", "t.status", "t.item_code", "t.source", "t.grid_code"), statuses=incidents.STATUSES
    ),
    "stalls": TileLayer("stalls", ("t.code", "t.kind", "t.licensed"), status_column=None),
}
MAX_ZOOM = 22
# Shared by every worker and kept across restarts; a layer's tiles follow its change counter.
_TILES = {name: SharedCache(f"tile:{name}", spec.table, size=256) for name, spec in TILE_LAYERS.items()}


def tile(
    conn: Connection,
    layer: str,
    z: int,
    x: int,
    y: int,
    *,
    status: str | None = None,
    subdistrict: str | None = None,
    gzipped: bool = False,
) -> bytes:
    """Return one MVT tile of ``layer`` (EPSG:3857 tiling), filtered by status and subdistrict (gzipped: compressed).

    ``status`` is one of the layer's statuses and ``subdistrict`` a code or name, checked as the exports check
    them: an unknown value raises InvalidInput naming the accepted ones rather than giving an empty tile.
    """
    spec = TILE_LAYERS.get(layer)
    if spec is None:
        raise NotFound(f"no vector tiles for {layer!r}; tiled layers: {', '.join(TILE_LAYERS)}")
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        raise InvalidInput(f"tile {z}/{x}/{y} does not exist: 0 ≤ z ≤ {MAX_ZOOM} and 0 ≤ x, y < 2^z")
    filters = ["t.geom && ST_Transform(b.envelope, 4326)"]
    params: dict[str, Any] = {"z": z, "x": x, "y": y, "layer": layer}
    if status is not None:
        if not spec.status_column:
            raise InvalidInput(f"{layer} have no status: leave out status", detail={"filter": "status"})
        exports.check_choices("status", [status], spec.statuses)
        filters.append(f"t.{spec.status_column} = :status")
        params["status"] = status
    if subdistrict is not None:
        subdistrict = exports.resolve_areas(conn, "subdistrict", [subdistrict])[0][0]
        filters.append("left(t.grid_code, 9) = :subdistrict")
        params["subdistrict"] = subdistrict
    columns = ", ".join(spec.properties_at(z))
    # Table, geometry, columns and conditions come from TILE_LAYERS above, never from the request; values are
    # bound.
    query = text(
        f"WITH b AS (SELECT ST_TileEnvelope(:z, :x, :y) AS envelope), "
        f"f AS (SELECT ST_AsMVTGeom(ST_Transform({spec.geometry_at(z)}, 3857), b.envelope) AS geom, {columns} "
        f"FROM {spec.table} t, b WHERE {' AND '.join(filters)}) "
        "SELECT ST_AsMVT(f.*, :layer) FROM f WHERE f.geom IS NOT NULL"
    )

    def compute() -> bytes:
        data = conn.execute(query, params).scalar_one()
        return bytes(data) if data is not None else b""

    cache = _TILES[layer]
    return (cache.get_gzip if gzipped else cache.get)(conn, (z, x, y, status, subdistrict), compute)
