"""Who owns these points: a CSV or GeoJSON file of up to a million points, answered set-based in PostGIS.

Steps: read the rows (every input column is kept), check and convert the coordinates with numpy (a bad
row gets its own error and the batch goes on), and ask ``citygrid_owner_points`` — the function single
lookups and incident intake use — for the good points in one query per chunk of 50,000. Two worker threads
(one connection each, one per core) answer chunks in order a little ahead of the consumer, which writes
every input row back in its input order with its chain, or its error.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from psycopg2.extensions import connection as PgConnection
from sqlalchemy import Engine, func, select

from spatial import encoding
from spatial.crs import parse_crs, to_wgs84_arrays
from spatial.errors import InvalidInput
from spatial.owner import CENTRAL_MERIDIAN, FAR_FROM_MERIDIAN_DEG, no_generation
from spatial.settings import OwnerSettings

MAX_POINTS = 1_000_000
CHUNK_POINTS = 50_000  # points per query: small enough to start answering early, large enough to stay set-based
LON_NAMES = ("lon", "lng", "longitude", "x", "经度")
LAT_NAMES = ("lat", "latitude", "y", "纬度")

# What each answered row gains, in this order (CSV columns; GeoJSON "owner" members).
CHAIN_FIELDS = (
    "grid_code", "grid_name", "community_code", "community_name", "subdistrict_code", "subdistrict_name",
    "squad_code", "squad_name", "grid_member_id", "grid_member_name", "grid_member_phone", "street_code",
    "street_name", "street_distance_m", "street_chief_id", "street_chief_name", "subdistrict_chief_id",
    "general_street_chief_id", "river_code", "river_distance_m", "river_chief_id", "generation", "ambiguous",
    "candidates", "outside", "distance_to_grid_m", "distance_to_boundary_m", "error",
)  # fmt: skip

# One statement per chunk: the points arrive as one geometry[] literal of hex EWKB (the exact doubles, written
# by numpy; no temporary table), and the answer leaves as CSV formatted by PostgreSQL (quoting included) or
# as rows. The arrays are constants, not built by a subquery, so that the planner inlines the chain function
# and sees how many points the chunk holds: it then joins them to the cell tables by hashing, instead of
# probing a B-tree per point as for the few points it must assume otherwise (migration 0010). What follows
# from the grid is named by one join to the names of every grid (grid, community, subdistrict, squad: a few
# hundred rows) instead of four joins per point (≈1.5 µs of ≈20 µs a point); the codes matched are the
# chain's own, so a name never disagrees with its code.
_CHUNK_SQL = """
WITH grid_names AS MATERIALIZED (
    SELECT g.generation, g.code AS grid_code, g.name AS grid_name, c.code AS community_code,
           c.name AS community_name, sd.code AS subdistrict_code, sd.name AS subdistrict_name,
           sq.code AS squad_code, sq.name AS squad_name
    FROM grids g
    JOIN communities c ON c.generation = g.generation AND c.code = g.community_code
    JOIN subdistricts sd ON sd.generation = c.generation AND sd.code = c.subdistrict_code
    LEFT JOIN squads sq ON sq.subdistrict_code = sd.code
)
SELECT {columns} FROM (
SELECT o.row_no, o.grid_code, n.grid_name, o.community_code, n.community_name, o.subdistrict_code,
       n.subdistrict_name, o.squad_code, n.squad_name, o.grid_member_id,
       gm.name AS grid_member_name, gm.phone AS grid_member_phone, o.street_code, st.name AS street_name,
       round(o.street_distance_m::numeric, 2) AS street_distance_m, o.street_chief_id, sc.name AS street_chief_name,
       o.subdistrict_chief_id, o.general_street_chief_id, o.river_code,
       round(o.river_distance_m::numeric, 2) AS river_distance_m, o.river_chief_id, o.generation,
       cardinality(o.candidates) > 1 AS ambiguous, array_to_string(o.candidates, ' ') AS candidates, o.outside,
       round(o.distance_to_grid_m::numeric, 2) AS distance_to_grid_m,
       round(o.distance_to_boundary_m::numeric, 2) AS distance_to_boundary_m,
       CASE WHEN o.grid_code IS NULL THEN
            'not covered: ' || round(o.distance_to_grid_m::numeric, 1) || ' m from grid ' || o.nearest_grid_code
       END AS error
FROM citygrid_owner_points(
        %(points)s::geometry[], array_fill(%(at)s::timestamptz, ARRAY[%(count)s]),
        %(edge)s, %(outside)s, %(street)s, %(river)s) o
LEFT JOIN grid_names n ON n.generation = o.generation AND n.grid_code = o.grid_code
    AND n.community_code = o.community_code AND n.subdistrict_code = o.subdistrict_code
    AND n.squad_code IS NOT DISTINCT FROM o.squad_code
LEFT JOIN streets st ON st.code = o.street_code
LEFT JOIN people gm ON gm.id = o.grid_member_id
LEFT JOIN people sc ON sc.id = o.street_chief_id
) chain
ORDER BY chain.row_no
"""
_ROWS_SQL = _CHUNK_SQL.format(columns=", ".join(CHAIN_FIELDS))
# The CSV answer: booleans as true/false (PostgreSQL's text form), not t/f.
_CSV_SQL = _CHUNK_SQL.format(
    columns=", ".join(f"{c}::text" if c in ("ambiguous", "outside") else c for c in CHAIN_FIELDS)
)


@dataclass
class Batch:
    """Input rows with their coordinates checked: ``ok`` marks rows sent to the database.

    ``prefixes`` holds each CSV row as UTF-8 CSV bytes followed by the comma that starts its chain (no line
    end): what is written back before the chain, ready to be joined to PostgreSQL's bytes as they come.
    """

    columns: list[str]
    prefixes: list[bytes]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    errors: list[str | None]
    kind: str  # "csv" | "geojson"
    features: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        """Return a mask of rows whose coordinates are good."""
        return np.array([e is None for e in self.errors], dtype=bool)


def _column(columns: list[str], names: tuple[str, ...], what: str) -> int:
    lowered = {c.strip().lower(): i for i, c in reversed(list(enumerate(columns)))}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise InvalidInput(f"the CSV has no {what} column: name one of {', '.join(names)} (found: {', '.join(columns)})")


def read_csv(data: bytes, *, crs: str | None, max_points: int = MAX_POINTS) -> Batch:
    """Read a CSV with lon/lat columns (UTF-8 with or without BOM, or GBK); check every row's coordinates.

    A row with more fields than the header is not looked up (which field is which cannot be known): it gets its
    own error and is written back with the header's number of fields; a row with fewer is filled with blanks.
    """
    text = encoding.decode(data)
    plain = _plain_csv(text, max_points)
    if plain is not None:
        columns, prefixes = plain
        lon_at, lat_at = _column(columns, LON_NAMES, "longitude"), _column(columns, LAT_NAMES, "latitude")
        x, y = _coordinates(text, len(prefixes), lon_at, lat_at)
        return _checked(columns, prefixes, x, y, crs, "csv")
    # quoted fields (commas or line breaks inside), ragged rows, repeated names: the csv module's parser
    parsed = _parsed_csv(text, max_points)
    lon_at, lat_at = _column(parsed.columns, LON_NAMES, "longitude"), _column(parsed.columns, LAT_NAMES, "latitude")
    x = pd.to_numeric(pd.Series([row[lon_at] for row in parsed.rows], dtype=object), errors="coerce")
    y = pd.to_numeric(pd.Series([row[lat_at] for row in parsed.rows], dtype=object), errors="coerce")
    return _checked(
        parsed.columns, _csv_prefixes(parsed.rows), x.to_numpy(dtype=np.float64), y.to_numpy(dtype=np.float64),
        crs, "csv", parsed.errors,
    )  # fmt: skip


@dataclass
class _ParsedCsv:
    """A CSV read by the csv module: the header, every row cut or filled to the header's width, ragged rows."""

    columns: list[str]
    rows: list[list[str]]
    errors: dict[int, str]  # row index → why it is not looked up


