"""Load layer files (the fixture, or a user's own) into PostGIS: validate, stage with COPY, upsert.

Flow: each file is read with pyogrio (GeoJSON, GeoPackage, Shapefile, ...), every feature is checked
(required properties, geometry type, validity, coordinate range) and either refused with its file and
feature named, or repaired with ``make_valid`` and reported. Rows go to a temporary table by COPY and into
the layer's table by one ``INSERT … SELECT … ON CONFLICT`` per layer, which also joins each row to its
responsibility chain. Everything happens in one transaction: a failure leaves the database as it was,
and loading the same files twice leaves the same rows (upsert on each layer's key).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyogrio
import shapely
from psycopg2 import sql
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import Connection

from spatial import audit
from spatial.errors import InvalidInput
from spatial.keys import CLI_KEY, ApiKey
from spatial.layers import LAYERS, Layer
from spatial.layers import grids as grids_layer
from spatial.layers.incidents import CHAIN_COLUMNS

FILE_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb")

Progress = Callable[[str, int, int], None]  # (layer name, rows done, rows in file)


@dataclass
class LayerRows:
    """One layer file read and validated: its rows as text (COPY-ready) and what was repaired."""

    layer: Layer
    path: Path
    rows: list[list[str | None]]
    repaired: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What a load did: rows read per layer, rows in each table afterwards, repairs made."""

    read: dict[str, int] = field(default_factory=dict)
    table_counts: dict[str, int] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)


def layer_files(directory: Path) -> list[tuple[Layer, Path]]:
    """Return the known layers that have a file in ``directory``, in load order.

    A file belongs to a layer when its stem is the layer's name (``grids.geojson``, ``grids.gpkg``).
    Unknown files are an error, so that a misspelt name is not silently skipped.
    """
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a folder: give the folder that holds the layer files")
    found: dict[str, Path] = {}
    unknown = []
    names = {layer.name for layer in LAYERS}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in FILE_SUFFIXES:
            continue
        if path.stem not in names:
            unknown.append(path.name)
            continue
        if path.stem in found:
            raise InvalidInput(f"two files for layer {path.stem!r}: {found[path.stem].name} and {path.name}")
        found[path.stem] = path
    if unknown:
        raise InvalidInput(
            f"{', '.join(unknown)} in {directory} match no layer; name each file after its layer: "
            + ", ".join(sorted(names))
        )
    if not found:
        raise InvalidInput(f"no layer files in {directory}; expected files such as grids.geojson")
    return [(layer, found[layer.name]) for layer in LAYERS if layer.name in found]


# GDAL reads the text of a Shapefile that declares no encoding (no .cpg, no code page in the .dbf) as Latin-1
# and says so: GBK names then arrive as mojibake, without an error. Latin-1 maps each byte to one character,
# so the bytes as written are recovered exactly and decoded here, strictly (GDAL's own recoding replaces bad
# bytes with a warning).
_BYTES_AS_TEXT = "ISO-8859-1"
SHAPEFILE_FALLBACK_ENCODINGS = ("utf-8", "gb18030")  # GB18030: the superset of GBK and GB2312


def read_gis_file(path: Path, *, encoding: str | None = None, **options: Any) -> Any:
    """Return ``pyogrio.read_dataframe(path, **options)``, a Shapefile's text read in its real encoding.

    ``encoding`` forces the encoding of a Shapefile's text fields. Without it, a Shapefile that declares
    none is read as UTF-8 if its text is valid UTF-8, else as GB18030: Chinese ArcGIS Shapefiles often come
    without a .cpg, in GBK. Text that is neither is refused, asking for ``--encoding``. Other formats are
    UTF-8 by definition and read as they are.
    """
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise InvalidInput(f"{encoding!r} is not a known text encoding: give e.g. gbk, gb18030 or utf-8") from None
    try:
        info = pyogrio.read_info(path)
        shapefile = info["driver"] == "ESRI Shapefile"
        if shapefile and encoding is not None:
            frame = pyogrio.read_dataframe(path, encoding=_BYTES_AS_TEXT, **options)
        else:
            frame = pyogrio.read_dataframe(path, **options)
    except Exception as exc:  # pyogrio raises several GDAL error classes; all mean "cannot read"
        raise InvalidInput(f"{path}: cannot be read as a GIS file ({exc})") from exc
    if not shapefile:
        return frame
    if encoding is not None:
        try:
            return _decoded(frame, encoding)
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{path}: its text is not {encoding} ({exc.reason} at byte {exc.start}); give its real encoding"
            ) from None
    if info["encoding"] != _BYTES_AS_TEXT:
        return frame  # declared by a .cpg or the .dbf's code page: GDAL has converted it to UTF-8
    for candidate in SHAPEFILE_FALLBACK_ENCODINGS:
        try:
            return _decoded(frame, candidate)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(
        f"{path}: the Shapefile declares no encoding (no .cpg) and its text is neither UTF-8 nor GBK; "
        "say which encoding it is in with --encoding (e.g. --encoding big5)"
    )


