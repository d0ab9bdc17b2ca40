"""Who owns these points: a CSV or GeoJSON file of up to a million points, answered set-based in PostGIS.

Steps: read the rows (every input column is kept), check and convert the coordinates with numpy (a bad
row gets its own error and the batch goes on), COPY the good points into a temporary table, and ask
``citygrid_owner_points`` — the function single lookups and incident intake use — for all of them in one
query per chunk. Chunks run on separate connections at once (one per core), then every input row is
written back in its input order with its chain, or its error.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from psycopg2.extensions import connection as PgConnection
from sqlalchemy import Engine

from spatial import encoding
from spatial.crs import parse_crs, to_wgs84_arrays
from spatial.errors import InvalidInput
from spatial.owner import CENTRAL_MERIDIAN, FAR_FROM_MERIDIAN_DEG
from spatial.settings import OwnerSettings

MAX_POINTS = 1_000_000
CHUNK_POINTS = 50_000  # points per query: small enough to start answering early, large enough to stay set-based
MAX_CHUNKS = 24  # each waiting chunk holds a pooled connection
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

_RESULT_SQL = """
CREATE TEMP TABLE owner_result ON COMMIT DROP AS
SELECT p.pos, o.grid_code, g.name AS grid_name, o.community_code, c.name AS community_name, o.subdistrict_code,
       sd.name AS subdistrict_name, o.squad_code, sq.name AS squad_name, o.grid_member_id,
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
FROM owner_points p
JOIN citygrid_owner_points(
        (SELECT array_agg(ST_SetSRID(ST_MakePoint(lon, lat), 4326) ORDER BY pos) FROM owner_points),
        array_fill(%(at)s::timestamptz, ARRAY[(SELECT count(*)::int FROM owner_points)]),
        %(edge)s, %(outside)s, %(street)s, %(river)s) o ON o.row_no = p.pos
LEFT JOIN grids g ON g.generation = o.generation AND g.code = o.grid_code
LEFT JOIN communities c ON c.generation = o.generation AND c.code = o.community_code
LEFT JOIN subdistricts sd ON sd.generation = o.generation AND sd.code = o.subdistrict_code
LEFT JOIN squads sq ON sq.code = o.squad_code
LEFT JOIN streets st ON st.code = o.street_code
LEFT JOIN people gm ON gm.id = o.grid_member_id
LEFT JOIN people sc ON sc.id = o.street_chief_id
"""


@dataclass
class Batch:
    """Input rows with their coordinates checked: ``ok`` marks rows sent to the database."""

    columns: list[str]
    rows: pd.DataFrame
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    errors: list[str | None]
    kind: str  # "csv" | "geojson"
    features: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        """Return a mask of rows whose coordinates are good."""
        return np.array([e is None for e in self.errors], dtype=bool)


def _column(columns: list[str], names: tuple[str, ...], what: str) -> str:
    lowered = {c.strip().lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise InvalidInput(f"the CSV has no {what} column: name one of {', '.join(names)} (found: {', '.join(columns)})")


def read_csv(data: bytes, *, crs: str | None, max_points: int = MAX_POINTS) -> Batch:
    """Read a CSV with lon/lat columns (UTF-8 with or without BOM, or GBK); check every row's coordinates."""
    text = encoding.decode(data)
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if len(frame) > max_points:
        raise InvalidInput(f"{len(frame):,} rows is more than {max_points:,} points: split the file")
    columns = [str(c) for c in frame.columns]
    lon_col, lat_col = _column(columns, LON_NAMES, "longitude"), _column(columns, LAT_NAMES, "latitude")
    x = pd.to_numeric(frame[lon_col], errors="coerce").to_numpy(dtype=np.float64)
    y = pd.to_numeric(frame[lat_col], errors="coerce").to_numpy(dtype=np.float64)
    return _checked(columns, frame, x, y, crs, "csv")


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
    for i, feature in enumerate(features):
        geometry = (feature or {}).get("geometry") or {}
        coords = geometry.get("coordinates")
        if geometry.get("type") == "Point" and isinstance(coords, list) and len(coords) >= 2:
            try:
                x[i], y[i] = float(coords[0]), float(coords[1])
            except (TypeError, ValueError):
                pass
    batch = _checked([], pd.DataFrame(index=range(len(features))), x, y, crs, "geojson")
    batch.features = features
    return batch


