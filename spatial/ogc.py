"""OGC API – Features over our layers: the collections tipg serves, and Part 2 CRS (``crs``, ``bbox-crs``).

tipg (developmentseed, FastAPI on PostGIS, asyncpg) implements Part 1 (landing page, collections, items
with bbox, datetime, property filters and limit/offset paging), Part 3 filtering (CQL2 through the
maintained ``cql2`` library), OGC API – Tiles (``ST_AsMVT``), HTML views and the OpenAPI document. Two
things it does not do, which this module adds as a thin layer:

- Part 2, coordinate reference systems by reference: output in EPSG:4326, EPSG:4490 (CGCS2000) and
  EPSG:4544 (CGCS2000 / 3-degree Gauss-Krüger CM 105° E) besides CRS84, and ``bbox`` (``bbox-crs``) and the
  geometries of a CQL2 ``filter`` (``filter-crs``, Part 3) given in any of them.
  Coordinates come out in each CRS's authority axis order (latitude first for 4326 and 4490, northing first
  for 4544), as Part 2 requires and as GDAL's OAPIF driver expects by default.
- Our catalogue: collections are built from our ``Layer`` descriptions rather than tipg's introspection of
  every table in ``public`` — people and duties (phone numbers) stay private, each collection publishes
  the layer's own properties, and boundary layers show the generation in force now (their primary key is
  ``(generation, code)``, so a collection of every generation would have no single-column feature id).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ciso8601 import parse_rfc3339
from cql2 import Expr
from geoalchemy2 import Geometry
from morecantile import Tile, TileMatrixSet
from pyproj import CRS, Transformer
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Integer, SmallInteger, func, select
from sqlalchemy.engine import Connection
from tipg.collections import Column, PgCollection

from spatial.errors import InvalidInput, NotFound
from spatial.layers import BY_NAME, PUBLIC, Layer
from spatial.layers.base import current_generation

OGC_CRS_PREFIX = "http://www.opengis.net/def/crs/"

# The moment a layer's features are placed in time by, for the OGC ``datetime`` parameter.
DATETIME_COLUMNS = {
    "illegal_buildings": "discovered_at",
    "incidents": "reported_at",
    "markets": "rectified_at",
    "operations": "held_on",
}

# A projected bbox is densified before it is reprojected to the stored lon/lat, so that its edges stay
# straight in the bbox's own CRS (at 5 m a Gauss-Krüger edge and its lon/lat image differ by far below 1 mm).
BBOX_SEGMENT_M = 5.0

GEOJSON_TYPES = {
    "POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon",
    "MULTIPOINT": "MultiPoint", "MULTILINESTRING": "MultiLineString", "MULTIPOLYGON": "MultiPolygon",
}  # fmt: skip


@dataclass(frozen=True)
class OgcCrs:
    """A coordinate reference system the OGC API serves, by its OGC URI."""

    uri: str
    srid: int  # the PostGIS SRID that produces it
    label: str

    @property
    def northing_first(self) -> bool:
        """Return True when the authority's first axis is latitude or northing (EPSG:4326, 4490, 4544)."""
        if self.uri.endswith("/CRS84"):
            return False
        return _first_axis_is_north(self.srid)

    @property
    def projected(self) -> bool:
        """Return True for a projected CRS (coordinates in metres)."""
        return _is_projected(self.srid)


CRS84 = OgcCrs(OGC_CRS_PREFIX + "OGC/1.3/CRS84", 4326, "WGS 84 (longitude, latitude)")
SUPPORTED_CRS: tuple[OgcCrs, ...] = (
    CRS84,
    OgcCrs(OGC_CRS_PREFIX + "EPSG/0/4326", 4326, "WGS 84 (latitude, longitude)"),
    OgcCrs(OGC_CRS_PREFIX + "EPSG/0/4490", 4490, "CGCS2000 (latitude, longitude)"),
    OgcCrs(OGC_CRS_PREFIX + "EPSG/0/4544", 4544, "CGCS2000 / 3-degree Gauss-Kruger CM 105E (northing, easting)"),
)
STORAGE_CRS = CRS84  # PostGIS holds lon/lat on WGS 84 (EPSG:4326 with x = longitude), which is CRS84
CRS_URIS = tuple(crs.uri for crs in SUPPORTED_CRS)