def _decoded(frame: Any, encoding: str) -> Any:
    """Return ``frame`` with its field names and text read as Latin-1 decoded again from ``encoding``, strictly."""

    def text(value: Any) -> Any:
        return value.encode(_BYTES_AS_TEXT).decode(encoding) if isinstance(value, str) else value

    frame = frame.rename(columns={c: text(c) for c in frame.columns if c != "geometry"})
    for name in frame.columns:
        if name != "geometry" and (frame[name].dtype == object or pd.api.types.is_string_dtype(frame[name].dtype)):
            frame[name] = frame[name].map(text)
    return frame


def read_layer(layer: Layer, path: Path, *, make_valid: bool = False) -> LayerRows:
    """Read and validate one layer file; raise InvalidInput naming the file and feature on a bad one."""
    frame = read_gis_file(path, datetime_as_string=True, read_geometry=layer.spatial)
    if layer.spatial:
        if frame.crs is None:
            raise InvalidInput(f"{path}: no coordinate reference system; give the file a CRS (e.g. EPSG:4490)")
        if frame.crs.to_epsg() not in (4326, 4490):
            frame = frame.to_crs(4326)
    return check_frame(layer, frame, path, make_valid=make_valid)


def check_frame(layer: Layer, frame: Any, path: Path, *, make_valid: bool = False) -> LayerRows:
    """Validate the features of ``frame`` (read from ``path``, lon/lat) and return them as COPY-ready rows.

    Raises InvalidInput naming the file and feature at the first bad one; with ``make_valid`` an invalid
    geometry is repaired and listed in ``repaired`` instead. The boundary importer reuses these checks.
    """
    missing = [f.name for f in layer.fields if f.required and f.name not in frame.columns]
    if missing:
        raise InvalidInput(f"{path}: property {', '.join(missing)} missing; layer {layer.name} needs it")
    result = LayerRows(layer=layer, path=path, rows=[])
    key_field = layer.key[-1]
    for number, record in enumerate(frame.to_dict("records"), start=1):
        where = f"{path.name}, feature {number}" + (
            f" ({key_field}={record.get(key_field)})" if key_field in record else ""
        )
        row: list[str | None] = []
        for f in layer.fields:
            value = _text(record.get(f.name))
            if value is None and f.required:
                raise InvalidInput(f"{where}: property {f.name!r} is empty; layer {layer.name} requires it")
            row.append(value)
        if layer.spatial:
            row.append(_geometry_hex(layer, record.get("geometry"), where, make_valid, result.repaired))
        result.rows.append(row)
    return result


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN: pandas' empty cell
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _geometry_hex(layer: Layer, geom: Any, where: str, make_valid: bool, repaired: list[str]) -> str:
    accepted = layer.geometry_types or ()
    if geom is None or geom.is_empty:
        raise InvalidInput(f"{where}: no geometry; layer {layer.name} needs a {' or '.join(accepted)}")
    if geom.has_z:
        geom = shapely.force_2d(geom)
    if geom.geom_type not in accepted:
        raise InvalidInput(f"{where}: geometry is a {geom.geom_type}; layer {layer.name} takes {' or '.join(accepted)}")
    west, south, east, north = geom.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidInput(
            f"{where}: coordinates {geom.bounds} are outside longitude -180..180 / latitude -90..90 "
            "(are latitude and longitude swapped, or is the file projected without a CRS?)"
        )
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        if not make_valid:
            raise InvalidInput(f"{where}: invalid geometry ({reason}); fix it, or load with --make-valid")
        fixed = _repair(geom, accepted)
        if fixed is None:
            raise InvalidInput(f"{where}: invalid geometry ({reason}) that make_valid cannot turn into a {accepted[0]}")
        repaired.append(f"{where}: {reason} — repaired")
        geom = fixed
    return str(shapely.to_wkb(geom, hex=True))


def _repair(geom: Any, accepted: tuple[str, ...]) -> Any | None:
    fixed = shapely.make_valid(geom)
    if fixed.geom_type in accepted:
        return fixed
    # make_valid may return a collection (polygon plus a stray line): keep the polygonal part.
    polygons = [part for part in getattr(fixed, "geoms", []) if part.geom_type in ("Polygon", "MultiPolygon")]
    if polygons:
        merged = shapely.union_all(polygons)
        if merged.geom_type in accepted:
            return merged
        if merged.geom_type == "MultiPolygon" and "Polygon" in accepted and len(merged.geoms) == 1:
            return merged.geoms[0]
    return None