def _parsed_csv(text: str, max_points: int) -> _ParsedCsv:
    """Return the header, the rows (blank lines skipped) and an error naming the line of each row too long."""
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = next(reader, [])
    width = len(columns)
    rows: list[list[str]] = []
    errors: dict[int, str] = {}
    line = reader.line_num + 1  # where the next record starts
    for fields in reader:
        if fields:
            if len(fields) > width:
                errors[len(rows)] = (
                    f"line {line} has {len(fields)} fields but the header {width}: not looked up, as which field is "
                    f"which is unclear; the fields after the {width}th are left out here"
                )
                fields = fields[:width]
            elif len(fields) < width:
                fields += [""] * (width - len(fields))
            rows.append(fields)
        line = reader.line_num + 1
    if len(rows) > max_points:
        raise InvalidInput(f"{len(rows):,} rows is more than {max_points:,} points: split the file")
    return _ParsedCsv(columns=columns, rows=rows, errors=errors)


def _csv_prefixes(rows: list[list[str]]) -> list[bytes]:
    """Return each row as one UTF-8 CSV record and a comma, line breaks inside a field quoted."""
    buffer = io.StringIO()
    # "\r\n" as terminator: the writer then quotes a field holding either character
    writer = csv.writer(buffer, lineterminator="\r\n")
    prefixes = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        prefixes.append(buffer.getvalue()[:-2].encode() + b",")
    return prefixes