def _checked(
    columns: list[str], frame: pd.DataFrame, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
    crs_name: str | None, kind: str,
) -> Batch:  # fmt: skip
    crs = parse_crs(crs_name)
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
    return Batch(columns=columns, rows=frame, lon=lon, lat=lat, errors=errors, kind=kind)


class _Turns:
    """Lets chunk k start computing once all but ``width - 1`` of the chunks before it have been computed."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.computed = 0
        self.condition = threading.Condition()

    @contextmanager
    def turn(self, index: int) -> Iterator[None]:
        """Wait for chunk ``index``'s turn, compute it, then let the next chunk in."""
        with self.condition:
            self.condition.wait_for(lambda: index < self.computed + self.width)
        try:
            yield
        finally:
            with self.condition:
                self.computed += 1
                self.condition.notify_all()


class _QueueWriter:
    """A file-like sink for ``copy_expert`` that hands each block to a queue (bounded: back-pressure)."""

    def __init__(self, out: queue.Queue[Any]) -> None:
        self.out = out

    def write(self, block: str | bytes) -> int:
        self.out.put(block)
        return len(block)


def _answer_chunk(
    engine: Engine, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64], at: datetime, rules: OwnerSettings,
    out: queue.Queue[Any], as_csv: bool, turn: AbstractContextManager[None],
) -> None:  # fmt: skip
    """Answer one chunk on its own connection; put its rows (or CSV blocks), in order, on ``out``, then None.

    ``turn`` lets chunks compute in order, one per core at a time; a computed chunk waits, holding only its
    connection, until the consumer reaches it.
    """
    try:
        raw = engine.raw_connection()
        try:
            conn: PgConnection = raw.driver_connection
            with conn.cursor() as cur, turn:
                cur.execute("CREATE TEMP TABLE owner_points (pos integer, lon float8, lat float8) ON COMMIT DROP")
                buffer = io.StringIO()
                np.savetxt(
                    buffer, np.column_stack([np.arange(1, len(lon) + 1), lon, lat]), fmt=("%d", "%.9f", "%.9f"),
                    delimiter=",",
                )  # fmt: skip
                buffer.seek(0)
                cur.copy_expert("COPY owner_points FROM STDIN WITH (FORMAT csv)", buffer)
                params = {
                    "at": at, "edge": rules.edge_tolerance_m, "outside": rules.outside_tolerance_m,
                    "street": rules.street_radius_m, "river": rules.river_radius_m,
                }  # fmt: skip
                cur.execute(_RESULT_SQL, params)
            with conn.cursor() as cur:
                if as_csv:
                    # PostgreSQL formats the CSV (quoting included); Python only glues lines to input rows.
                    columns = ", ".join(f"{c}::text" if c in ("ambiguous", "outside") else c for c in CHAIN_FIELDS)
                    cur.copy_expert(
                        f"COPY (SELECT {columns} FROM owner_result ORDER BY pos) TO STDOUT WITH (FORMAT csv)",
                        _QueueWriter(out),
                    )
            if not as_csv:
                with conn.cursor("owner_stream") as stream:
                    stream.itersize = 20_000
                    stream.execute("SELECT * FROM owner_result ORDER BY 1")
                    for row in stream:
                        out.put(row[1:])
            conn.commit()
        finally:
            raw.close()
        out.put(None)
    except Exception as exc:  # handed to the consumer, which raises it in the request's thread
        out.put(exc)