@lru_cache(maxsize=16)
def _first_axis_is_north(srid: int) -> bool:
    return CRS.from_epsg(srid).axis_info[0].direction.lower() in ("north", "south")


@lru_cache(maxsize=16)
def _is_projected(srid: int) -> bool:
    return bool(CRS.from_epsg(srid).is_projected)


@lru_cache(maxsize=16)
def _to_lonlat(srid: int) -> Transformer:
    return Transformer.from_crs(srid, 4326, always_xy=True)


def parse_ogc_crs(text: str | None, *, parameter: str = "crs") -> OgcCrs:
    """Return the supported CRS named by ``text`` (default CRS84), or raise InvalidInput listing them.

    Accepts the OGC URIs (http or https), ``EPSG:<code>``, ``urn:ogc:def:crs:EPSG::<code>``, safe CURIEs
    (``[EPSG:4544]``) and ``OGC:CRS84``/``CRS84``.
    """
    if text is None or not text.strip():
        return CRS84
    key = text.strip().strip("[]").strip()
    if re.fullmatch(r"(?i)(https?://www\.opengis\.net/def/crs/OGC/1\.3/CRS84|(OGC:)?CRS84)", key):
        return CRS84
    code = re.fullmatch(
        r"(?i)(?:https?://www\.opengis\.net/def/crs/EPSG/0/|EPSG:{1,2}|urn:ogc:def:crs:EPSG:[\d.]*:)(\d+)", key
    )
    if code is not None:
        for crs in SUPPORTED_CRS[1:]:
            if crs.srid == int(code.group(1)):
                return crs
    raise InvalidInput(
        f"{parameter}={text!r} is not a CRS this API serves; use one of: {', '.join(CRS_URIS)}",
        detail={"parameter": parameter, "supported": list(CRS_URIS)},
    )


@dataclass(frozen=True)
class OgcBBox:
    """A ``bbox`` in its ``bbox-crs``: corners in that CRS's axis order, as OGC API Part 1 and 2 define."""

    crs: OgcCrs
    axis1_min: float
    axis2_min: float
    axis1_max: float
    axis2_max: float

    @property
    def xy(self) -> tuple[float, float, float, float]:
        """Return (min x, min y, max x, max y) with x = longitude or easting."""
        if self.crs.northing_first:
            return self.axis2_min, self.axis1_min, self.axis2_max, self.axis1_max
        return self.axis1_min, self.axis2_min, self.axis1_max, self.axis2_max

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """Return the smallest (west, south, east, north) lon/lat box holding the bbox (exact when geographic)."""
        west, south, east, north = self.xy
        if not self.crs.projected:
            return west, south, east, north
        bounds: tuple[float, float, float, float] = _to_lonlat(self.crs.srid).transform_bounds(
            west, south, east, north, densify_pts=21
        )
        return bounds

    def exact_filter(self, geometry_column: str) -> Expr | None:
        """Return the CQL2 ``S_INTERSECTS`` of a projected bbox, or None when the lon/lat box is already exact."""
        if not self.crs.projected:
            return None
        west, south, east, north = self.xy
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        polygon: dict[str, Any] = {"type": "Polygon", "coordinates": [ring]}
        in_crs = {"op": "st_setsrid", "args": [polygon, self.crs.srid]}
        densified = {"op": "st_segmentize", "args": [in_crs, BBOX_SEGMENT_M]}
        lonlat = {"op": "st_transform", "args": [densified, 4326]}
        return Expr({"op": "s_intersects", "args": [{"property": geometry_column}, lonlat]})