def _plain_csv(text: str, max_points: int) -> tuple[list[str], list[bytes]] | None:
    """Return the header's names and the rows' prefixes of a CSV without quotes, or None if it needs a parser.

    Most point files are plain (numbers and names, no quotes): their lines are their rows, written back as
    they came, and splitting lines is ≈20× cheaper than building a data frame of strings. The lines are cut
    from the UTF-8 bytes with the comma after each already in place (one replace), so that no row is touched
    one by one again when it is written back.
    """
    if '"' in text:
        return None
    utf8 = text.replace("\r\n", "\n").removesuffix("\r").encode()
    header, _, body = utf8.partition(b"\n")
    columns = header.decode().removesuffix("\r").split(",")
    if len(set(columns)) != len(columns):
        return None
    lines = body.replace(b"\n", b",\n").split(b"\n")
    if not body.endswith(b"\n"):
        lines[-1] += b","  # the last line had no line end, hence no comma from the replace
    commas = len(columns)  # the row's own commas and the one added after it
    rows = [line for line in lines if line != b"," and line]  # blank lines are skipped, as pandas does
    if any(line.count(b",") != commas for line in rows):
        return None
    if len(rows) > max_points:
        raise InvalidInput(f"{len(rows):,} rows is more than {max_points:,} points: split the file")
    return columns, rows