def _start(
    engine: Engine, batch: Batch, at: datetime | None, rules: OwnerSettings, workers: int, as_csv: bool
) -> tuple[list[npt.NDArray[np.intp]], list[queue.Queue[Any]]]:
    """Split the good rows into chunks and start one worker thread per chunk, ``workers`` computing at once.

    Several chunks per core let the answer stream out while later chunks are still being computed.
    """
    moment = at or datetime.now(UTC)
    good = np.flatnonzero(batch.ok)
    count = min(MAX_CHUNKS, max(workers, -(-len(good) // CHUNK_POINTS))) if len(good) >= CHUNK_POINTS else 1
    chunks = [c for c in np.array_split(good, count) if len(c)]
    turns = _Turns(workers)
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=2_000 if as_csv else 200_000) for _ in chunks]
    for index, (chunk, results) in enumerate(zip(chunks, queues, strict=True)):
        threading.Thread(
            target=_answer_chunk,
            args=(engine, batch.lon[chunk], batch.lat[chunk], moment, rules, results, as_csv, turns.turn(index)),
            daemon=True,
        ).start()
    return chunks, queues


def _take(results: queue.Queue[Any]) -> Any:
    item = results.get()
    if isinstance(item, Exception):
        raise item
    return item


def answer(
    engine: Engine, batch: Batch, *, at: datetime | None = None, rules: OwnerSettings, workers: int = 2
) -> Iterator[tuple[int, tuple[Any, ...] | None]]:
    """Yield (input row index, chain row or None) for every input row, in input order."""
    chunks, queues = _start(engine, batch, at, rules, workers, as_csv=False)
    cursor = 0
    for chunk, results in zip(chunks, queues, strict=True):
        for index in chunk:
            while cursor < index:
                yield cursor, None
                cursor += 1
            yield int(index), _take(results)
            cursor = int(index) + 1
        _take(results)  # the chunk's closing None
    while cursor < len(batch.errors):
        yield cursor, None
        cursor += 1


def answer_csv(
    engine: Engine, batch: Batch, *, at: datetime | None = None, rules: OwnerSettings, workers: int = 2
) -> Iterator[str]:
    """Yield the CSV answer in pieces: every input column, then the chain columns and ``error``, in input order."""
    chunks, queues = _start(engine, batch, at, rules, workers, as_csv=True)
    inputs = batch.rows.to_csv(header=False, index=False, lineterminator="\x1e").split("\x1e")
    header = io.StringIO()
    csv.writer(header).writerow([*batch.columns, *CHAIN_FIELDS])
    pieces: list[str] = [header.getvalue().rstrip("\r\n") + "\n"]
    blank = "," * (len(CHAIN_FIELDS) - 1)

    def failed(index: int) -> str:
        error = batch.errors[index] or ""
        return f'{inputs[index]},{blank}"{error.replace(chr(34), chr(34) * 2)}"\n'

    cursor = 0
    for chunk, results in zip(chunks, queues, strict=True):
        position = 0
        carry = b""
        while (block := _take(results)) is not None:
            lines = (carry + (block if isinstance(block, bytes) else block.encode())).split(b"\n")
            carry = lines.pop()  # split on bytes: a UTF-8 character never straddles two lines
            for raw_line in lines:
                line = raw_line.decode()
                index = int(chunk[position])
                position += 1
                while cursor < index:
                    pieces.append(failed(cursor))
                    cursor += 1
                pieces.append(f"{inputs[index]},{line}\n")
                cursor = index + 1
            if len(pieces) > 20_000:
                yield "".join(pieces)
                pieces = []
    while cursor < len(batch.errors):
        pieces.append(failed(cursor))
        cursor += 1
    yield "".join(pieces)


def primed(pieces: Iterator[str]) -> Iterator[str]:
    """Return ``pieces`` with its first piece already computed, so that a failing query raises here."""
    try:
        first = next(pieces)
    except StopIteration:
        return iter(())
    return itertools.chain([first], pieces)


def write_geojson(batch: Batch, answers: Iterator[tuple[int, tuple[Any, ...] | None]]) -> Iterator[str]:
    """Yield a FeatureCollection in pieces: each input feature with an ``owner`` (or ``owner_error``) property."""
    assert batch.features is not None
    yield '{"type":"FeatureCollection","features":[\n'
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
            yield "".join(pieces)
            pieces = []
    pieces.append("\n]}\n")
    yield "".join(pieces)


def stream(
    engine: Engine, batch: Batch, *, at: datetime | None = None, rules: OwnerSettings, workers: int = 2
) -> Iterator[str]:
    """Yield the answer to ``batch`` in its own format (CSV or GeoJSON), every input row in input order."""
    if batch.kind == "csv":
        return answer_csv(engine, batch, at=at, rules=rules, workers=workers)
    return write_geojson(batch, answer(engine, batch, at=at, rules=rules, workers=workers))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):  # round(x::numeric, 2) in the query
        return float(value)
    return value