def parse_ogc_bbox(text: str, crs: OgcCrs) -> OgcBBox:
    """Parse ``bbox`` (4 numbers, or 6 with heights that are ignored) in ``crs``; raise InvalidInput if bad."""
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise InvalidInput(
            f"bbox={text!r} is not 4 numbers: give the lower corner then the upper corner in the axis order of "
            f"bbox-crs ({crs.label}), e.g. bbox=104.20,23.34,104.29,23.40 in CRS84",
            detail={"parameter": "bbox"},
        )
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    bbox = OgcBBox(crs, *numbers)
    west, south, east, north = bbox.xy
    if not crs.projected and not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidInput(
            f"bbox={text!r} is outside longitude -180..180 / latitude -90..90 in {crs.label}: check the axis order",
            detail={"parameter": "bbox"},
        )
    if south > north:
        raise InvalidInput(f"bbox={text!r} has its lower corner above its upper corner", detail={"parameter": "bbox"})
    # OGC API Features reads west > east as a box across the antimeridian (180°), which no box in this city
    # is: it is a swapped box, refused as /v1/layers refuses it rather than read as the box the caller meant.
    if west > east:
        raise InvalidInput(
            f"bbox={text!r} has west > east, which OGC API reads as a box across the antimeridian: give the lower "
            f"corner (west, south) then the upper corner (east, north) in the axis order of bbox-crs ({crs.label}), "
            "e.g. bbox=104.20,23.34,104.29,23.40 in CRS84",
            detail={"parameter": "bbox"},
        )
    return bbox


DATETIME_HELP = (
    "an RFC 3339 date-time with its offset, e.g. 2017-03-01T00:00:00+08:00, or an interval of two with .. for an "
    "open end, e.g. 2017-01-01T00:00:00+08:00/2017-04-01T00:00:00+08:00 or ../2017-04-01T00:00:00Z"
)


def parse_ogc_datetime(text: str) -> list[str]:
    """Return ``datetime`` as tipg takes it (one instant, or start and end with ``..`` for an open end).

    Raise InvalidInput saying what a datetime looks like when it is not one, when both ends are open, or
    when the start is after the end.
    """
    parts = text.split("/")
    moments: list[datetime | None] = []
    for part in parts:
        try:
            moments.append(None if len(parts) == 2 and part in ("", "..") else parse_rfc3339(part))
        except ValueError:
            moments = []
            break
    if len(parts) > 2 or not moments:
        raise InvalidInput(
            f"datetime={text!r} is not a datetime: give {DATETIME_HELP}", detail={"parameter": "datetime"}
        )
    start, end = moments[0], moments[-1]
    if len(parts) == 2 and start is None and end is None:
        raise InvalidInput(
            f"datetime={text!r} is open at both ends: give {DATETIME_HELP}", detail={"parameter": "datetime"}
        )
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"datetime={text!r} starts after it ends: swap the two", detail={"parameter": "datetime"})
    return parts


def _flipped(geometry: dict[str, Any]) -> dict[str, Any]:
    """Return a GeoJSON geometry with the first two axes of each position swapped (latitude-first to lon/lat)."""

    def swap(node: Any) -> Any:
        if isinstance(node, list) and node and isinstance(node[0], int | float):
            return [node[1], node[0], *node[2:]]
        return [swap(item) for item in node] if isinstance(node, list) else node

    if geometry.get("type") == "GeometryCollection":
        return {**geometry, "geometries": [_flipped(g) for g in geometry.get("geometries", [])]}
    return {**geometry, "coordinates": swap(geometry.get("coordinates"))}


def _literal_in_storage_crs(literal: dict[str, Any], crs: OgcCrs) -> dict[str, Any]:
    """Return a CQL2 geometry literal or BBOX given in ``crs`` as SQL functions that give it in lon/lat 4326.

    The SRID is always set: a BBOX is ``ST_MakeEnvelope`` without one (SRID 0), which PostGIS refuses to
    compare with the stored geometries.
    """
    if "bbox" in literal:
        box = list(literal["bbox"])
        if len(box) == 6:  # heights are ignored, as in ``bbox``
            box = [box[0], box[1], box[3], box[4]]
        if crs.northing_first and len(box) == 4:
            box = [box[1], box[0], box[3], box[2]]
        literal = {"bbox": box}
    elif crs.northing_first:
        literal = _flipped(literal)
    node: dict[str, Any] = {"op": "st_setsrid", "args": [literal, crs.srid]}
    if crs.projected:  # edges are straight in the projected CRS, as for a projected ``bbox``
        node = {"op": "st_segmentize", "args": [node, BBOX_SEGMENT_M]}
    if crs.srid != 4326:
        node = {"op": "st_transform", "args": [node, 4326]}
    return node