def load_directory(
    engine: Engine,
    directory: Path,
    *,
    make_valid: bool = False,
    progress: Progress | None = None,
    key: ApiKey = CLI_KEY,
) -> LoadReport:
    """Load every layer file in ``directory`` in one transaction and return what was done.

    The audit log gets one entry per layer file (by ``key``), not one per row.
    """
    files = layer_files(directory)
    batches = [read_layer(layer, path, make_valid=make_valid) for layer, path in files]
    report = LoadReport()
    with engine.begin() as conn:
        audit.bulk(conn, key)
        for batch in batches:
            _load_batch(conn, batch, progress)
            report.read[batch.layer.name] = len(batch.rows)
            report.repaired.extend(batch.repaired)
            audit.record(
                conn, action="load", table=batch.layer.table.name, rows=len(batch.rows),
                detail={"file": str(batch.path), "repaired": len(batch.repaired)},
            )  # fmt: skip
        for batch in batches:
            conn.execute(text(f"ANALYZE {batch.layer.table.name}"))  # our own table names, not input
        if any(batch.layer.name == "grids" for batch in batches):
            conn.execute(text("ANALYZE grid_parts"))
        report.table_counts = table_counts(conn)
    return report


def table_counts(conn: Connection) -> dict[str, int]:
    """Return the number of rows in every layer's table."""
    return {layer.name: conn.execute(select(func.count()).select_from(layer.table)).scalar_one() for layer in LAYERS}


def database_is_empty(engine: Engine) -> bool:
    """Return True when no grids are loaded (``make run`` then loads the fixture)."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(grids_layer.table)).scalar_one() == 0


def load_rows(conn: Connection, batch: LayerRows) -> None:
    """Stage one validated batch with COPY and upsert it into its layer's table, in the caller's transaction."""
    _load_batch(conn, batch, None)


def _load_batch(conn: Connection, batch: LayerRows, progress: Progress | None) -> None:
    layer = batch.layer
    fields = [f.name for f in layer.fields]
    stage = sql.Identifier(f"stage_{layer.name}")
    stage_columns = [*fields, *(["geom_wkb"] if layer.spatial else [])]
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} (row_no integer, {}) ON COMMIT DROP").format(
                stage, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in stage_columns)
            )
        )
        total = len(batch.rows)
        chunk = 50_000
        for start in range(0, max(total, 1), chunk):
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for offset, row in enumerate(batch.rows[start : start + chunk]):
                writer.writerow([start + offset + 1, *("\\N" if v is None else v for v in row)])
            buffer.seek(0)
            cur.copy_expert(
                sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, NULL '\\N')").format(stage).as_string(cur),
                buffer,
            )
            if progress:
                progress(layer.name, min(start + chunk, total), total)
        try:
            cur.execute(_upsert_statement(layer, stage))
        except Exception as exc:  # a cast or constraint failed: name the layer and the file
            raise InvalidInput(f"{batch.path}: rows refused by the database: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _upsert_statement(layer: Layer, stage: sql.Identifier) -> sql.Composed:
    """Compose ``INSERT … SELECT … ON CONFLICT`` for a layer, joining the chain where the layer has one."""
    targets = [sql.Identifier(f.name) for f in layer.fields]
    values = [sql.SQL("s.{}::{}").format(sql.Identifier(f.name), sql.SQL(f.sql_type)) for f in layer.fields]
    source = sql.SQL("{} s").format(stage)
    if layer.spatial:
        geometry_type: str = getattr(layer.table.c.geom.type, "geometry_type", "")
        geom = sql.SQL("ST_SetSRID(ST_GeomFromWKB(decode(s.geom_wkb, 'hex')), 4326)")
        if geometry_type.startswith("MULTI"):
            geom = sql.SQL("ST_Multi({})").format(geom)
        targets.append(sql.Identifier("geom"))
        values.append(geom)
        if layer.assigned:
            # The chain comes from citygrid_owner_points over all staged rows at once (row_no is 1..n, the
            # same order as the arrays), as of the report for incidents and as of now for the rest.
            point = geom if layer.geometry_types == ("Point",) else sql.SQL("ST_PointOnSurface({})").format(geom)
            at = sql.SQL("s.reported_at::timestamptz") if layer.name == "incidents" else sql.SQL("now()")
            chain = CHAIN_COLUMNS if layer.name == "incidents" else ("generation", "grid_code")
            targets.extend(sql.Identifier(c) for c in chain)
            values.extend(sql.SQL("o.{}").format(sql.Identifier(c)) for c in chain)
            source = sql.SQL(
                "{stage} s JOIN citygrid_owner_points("
                "(SELECT array_agg({point} ORDER BY s.row_no) FROM {stage} s), "
                "(SELECT array_agg({at} ORDER BY s.row_no) FROM {stage} s)) o ON o.row_no = s.row_no"
            ).format(stage=stage, point=point, at=at)
    updates = [sql.SQL("{0} = EXCLUDED.{0}").format(t) for t in targets if t.strings[0] not in layer.key]
    conflict_action = (
        sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(updates)) if updates else sql.SQL("DO NOTHING")
    )
    return sql.SQL(
        "INSERT INTO {table} ({targets}) SELECT {values} FROM {source} ORDER BY s.row_no ON CONFLICT ({key}) {action}"
    ).format(
        table=sql.Identifier(layer.table.name),
        targets=sql.SQL(", ").join(targets),
        values=sql.SQL(", ").join(values),
        source=source,
        key=sql.SQL(", ").join(sql.Identifier(k) for k in layer.key),
        action=conflict_action,
    )
