"""What every layer shares: its description (``Layer``), and the GeoJSON page query over its table.

A layer module declares its table, the properties a file may carry (with their SQL types), the key a
reload upserts on, and the properties it publishes; the loader and the API read only this description.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import Column, ColumnElement, Computed, MetaData, Select, Table, and_, func, select
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Connection

from spatial.errors import InvalidInput, NotFound

metadata = MetaData()

GEOJSON_DECIMALS = 7  # about 1 cm at Wenshan's latitude: enough for a grid edge, small for a browser


def geometry_column(name: str, geometry_type: str, srid: int = 4326, **kwargs: Any) -> Column[Any]:
    """Return a PostGIS geometry column that does not create its own index (migrations own the DDL)."""
    return Column(name, Geometry(geometry_type, srid=srid, spatial_index=False), **kwargs)


def metric_copy(geometry_type: str) -> Column[Any]:
    """Return the generated EPSG:4544 copy of ``geom`` that metre distances and KNN searches use."""
    geometry = Geometry(geometry_type, srid=4544, spatial_index=False)
    return Column("geom_m", geometry, Computed("ST_Transform(geom, 4544)", persisted=True))


@dataclass(frozen=True)
class Field:
    """One property a layer file carries, with the SQL type it is cast to on load."""

    name: str
    sql_type: str
    required: bool = True


@dataclass(frozen=True)
class Layer:
    """A loadable, publishable layer: one table, one file, one set of GeoJSON properties."""

    name: str
    table: Table
    label_zh: str
    label_en: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    geometry_types: tuple[str, ...] | None  # accepted input types; None for tables without geometry
    published: tuple[str, ...] = ()
    id_column: str = "code"
    assigned: bool = False  # responsibility columns (generation, grid_code) are filled on load
    has_generation: bool = False  # a boundary layer: rows belong to a boundary generation
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial(self) -> bool:
        """Return True when the layer has a geometry."""
        return self.geometry_types is not None


@dataclass(frozen=True)
class BBox:
    """A WGS-84 bounding box (west, south, east, north)."""

    west: float
    south: float
    east: float
    north: float

    @classmethod
    def parse(cls, text: str) -> BBox:
        """Parse ``west,south,east,north`` in degrees, refusing swapped or out-of-range corners."""
        parts = text.split(",")
        try:
            west, south, east, north = (float(p) for p in parts)
        except ValueError:
            raise InvalidInput(
                f"bbox {text!r} is not four numbers: give west,south,east,north in degrees, "
                "e.g. bbox=104.20,23.34,104.29,23.40"
            ) from None
        if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
            raise InvalidInput(f"bbox {text!r} is outside longitude -180..180 / latitude -90..90")
        if west > east or south > north:
            raise InvalidInput(f"bbox {text!r} has west > east or south > north: give west,south,east,north")
        return cls(west, south, east, north)


@dataclass(frozen=True)
class Page:
    """One page of a layer as a GeoJSON FeatureCollection, with its paging figures."""

    features: list[dict[str, Any]]
    number_matched: int
    offset: int
    limit: int

    def feature_collection(self) -> dict[str, Any]:
        """Return the RFC 7946 FeatureCollection (no ``crs`` member) with paging figures."""
        return {
            "type": "FeatureCollection",
            "numberMatched": self.number_matched,
            "numberReturned": len(self.features),
            "features": self.features,
        }


def current_generation(conn: Connection) -> int | None:
    """Return the boundary generation in force now, or None when no boundaries are loaded."""
    generation: int | None = conn.execute(select(func.citygrid_generation_at(func.now()))).scalar()
    return generation


def _check_generation(conn: Connection, generation: int) -> None:
    """Raise NotFound, naming the generations there are, when boundary generation ``generation`` does not exist."""
    known = sql_table("boundary_generations", sql_column("generation"))
    existing = conn.execute(select(known.c.generation).order_by(known.c.generation)).scalars().all()
    if generation not in existing:
        there = ", ".join(map(str, existing)) or "none: no boundaries are loaded"
        raise NotFound(f"no boundary generation {generation}; the generations are {there}")


def page(
    conn: Connection,
    layer: Layer,
    *,
    bbox: BBox | None = None,
    limit: int,
    offset: int = 0,
    generation: int | None = None,
) -> Page:
    """Return one page of ``layer`` as GeoJSON features, ordered by its key, filtered by ``bbox``."""
    table = layer.table
    conditions: list[ColumnElement[bool]] = []
    if bbox is not None and layer.spatial:
        envelope = func.ST_MakeEnvelope(bbox.west, bbox.south, bbox.east, bbox.north, 4326)
        conditions.append(func.ST_Intersects(table.c.geom, envelope))
    if layer.has_generation:
        if generation is not None:
            _check_generation(conn, generation)
        conditions.append(table.c.generation == (generation or current_generation(conn)))
    where = and_(*conditions) if conditions else None

    count: Select[Any] = select(func.count()).select_from(table)
    rows: Select[Any] = select(*(table.c[name] for name in layer.published))
    if layer.spatial:
        rows = rows.add_columns(func.ST_AsGeoJSON(table.c.geom, GEOJSON_DECIMALS).label("geometry_json"))
    if where is not None:
        count = count.where(where)
        rows = rows.where(where)
    rows = rows.order_by(*(table.c[name] for name in layer.key)).limit(limit).offset(offset)

    features = []
    for row in conn.execute(rows).mappings():
        properties = {name: _jsonable(row[name]) for name in layer.published}
        geometry = json.loads(row["geometry_json"]) if layer.spatial else None
        features.append({"type": "Feature", "id": row[layer.id_column], "geometry": geometry, "properties": properties})
    return Page(features=features, number_matched=conn.execute(count).scalar_one(), offset=offset, limit=limit)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 2)
    return value