def _is_geometry_literal(node: dict[str, Any]) -> bool:
    if set(node) == {"bbox"}:
        return True
    return node.get("type") in GEOJSON_TYPES.values() or node.get("type") == "GeometryCollection"


def filter_in_storage_crs(expr: Expr, crs: OgcCrs) -> Expr:
    """Return a CQL2 filter whose geometries (``filter-crs``: ``crs``, its axis order) are compared in lon/lat.

    Every geometry literal and BBOX is tagged with ``crs``'s SRID, flipped to x-first when ``crs`` is
    latitude- or northing-first (EPSG:4326, 4490, 4544, as ``bbox-crs`` reads them) and reprojected to the
    stored EPSG:4326, so that the column's spatial index stays usable.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if _is_geometry_literal(node):
            return _literal_in_storage_crs(node, crs)
        return {key: walk(value) for key, value in node.items()}

    return Expr(walk(expr.to_json()))


def tile_in_matrix_set(tms: TileMatrixSet, z: int, x: int, y: int) -> Tile:
    """Return the tile ``z/x/y`` of ``tms``; raise NotFound when its zoom, column or row is outside the set."""
    name = tms.id or "the tile matrix set"
    if not tms.minzoom <= z <= tms.maxzoom:
        raise NotFound(
            f"tile {z}/{x}/{y} does not exist: {name} has tile matrices {tms.minzoom} to {tms.maxzoom}",
            detail={"tileMatrix": z, "tileMatrices": [tms.minzoom, tms.maxzoom]},
        )
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise NotFound(
            f"tile {z}/{x}/{y} does not exist: tile matrix {z} of {name} has columns 0 to {matrix.matrixWidth - 1} "
            f"and rows 0 to {matrix.matrixHeight - 1}",
            detail={"tileMatrix": z, "tileCol": x, "tileRow": y},
        )
    return Tile(x, y, z)


class LayerCollection(PgCollection):
    """One of our layers as a tipg collection, optionally reprojected and filtered by a projected bbox.

    The catalogue holds one instance per layer; each request works on a copy made by ``for_request``.
    """

    layer_name: str
    current_generation_only: bool = False
    output_crs: OgcCrs = CRS84
    bbox: OgcBBox | None = None

    def for_request(self, *, output_crs: OgcCrs, bbox: OgcBBox | None) -> LayerCollection:
        """Return a copy of this collection that answers in ``output_crs`` and applies ``bbox`` exactly."""
        return self.model_copy(update={"output_crs": output_crs, "bbox": bbox})

    def _geom_expr(self, geometry_column: Column | None, bbox_only: bool | None, simplify: float | None) -> str | None:
        """Return tipg's geometry expression, reprojected to the requested CRS in its authority axis order."""
        expr: str | None = super()._geom_expr(geometry_column, bbox_only, simplify)
        crs = self.output_crs
        if expr is None or crs == CRS84:
            return expr
        if crs.srid != 4326:
            expr = f"ST_Transform({expr}, {int(crs.srid)})"
        if crs.northing_first:
            expr = f"ST_FlipCoordinates({expr})"
        # ST_AsGeoJSON writes a "crs" member for any SRID but 4326; Part 2 names the CRS in the Content-Crs
        # header instead, so the SRID is dropped once the coordinates are in the requested CRS.
        return f"ST_SetSRID({expr}, 0)"

    def cql_where(self, *args: Any, **kwargs: Any) -> Expr | None:
        """Return tipg's filter, plus the generation in force now (boundary layers) and an exact projected bbox."""
        where: Expr | None = super().cql_where(*args, **kwargs)
        extra: list[Expr] = []
        if self.current_generation_only:
            now = {"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            generation = {"op": "citygrid_generation_at", "args": [now]}
            extra.append(Expr({"op": "=", "args": [{"property": "generation"}, generation]}))
        if self.bbox is not None and self.geometry_column is not None:
            exact = self.bbox.exact_filter(self.geometry_column.name)
            if exact is not None:
                extra.append(exact)
        for expr in extra:
            where = expr if where is None else where + expr
        return where


def _pg_type(sql_type: Any) -> str:
    """Return the PostgreSQL type name tipg expects for a column's SQLAlchemy type."""
    if isinstance(sql_type, Geometry):
        return "geometry"
    if isinstance(sql_type, DateTime):
        return "timestamptz" if sql_type.timezone else "timestamp"
    if isinstance(sql_type, Date):
        return "date"
    if isinstance(sql_type, Boolean):
        return "bool"
    if isinstance(sql_type, SmallInteger):
        return "smallint"
    if isinstance(sql_type, BigInteger):
        return "bigint"
    if isinstance(sql_type, Integer):
        return "integer"
    if isinstance(sql_type, Float):
        return "float8"
    return "text"


def _extent(conn: Connection, layer: Layer, datetime_column: str | None) -> dict[str, Any]:
    """Return the layer's lon/lat bounds and datetime range (boundary layers: the current generation)."""
    table = layer.table
    columns: list[Any] = []
    if layer.spatial:
        box = func.ST_Extent(table.c.geom)
        columns += [func.ST_XMin(box), func.ST_YMin(box), func.ST_XMax(box), func.ST_YMax(box)]
    if datetime_column is not None:
        columns += [func.min(table.c[datetime_column]), func.max(table.c[datetime_column])]
    if not columns:
        return {}
    query = select(*columns).select_from(table)
    if layer.has_generation:
        query = query.where(table.c.generation == current_generation(conn))
    row = list(conn.execute(query).one())
    extent: dict[str, Any] = {}
    if layer.spatial:
        bounds, row = row[:4], row[4:]
        if bounds[0] is not None:
            extent["bounds"] = [float(v) for v in bounds]
    if datetime_column is not None and row[0] is not None:
        extent["mindt"], extent["maxdt"] = (_rfc3339(v) for v in row)
    return extent


def _rfc3339(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return f"{value.isoformat()}T00:00:00Z"


def layer_collection(conn: Connection, layer: Layer) -> LayerCollection:
    """Return the OGC collection of one layer: its published properties, geometry, datetime and extent."""
    datetime_name = DATETIME_COLUMNS.get(layer.name)
    extent = _extent(conn, layer, datetime_name)
    names = [*layer.published, *(["geom"] if layer.spatial else [])]
    columns: dict[str, Column] = {}
    for name in names:
        column = layer.table.c[name]
        options: dict[str, Any] = {"name": name, "type": _pg_type(column.type)}
        if name == "geom":
            options |= {"geometry_type": GEOJSON_TYPES[str(getattr(column.type, "geometry_type", ""))], "srid": 4326}
            options["bounds"] = extent.get("bounds", [-180.0, -90.0, 180.0, 90.0])
        if name == datetime_name and "mindt" in extent:
            options |= {"mindt": extent["mindt"], "maxdt": extent["maxdt"]}
        columns[name] = Column(**options)
    return LayerCollection(
        type="Table",
        id=layer.name,
        table=layer.table.name,
        schema="public",
        title=f"{layer.label_zh} {layer.label_en}",
        description=f"{layer.label_zh}（{layer.label_en}）"
        + ("，现行边界版本 (boundaries in force now)" if layer.has_generation else ""),
        table_columns=list(columns.values()),
        properties=list(columns.values()),
        id_column=columns[layer.id_column],
        geometry_column=columns.get("geom"),
        datetime_column=columns.get(datetime_name) if datetime_name else None,
        layer_name=layer.name,
        current_generation_only=layer.has_generation,
    )


def catalogue(conn: Connection) -> dict[str, LayerCollection]:
    """Return every public layer as an OGC collection, keyed by collection id (the layer name)."""
    return {name: layer_collection(conn, BY_NAME[name]) for name in PUBLIC}