def _coordinates(
    text: str, count: int, lon_at: int, lat_at: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return a plain CSV's lon and lat columns as floats, NaN where a value is missing or not a number."""
    lon_i, lat_i = (0, 1) if lon_at < lat_at else (1, 0)  # pandas keeps the file's column order
    try:  # numbers throughout: pandas' C parser reads the two columns straight to floats
        frame = pd.read_csv(io.StringIO(text), usecols=[lon_at, lat_at], dtype=np.float64)
        if len(frame) == count:
            return frame.iloc[:, lon_i].to_numpy(), frame.iloc[:, lat_i].to_numpy()
    except ValueError:
        pass  # a value that is not a number: read as text below, and that row gets its own error
    frame = pd.read_csv(io.StringIO(text), usecols=[lon_at, lat_at], dtype=str, keep_default_na=False)
    return (
        pd.to_numeric(frame.iloc[:, lon_i], errors="coerce").to_numpy(dtype=np.float64),
        pd.to_numeric(frame.iloc[:, lat_i], errors="coerce").to_numpy(dtype=np.float64),
    )


def read_geojson(data: bytes, *, crs: str | None, max_points: int = MAX_POINTS) -> Batch:
    """Read a GeoJSON FeatureCollection of points; a feature without a point gets its own error."""
    try:
        collection = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the body is not valid GeoJSON ({exc}); send a FeatureCollection of points") from None
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise InvalidInput("the GeoJSON is not a FeatureCollection: wrap the points in one")
    features = collection.get("features") or []
    if not isinstance(features, list):
        raise InvalidInput("the FeatureCollection's features is not a list: send features as a JSON array")
    if len(features) > max_points:
        raise InvalidInput(f"{len(features):,} features is more than {max_points:,} points: split the file")
    x = np.full(len(features), np.nan)
    y = np.full(len(features), np.nan)
    not_points: dict[int, str] = {}
    for i, feature in enumerate(features):
        geometry = (feature if isinstance(feature, dict) else {}).get("geometry") or {}
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        if kind is None:
            continue  # no geometry: "coordinates missing"
        if kind != "Point":
            not_points[i] = f"the geometry is a {kind}, not a Point: give each feature one point"
            continue
        coords = geometry.get("coordinates")
        if isinstance(coords, list) and len(coords) >= 2:
            try:
                x[i], y[i] = float(coords[0]), float(coords[1])
            except (TypeError, ValueError):
                pass
    batch = _checked([], [], x, y, crs, "geojson", not_points)
    batch.features = features
    return batch


def _checked(
    columns: list[str], prefixes: list[bytes], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
    crs_name: str | None, kind: str, refused: dict[int, str] | None = None,
) -> Batch:  # fmt: skip
    """Return the batch with each row's error: ``refused`` rows (their own reason), then bad coordinates."""
    crs = parse_crs(crs_name)
    if refused:
        x, y = x.copy(), y.copy()
        x[list(refused)] = y[list(refused)] = np.nan
    errors: list[str | None] = [None] * len(x)
    finite = np.isfinite(x) & np.isfinite(y)
    in_range = finite if crs.projected else finite & (np.abs(x) <= 180) & (np.abs(y) <= 90)
    for i in np.flatnonzero(~in_range):
        if not finite[i]:
            errors[i] = "coordinates missing or not numbers"
        elif abs(x[i]) <= 90 and abs(y[i]) <= 180:
            errors[i] = f"lon {x[i]} / lat {y[i]} out of range: they look swapped (give lon first, then lat)"
        else:
            errors[i] = f"lon {x[i]} / lat {y[i]} out of range (lon -180..180, lat -90..90)"
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    if in_range.any():
        lon[in_range], lat[in_range] = to_wgs84_arrays(x[in_range], y[in_range], crs)
    far = np.abs(lon - CENTRAL_MERIDIAN) > FAR_FROM_MERIDIAN_DEG  # cannot be measured in EPSG:4544 (spatial.owner)
    for i in np.flatnonzero(far):
        errors[i] = f"not covered: lon {lon[i]} is too far from this city's projection zone"
    lon[far] = lat[far] = np.nan
    for row, reason in (refused or {}).items():
        errors[row] = reason
    return Batch(columns=columns, prefixes=prefixes, lon=lon, lat=lat, errors=errors, kind=kind)


class _Chunks:
    """Chunks answered ahead by worker threads and handed to the consumer in order.

    A worker claims the next chunk only while fewer than ``ahead`` answered chunks wait for the consumer,
    so memory stays bounded when the client reads slowly.
    """

    def __init__(self, count: int, ahead: int) -> None:
        self.count = count
        self.ahead = ahead
        self.claimed = 0
        self.taken = 0
        self.closed = False
        self.answers: dict[int, Any] = {}
        self.condition = threading.Condition()

    def claim(self) -> int | None:
        """Return the next chunk to answer, or None when there is none left (or the consumer left)."""
        with self.condition:
            self.condition.wait_for(lambda: self.closed or self.claimed < min(self.count, self.taken + self.ahead))
            if self.closed:
                return None
            self.claimed += 1
            return self.claimed - 1

    def put(self, index: int, answer: Any) -> None:
        """Hand over the answer of chunk ``index`` (or the exception that stopped it)."""
        with self.condition:
            self.answers[index] = answer
            self.condition.notify_all()

    def take(self, index: int) -> Any:
        """Wait for chunk ``index``'s answer and return it; raise the exception that stopped it."""
        with self.condition:
            self.condition.wait_for(lambda: index in self.answers)
            answer = self.answers.pop(index)
            self.taken = index + 1
            self.condition.notify_all()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        """Stop the workers: no chunk is claimed after this."""
        with self.condition:
            self.closed = True
            self.condition.notify_all()


# A point with SRID as EWKB: little-endian, type 1 (point) with the SRID flag, SRID, x, y (25 bytes).
_EWKB_POINT = np.dtype([("order", "u1"), ("kind", "<u4"), ("srid", "<u4"), ("x", "<f8"), ("y", "<f8")])


def _point_array(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> str:
    """Return the points as a geometry[] literal: hex EWKB in EPSG:4326, the same doubles, ':' between them.

    The same geometries as ST_SetSRID(ST_MakePoint(lon, lat), 4326), built by numpy in one pass.
    """
    records = np.empty(len(lon), dtype=_EWKB_POINT)
    records["order"], records["kind"], records["srid"] = 1, 0x20000001, 4326
    records["x"], records["y"] = lon, lat
    hexed = np.frombuffer(records.tobytes().hex().encode(), dtype=np.uint8).reshape(len(lon), 2 * _EWKB_POINT.itemsize)
    text = np.empty((len(lon), hexed.shape[1] + 1), dtype=np.uint8)
    text[:, :-1], text[:, -1] = hexed, ord(":")  # geometry's array delimiter is ':', not ','
    return "{" + text.tobytes()[:-1].decode() + "}"


def _work(
    engine: Engine, chunks: list[npt.NDArray[np.intp]], batch: Batch, at: datetime, rules: OwnerSettings,
    pending: _Chunks, as_csv: bool,
) -> None:  # fmt: skip
    """Answer claimed chunks on one connection: CSV text (formatted by PostgreSQL) or rows, in input order."""
    try:
        raw = engine.raw_connection()
    except Exception as exc:  # handed to the consumer, which raises it in the request's thread
        while (index := pending.claim()) is not None:
            pending.put(index, exc)
        return
    try:
        conn: PgConnection = raw.driver_connection
        while (index := pending.claim()) is not None:
            try:
                rows = chunks[index]
                params = {
                    "points": _point_array(batch.lon[rows], batch.lat[rows]), "count": len(rows),
                    "at": at, "edge": rules.edge_tolerance_m, "outside": rules.outside_tolerance_m,
                    "street": rules.street_radius_m, "river": rules.river_radius_m,
                }  # fmt: skip
                with conn.cursor() as cur:
                    # For this chunk's transaction only: with merge joins allowed, the planner sorted the chunk's
                    # points to merge them with the cell tables, where hashing the cells is cheaper (backend CPU
                    # per 50,000 points ≈650 → ≈530 ms, the same CSV).
                    cur.execute("SET LOCAL enable_mergejoin = off")
                    if as_csv:
                        sink = io.BytesIO()
                        cur.copy_expert(f"COPY ({cur.mogrify(_CSV_SQL, params).decode()}) TO STDOUT (FORMAT csv)", sink)
                        # one line per row: PostgreSQL's CSV quotes never hold a line break (names, codes, numbers)
                        answer: Any = sink.getvalue().split(b"\n")[:-1]
                    else:
                        cur.execute(_ROWS_SQL, params)
                        answer = cur.fetchall()
                conn.rollback()  # read only: end the transaction psycopg2 opened
                pending.put(index, answer)
            except Exception as exc:
                conn.rollback()
                pending.put(index, exc)
    finally:
        raw.close()


def _start(
    engine: Engine, batch: Batch, at: datetime | None, rules: OwnerSettings, workers: int, as_csv: bool
) -> tuple[list[npt.NDArray[np.intp]], _Chunks]:
    """Split the good rows into chunks and start ``workers`` threads (one connection each) answering them.

    Several chunks per worker let the answer stream out while later chunks are still being computed.
    """
    moment = at or datetime.now(UTC)
    good = np.flatnonzero(batch.ok)
    count = max(1, -(-len(good) // CHUNK_POINTS))
    chunks = [c for c in np.array_split(good, count) if len(c)]
    pending = _Chunks(len(chunks), ahead=workers + 2)
    for _ in range(min(workers, len(chunks))):
        threading.Thread(
            target=_work, args=(engine, chunks, batch, moment, rules, pending, as_csv), daemon=True
        ).start()
    return chunks, pending


def answer(
    engine: Engine, batch: Batch, *, at: datetime | None = None, rules: OwnerSettings, workers: int = 2
) -> Iterator[tuple[int, tuple[Any, ...] | None]]:
    """Yield (input row index, chain row or None) for every input row, in input order."""
    chunks, pending = _start(engine, batch, at, rules, workers, as_csv=False)
    try:
        cursor = 0
        for number, chunk in enumerate(chunks):
            for index, row in zip(chunk.tolist(), pending.take(number), strict=True):
                while cursor < index:
                    yield cursor, None
                    cursor += 1
                yield index, row
                cursor = index + 1
        while cursor < len(batch.errors):
            yield cursor, None
            cursor += 1
    finally:
        pending.close()


def answer_csv(
    engine: Engine, batch: Batch, *, at: datetime | None = None, rules: OwnerSettings, workers: int = 2
) -> Iterator[bytes]:
    """Yield the CSV answer in UTF-8 pieces: every input column, then the chain columns and ``error``, in order.

    Bytes throughout: each row is its input prefix (its line and a comma), the line PostgreSQL wrote for it and
    a line end, laid side by side in one list and joined once per chunk; decoding PostgreSQL's answer, joining the
    pieces of every row as text and encoding it again were ≈2 s of the server's CPU per million points.
    """
    chunks, pending = _start(engine, batch, at, rules, workers, as_csv=True)
    prefixes = batch.prefixes
    header = io.StringIO()
    csv.writer(header).writerow([*batch.columns, *CHAIN_FIELDS])
    blank = b"," * (len(CHAIN_FIELDS) - 1)

    def failed(start: int, stop: int) -> bytes:
        return b"".join(
            prefixes[i] + blank + b'"' + (batch.errors[i] or "").replace('"', '""').encode() + b'"\n'
            for i in range(start, stop)
        )

    try:
        yield (header.getvalue().rstrip("\r\n") + "\n").encode()
        cursor = 0
        for number, chunk in enumerate(chunks):
            lines: list[bytes] = pending.take(number)
            if len(lines) != len(chunk):
                raise RuntimeError(f"chunk {number}: {len(lines)} answers for {len(chunk)} points")
            first, last = int(chunk[0]), int(chunk[-1])
            piece = [failed(cursor, first)]
            if last - first + 1 == len(chunk):  # no bad row inside this chunk: prefix, line, line end, …
                rows = [b"\n"] * (3 * len(chunk))
                rows[0::3], rows[1::3] = prefixes[first : last + 1], lines
                piece.extend(rows)
            else:
                previous = first
                for index, line in zip(chunk.tolist(), lines, strict=True):
                    piece.append(failed(previous, index))
                    piece.append(prefixes[index] + line + b"\n")
                    previous = index + 1
            cursor = last + 1
            yield b"".join(piece)
        yield failed(cursor, len(batch.errors))
    finally:
        pending.close()


def primed(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Return ``pieces`` with its first piece already computed, so that a failing query raises here."""
    try:
        first = next(pieces)
    except StopIteration:
        return iter(())
    return itertools.chain([first], pieces)


def write_geojson(batch: Batch, answers: Iterator[tuple[int, tuple[Any, ...] | None]]) -> Iterator[bytes]:
    """Yield a FeatureCollection in UTF-8 pieces: each input feature with an ``owner`` (or ``owner_error``)."""
    assert batch.features is not None
    yield b'{"type":"FeatureCollection","features":[\n'
    first = True
    pieces: list[str] = []
    for index, row in answers:
        feature = dict(batch.features[index] or {})
        properties = dict(feature.get("properties") or {})
        if row is None:
            properties["owner_error"] = batch.errors[index]
        else:
            chain = dict(zip(CHAIN_FIELDS, (_jsonable(v) for v in row), strict=False))
            if chain.get("error"):
                properties["owner_error"] = chain.pop("error")
            else:
                chain.pop("error", None)
            properties["owner"] = chain
        feature["properties"] = properties
        pieces.append(("" if first else ",\n") + json.dumps(feature, ensure_ascii=False))
        first = False
        if len(pieces) >= 5000:
            yield "".join(pieces).encode()
            pieces = []
    pieces.append("\n]}\n")
    yield "".join(pieces).encode()


def stream(
    engine: Engine, batch: Batch, *, at: datetime | None = None, rules: OwnerSettings, workers: int = 2
) -> Iterator[bytes]:
    """Return the answer to ``batch`` in its own format (CSV or GeoJSON, UTF-8), every input row in input order.

    Raises NotFound, as a single lookup does, when no boundary generation was in force at ``at`` (default now):
    every row would be unowned, and the whole batch is refused before anything is written.
    """
    moment = at or datetime.now(UTC)
    check_generation(engine, moment)
    if batch.kind == "csv":
        return answer_csv(engine, batch, at=moment, rules=rules, workers=workers)
    return write_geojson(batch, answer(engine, batch, at=moment, rules=rules, workers=workers))


def check_generation(engine: Engine, at: datetime) -> None:
    """Raise NotFound when no boundary generation was in force at ``at``, as a single lookup does."""
    with engine.connect() as conn:
        generation = conn.execute(select(func.citygrid_generation_at(at))).scalar()
    if generation is None:
        raise no_generation(at)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):  # round(x::numeric, 2) in the query
        return float(value)
    return value
