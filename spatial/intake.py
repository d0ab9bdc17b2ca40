"""Intake: a report becomes a case carrying its whole responsibility chain, one at a time or a million at once.

One report (REST or Open311): the point is converted to WGS-84 (``spatial.owner.locate``: any CRS the owner
lookup accepts), then one statement asks ``citygrid_owner_points`` for the chain as of the report, computes
the due time on the official calendar (``citygrid_due_times``), looks for a possible duplicate (same item,
open, within 3 m and 24 h: an index on open cases, not a scan), and inserts the case with its first event.
An Idempotency-Key makes a retried request return the first result: the key is unique per API key, so two
concurrent retries cannot both insert.

A file (CSV, GeoJSON, GeoPackage): COPY into a staging table as text; in chunks on one helper connection per
core (``spatial.import_staging``), check every row set-based (each bad row gets its own message) and give the
good ones their chain, due time and nearest open possible duplicate, with the same SQL functions; each ready
chunk is stored by one ``INSERT … SELECT`` in the caller's transaction while the helpers work on the next. The
foreign keys of those inserts are checked set-based, their rows locked (``_References``). A file goes in whole
or not at all, unless ``skip_invalid`` is given: then the good rows go in and the bad ones are reported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import psycopg2.errors
from psycopg2 import sql
from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial import audit, import_staging, map_counts
from spatial import encoding as text_encoding
from spatial.catalogue import ITEMS
from spatial.crs import parse_crs, to_wgs84_arrays
from spatial.db import run_prepared
from spatial.errors import Conflict, Forbidden, InvalidInput
from spatial.keys import ApiKey
from spatial.layers.incidents import SOURCES
from spatial.owner import CENTRAL_MERIDIAN, FAR_FROM_MERIDIAN_DEG, locate, outside_zone
from spatial.settings import OwnerSettings
from spatial.workflow import (
    CASE_COLUMNS,
    CASE_JOINS,
    CLOCK_SKEW,
    SATISFACTION,
    STATUS_LABELS,
    case_dict,
    ensure_calendar,
    get_case_by_id,
    refuse_uncovered,
)

ITEM_CODES = frozenset(item.code for item in ITEMS)
# Case codes made here: a source prefix, the report's date (Beijing) and the database id, e.g. RX20170501-4747.
CODE_PREFIX = {"hotline": "RX", "letter": "XF", "patrol": "XC", "grid_member": "WG", "media": "MT", "open311": "OS"}
DUPLICATE_RADIUS_M = 3.0
DUPLICATE_WINDOW = timedelta(hours=24)
MAX_PHOTOS = 20
MAX_DESCRIPTION = 4000
MAX_ADDRESS = 500
MAX_URL = 2000
REPORTING_ROLES = ("public", "grid_member", "squad", "dispatcher")
IMPORTING_ROLES = ("dispatcher",)


@dataclass(frozen=True)
class Report:
    """One report as a caller gives it; coordinates in ``crs`` (default WGS-84)."""

    x: float
    y: float
    item_code: str
    source: str
    description: str = ""
    photos: tuple[str, ...] = ()
    crs: str | None = None
    reported_at: datetime | None = None
    address: str = ""
    reporter: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Return a hash of what the caller sent: the same Idempotency-Key with another request is refused."""
        payload = {
            "x": self.x,
            "y": self.y,
            "crs": self.crs,
            "item_code": self.item_code,
            "source": self.source,
            "description": self.description,
            "photos": list(self.photos),
            "reported_at": self.reported_at.isoformat() if self.reported_at else None,
            "address": self.address,
            "reporter": self.reporter,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class IdempotencyKeyReused(InvalidInput):
    """An Idempotency-Key came back with a different request than the one it was first used with."""

    code = "idempotency_key_reused"


@dataclass
class Intake:
    """The case a report became, and whether this call created it (False: a retry returned the first result)."""

    case: dict[str, Any]
    created: bool


_INTAKE_SQL = (
    """
    WITH point AS (
        SELECT g.geom, ST_Transform(g.geom, 4544) AS p_m, CAST(:reported_at AS timestamptz) AS at
        FROM (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom) g
    ), chain AS (
        SELECT o.* FROM point,
            citygrid_owner_points(ARRAY[point.geom], ARRAY[point.at], :edge, :outside, :street, :river) o
    ), due AS (
        SELECT d.due_at FROM point, catalogue_items ci,
            citygrid_due_times(ARRAY[point.at], ARRAY[ci.time_limit], ARRAY[ci.time_unit]) d
        WHERE ci.code = :item_code
    ), duplicate AS (
        SELECT d.id FROM point CROSS JOIN LATERAL (
            SELECT near.id FROM (
                -- only the partial GiST index on open cases answers this (no item or time condition here for
                -- another index to tempt the planner with, whatever the table's statistics say)
                SELECT o.id, o.item_code, o.reported_at FROM incidents o
                WHERE o.status NOT IN ('closed', 'rejected')
                  AND ST_DWithin(ST_Transform(o.geom, 4544), point.p_m, :radius)
                ORDER BY ST_Transform(o.geom, 4544) <-> point.p_m
                LIMIT 100) near
            WHERE near.item_code = :item_code AND near.reported_at BETWEEN point.at - :window AND point.at + :window
            LIMIT 1) d
    ), new_id AS (
        SELECT nextval('incidents_id_seq') AS id
    ), acting AS (  -- the audit log's actor (spatial.audit.act_as), in this statement rather than a round trip
        SELECT set_config('citygrid.actor', :actor, true), set_config('citygrid.role', :role, true),
               set_config('citygrid.key_id', coalesce(CAST(:key_id AS text), ''), true)
    ), ins AS (
        INSERT INTO incidents (id, code, source, item_code, status, description, address, photos, reporter,
            reported_at, due_at, geom, generation, grid_code, community_code, subdistrict_code, squad_code,
            grid_member_id, street_code, street_chief_id, river_code, river_chief_id, outside, duplicate_of,
            api_key_id, idempotency_key, request_hash, token, updated_at)
        SELECT new_id.id,
            :prefix || to_char(point.at AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || '-' || new_id.id,
            :source, :item_code, 'collected', :description, :address, CAST(:photos AS text[]),
            CAST(:reporter AS jsonb), point.at, (SELECT due_at FROM due), point.geom, ch.generation, ch.grid_code,
            ch.community_code, ch.subdistrict_code, ch.squad_code, ch.grid_member_id, ch.street_code,
            ch.street_chief_id, ch.river_code, ch.river_chief_id, ch.outside, (SELECT id FROM duplicate), :key_id,
            :idempotency_key, :request_hash, :token, point.at
        FROM point, chain ch, new_id, acting
        WHERE ch.grid_code IS NOT NULL
        ON CONFLICT (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING *
    ), event AS (
        INSERT INTO incident_events (incident_id, from_status, to_status, actor, at, note, action, api_key_id)
        SELECT id, NULL, status, :actor, reported_at, :note, 'report', api_key_id FROM ins
    )
    SELECT ch.grid_code AS located, """
    + CASE_COLUMNS
    + """
    FROM chain ch
    LEFT JOIN ins i ON true
    """
    + CASE_JOINS
    + """
"""
)
# The statement runs prepared, once planned per database connection: planning the inlined chain function
# and the CTEs costs ≈3 ms, executing the cached plan ≈1 ms (measured on the fixture).
_INTAKE_TYPES = {
    "lon": "float8", "lat": "float8", "reported_at": "timestamptz", "edge": "float8", "outside": "float8",
    "street": "float8", "river": "float8", "item_code": "text", "window": "interval", "radius": "float8",
    "prefix": "text", "source": "text", "description": "text", "address": "text", "photos": "text[]",
    "reporter": "jsonb", "key_id": "bigint", "idempotency_key": "text", "request_hash": "text", "token": "text",
    "actor": "text", "note": "text", "role": "text",
}  # fmt: skip
_INTAKE_NAMES = list(_INTAKE_TYPES)
_PREPARED = "citygrid_intake"
_PREPARE = f"PREPARE {_PREPARED} ({', '.join(_INTAKE_TYPES.values())}) AS " + re.sub(
    r"(?<![:\w]):(\w+)", lambda m: f"${_INTAKE_NAMES.index(m.group(1)) + 1}", _INTAKE_SQL
)
_EXECUTE = f"EXECUTE {_PREPARED} ({', '.join(['%s'] * len(_INTAKE_NAMES))})"


def _run_intake(conn: Connection, params: dict[str, Any]) -> _Row | None:
    """Execute the prepared intake statement on this connection (preparing it on first use)."""
    row = run_prepared(conn, _PREPARED, _PREPARE, _EXECUTE, [params[name] for name in _INTAKE_NAMES])
    return None if row is None else _Row(row)


_REPLAY = text(
    "SELECT i.id, i.request_hash FROM incidents i WHERE i.api_key_id = :key_id AND i.idempotency_key = :idempotency_key"
)


def check_report(report: Report, key: ApiKey) -> None:
    """Refuse a report that can never be stored, saying what to fix (item, source, photos, time, role)."""
    key.require_role(*REPORTING_ROLES, doing="report incidents")
    if report.item_code not in ITEM_CODES:
        raise InvalidInput(
            f"item_code {report.item_code!r} is not one of the 147 catalogue items: use a 4-digit code such as "
            "0508 (占道经营); GET /open311/v2/services.json lists them all",
            detail={"item_code": report.item_code},
        )
    if report.source not in SOURCES:
        raise InvalidInput(f"source {report.source!r} is unknown: use one of {', '.join(SOURCES)}")
    if key.role == "public" and report.source != "open311":
        raise Forbidden(f"a public key reports with source open311, not {report.source}")
    if len(report.description) > MAX_DESCRIPTION:
        raise InvalidInput(f"the description has {len(report.description)} characters; keep it to {MAX_DESCRIPTION}")
    if len(report.address) > MAX_ADDRESS:
        raise InvalidInput(f"the address has {len(report.address)} characters; keep it to {MAX_ADDRESS}")
    if len(report.photos) > MAX_PHOTOS:
        raise InvalidInput(f"{len(report.photos)} photos is too many: send at most {MAX_PHOTOS} URLs")
    for url in report.photos:
        if len(url) > MAX_URL or not re.fullmatch(r"https?://\S+", url):
            raise InvalidInput(f"photo {url!r} is not an http(s) URL: upload the photo and send its address")
    if report.reported_at is not None:
        if report.reported_at.tzinfo is None:
            raise InvalidInput(f"reported_at={report.reported_at.isoformat()} has no time zone: add one, e.g. +08:00")
        if report.reported_at > datetime.now(UTC) + CLOCK_SKEW:
            raise InvalidInput(f"reported_at={report.reported_at.isoformat()} is in the future: check the clock")


def create_incident(
    conn: Connection,
    report: Report,
    *,
    key: ApiKey,
    rules: OwnerSettings,
    idempotency_key: str | None = None,
    note: str = "reported",
) -> Intake:
    """Store ``report`` as a case with its whole chain, in the statement that inserts it; return the case.

    With ``idempotency_key``, a repeat of the same request by the same API key returns the first case
    (``created`` False); the same key with a different request raises IdempotencyKeyReused. A point no grid
    covers raises InvalidInput with the nearest grid and its distance.
    """
    check_report(report, key)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise InvalidInput("the Idempotency-Key header must be 1 to 255 characters, e.g. a UUID")
    point = locate(report.x, report.y, report.crs)
    reported_at = report.reported_at or datetime.now(UTC)
    if outside_zone(point):
        refuse_uncovered(conn, report.x, report.y, report.crs, reported_at, rules)
    fingerprint = report.fingerprint()
    params = {
        "lon": point.lon,
        "lat": point.lat,
        "reported_at": reported_at,
        "edge": rules.edge_tolerance_m,
        "outside": rules.outside_tolerance_m,
        "street": rules.street_radius_m,
        "river": rules.river_radius_m,
        "item_code": report.item_code,
        "window": DUPLICATE_WINDOW,
        "radius": DUPLICATE_RADIUS_M,
        "prefix": CODE_PREFIX[report.source],
        "source": report.source,
        "description": report.description,
        "address": report.address,
        "photos": list(report.photos),
        "reporter": json.dumps(report.reporter, ensure_ascii=False),
        "key_id": key.id,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "token": secrets.token_urlsafe(12) if report.source == "open311" else None,
        "actor": key.actor,
        "note": note,
        "role": key.role,
    }
    row = _run_intake(conn, params)
    if row is None:
        raise InvalidInput(f"no boundary generation was in force at {reported_at.isoformat()}")
    if row.id is not None:
        return Intake(case=case_dict(row), created=True)
    if row.located is None:
        refuse_uncovered(conn, report.x, report.y, report.crs, reported_at, rules)
    first = conn.execute(_REPLAY, {"key_id": key.id, "idempotency_key": idempotency_key}).one()
    if first.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {idempotency_key!r} was first used with a different request: "
            "use a new key for a new report",
            detail={"idempotency_key": idempotency_key},
        )
    return Intake(case=get_case_by_id(conn, first.id), created=False)


class _Row:
    """Attribute access over a mapping, so ``case_dict`` reads an assembled row like a database row."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)  # only reached for a column the row lacks


# ---------------------------------------------------------------------------------------------------------
# Bulk import

# The columns an import file may have (case and spaces ignored), with the names people also use for them.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "lon": ("lon", "lng", "long", "longitude", "x", "经度"),
    "lat": ("lat", "latitude", "y", "纬度"),
    "item_code": ("item_code", "item", "service_code", "事项编码"),
    "source": ("source", "来源"),
    "reported_at": ("reported_at", "reported", "requested_datetime", "上报时间"),
    "code": ("code", "case_code", "案件编号"),
    "description": ("description", "描述"),
    "address": ("address", "地址"),
    "status": ("status", "状态"),
    "due_at": ("due_at",),
    "closed_at": ("closed_at",),
    "satisfaction": ("satisfaction",),
    "deferred": ("deferred",),
    "reworks": ("reworks",),
    "photos": ("photos", "media_url"),
}
REQUIRED_COLUMNS = ("lon", "lat", "item_code", "reported_at")
GEO_SUFFIXES = (".geojson", ".json", ".gpkg", ".fgb", ".shp")
MAX_LISTED_ERRORS = 1000

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Cursor = import_staging.Cursor

_NUMBER_RE = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
# A coordinate is read as a number when it has at most 100 characters and an exponent under 100: then it is between
# 1e-199 and 1e199 (or 0), which float8 holds; a cast of 1e400 or of 400 digits fails the whole chunk instead
_READABLE_RE = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?0*[0-9]{1,2})?\s*$"
_BIG_EXPONENT_RE = r"[eE][-+]?0*[1-9][0-9]{2}"
_LONGEST_NUMBER = 100
_INTEGER_RE = r"^\s*[0-9]{1,6}\s*$"
# photos: http(s) URLs, as the single intake takes them, separated by white space, commas or semicolons
_PHOTO_SEPARATORS = r"[\s;,]+"
_PHOTOS_RE = r"^https?://[^\s;,]+([\s;,]+https?://[^\s;,]+)*$"


@dataclass
class RowError:
    """One refused row: its number in the file (1 = first data row) and what was wrong."""

    row: int
    error: str


@dataclass
class ImportReport:
    """What an import did: rows read, inserted, refused (each with its error), flagged duplicates, timings."""

    rows: int = 0
    inserted: int = 0
    invalid: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    codes_generated: bool = False

    def as_dict(self, *, max_errors: int = MAX_LISTED_ERRORS) -> dict[str, Any]:
        """Return the report as JSON, listing at most ``max_errors`` row errors."""
        return {
            "rows": self.rows,
            "inserted": self.inserted,
            "invalid": self.invalid,
            "duplicates_flagged": self.duplicates,
            "errors": [{"row": e.row, "error": e.error} for e in self.errors[:max_errors]],
            "errors_listed": min(len(self.errors), max_errors),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def write_errors(self, sink: IO[str]) -> None:
        """Write every row error as CSV (row, error)."""
        writer = csv.writer(sink)
        writer.writerow(["row", "error"])
        for e in self.errors:
            writer.writerow([e.row, e.error])


class ImportRefused(InvalidInput):
    """A file with bad rows, imported whole-or-nothing: nothing was written; ``detail`` lists the rows."""

    code = "import_refused"

    def __init__(self, message: str, *, report: ImportReport) -> None:
        super().__init__(message, detail=report.as_dict())
        self.report = report


def _canonical(header: list[str]) -> dict[str, int]:
    """Map canonical column names to their position in ``header``; refuse ambiguous and missing columns."""
    lowered = [h.strip().lower().lstrip("\ufeff") for h in header]
    found: dict[str, int] = {}
    for name, aliases in COLUMN_NAMES.items():
        positions = [i for i, h in enumerate(lowered) if h in aliases]
        if len(positions) > 1:
            raise InvalidInput(f"columns {', '.join(header[i] for i in positions)} all mean {name}: keep one of them")
        if positions:
            found[name] = positions[0]
    return found


def _require_columns(found: dict[str, int], header: list[str], default_source: str | None) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in found]
    if "source" not in found and default_source is None:
        missing.append("source")
    if missing:
        hints = "; ".join(f"{m}: one of {', '.join(COLUMN_NAMES[m])}" for m in missing)
        extra = " (or give the source for every row with --source / ?source=)" if "source" in missing else ""
        raise InvalidInput(f"the file lacks column(s) {', '.join(missing)}{extra}: {hints}; found: {', '.join(header)}")


class _Counted(io.RawIOBase):
    """A readable stream that reports how many bytes COPY has taken, for the progress bar."""

    def __init__(self, stream: IO[bytes], total: int, progress: Progress | None) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.done += len(block)
        if self.progress is not None:
            self.progress("copy", self.done, self.total)
        return block


def _geo_to_csv(path: Path) -> tuple[bytes, str | None]:
    """Read a GeoJSON/GeoPackage/... of points into CSV bytes (lon, lat and every property) and its CRS."""
    import pyogrio

    try:
        frame = pyogrio.read_dataframe(path, datetime_as_string=True)
    except Exception as exc:  # pyogrio raises several GDAL error classes; all mean "cannot read"
        raise InvalidInput(f"{path.name}: cannot be read as a GIS file ({exc})") from exc
    crs = frame.crs.to_string() if frame.crs is not None else None
    geometry = frame.geometry
    is_point = (geometry.geom_type == "Point").to_numpy() & ~geometry.is_empty.to_numpy()
    x = np.full(len(frame), np.nan)
    y = np.full(len(frame), np.nan)
    x[is_point] = geometry[is_point].x.to_numpy()
    y[is_point] = geometry[is_point].y.to_numpy()
    table = frame.drop(columns=frame.geometry.name)
    table.insert(0, "lat", [repr(float(v)) if v == v else "" for v in y])
    table.insert(0, "lon", [repr(float(v)) if v == v else "" for v in x])
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue().encode(), crs


def _epsg_of(crs: str | None) -> str | None:
    """Return the crs name our converter takes for a file's CRS (EPSG:xxxx), or None for lon/lat WGS-84."""
    if crs is None:
        return None
    from pyproj import CRS

    epsg = CRS.from_user_input(crs).to_epsg()
    if epsg in (4326, 4490, None):
        return None if epsg in (4326, 4490) else crs
    return f"EPSG:{epsg}"


def import_file(
    conn: Connection,
    path: Path,
    *,
    key: ApiKey,
    rules: OwnerSettings,
    crs: str | None = None,
    source: str | None = None,
    skip_invalid: bool = False,
    flag_duplicates: bool = True,
    progress: Progress | None = None,
    max_rows: int | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import a CSV, GeoJSON or GeoPackage of cases in the caller's transaction; return what was done.

    Every row is checked (coordinates, item, source, times, status rules, codes unique in the file and the
    database, covered by a grid); any bad row refuses the whole file (ImportRefused, nothing written) unless
    ``skip_invalid``. Rows without a status are ``collected``; without a code, one is made; without a due
    time, the item's time limit on the official calendar gives it. ``workers``: helper connections for the
    per-row work (default: one per core for a large file; 1 does everything in the caller's transaction).
    """
    key.require_role(*IMPORTING_ROLES, doing="import case files")
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file: give a CSV, GeoJSON or GeoPackage of cases")
    if path.suffix.lower() in GEO_SUFFIXES:
        data, file_crs = _geo_to_csv(path)
        if crs is None:
            crs = _epsg_of(file_crs)
        opened: IO[bytes] = io.BytesIO(data)
        size = len(data)
    else:
        opened, size = path.open("rb"), path.stat().st_size
    with opened as stream:
        return import_stream(
            conn, stream, size, key=key, rules=rules, crs=crs, source=source, skip_invalid=skip_invalid,
            flag_duplicates=flag_duplicates, progress=progress, max_rows=max_rows, workers=workers,
        )  # fmt: skip


def _sniff_encoding(stream: IO[bytes]) -> str:
    """Return the CSV's encoding (UTF-8 or GB18030) from its first 64 kB, leaving the stream where it was.

    ASCII reads the same in both: when the first 64 kB are ASCII alone, the file is read on, 64 kB at a time, to
    its first other byte, and the encoding is told from the 64 kB from there (a file of ASCII alone is UTF-8).
    """
    if not stream.seekable():
        return text_encoding.UTF8
    start = stream.tell()
    try:
        sample = stream.read(text_encoding.SAMPLE_BYTES)
        encoding = text_encoding.detect(sample, complete=len(sample) < text_encoding.SAMPLE_BYTES)
        while sample.isascii() and len(sample) == text_encoding.SAMPLE_BYTES:
            sample = stream.read(text_encoding.SAMPLE_BYTES)
            if not sample.isascii():
                other = next(i for i, byte in enumerate(sample) if byte >= 0x80)
                sample = sample[other:] + stream.read(other)  # all before it is ASCII: a character starts here
                return text_encoding.detect(sample, complete=len(sample) < text_encoding.SAMPLE_BYTES)
        return encoding
    finally:
        stream.seek(start)


def import_stream(
    conn: Connection,
    stream: IO[bytes],
    size: int,
    *,
    key: ApiKey,
    rules: OwnerSettings,
    crs: str | None = None,
    source: str | None = None,
    skip_invalid: bool = False,
    flag_duplicates: bool = True,
    progress: Progress | None = None,
    max_rows: int | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import CSV bytes (UTF-8, a header row) of cases; see ``import_file`` for the rules.

    Steps: COPY the file into a staging table as text and count the codes it repeats; check every row and
    compute its chain, due time and possible duplicate in chunks, on ``workers`` helper connections at once
    (``spatial.import_staging``); store each chunk, in file order, with one ``INSERT … SELECT`` in the caller's
    transaction while the helpers work on the chunks after it.
    """
    key.require_role(*IMPORTING_ROLES, doing="import case files")
    if source is not None and source not in SOURCES:
        raise InvalidInput(f"source {source!r} is unknown: use one of {', '.join(SOURCES)}")
    input_crs = parse_crs(crs)
    report = ImportReport()
    started = time.perf_counter()
    encoding = _sniff_encoding(stream)
    first_line = stream.readline()
    try:
        header = next(csv.reader([first_line.decode("utf-8-sig" if encoding == "utf-8" else encoding)]))
    except (UnicodeDecodeError, StopIteration) as exc:
        raise InvalidInput("the file does not start with a header row naming its columns") from exc
    found = _canonical(header)
    _require_columns(found, header, source)
    ensure_calendar(conn)
    audit.bulk(conn, key)  # one audit entry for the file (below), not one per case
    if workers is None:
        workers = import_staging.default_workers() if size >= import_staging.PARALLEL_MIN_BYTES else 1
    coords_from_python = input_crs.name not in ("wgs84", "cgcs2000")
    params = _insert_params(key, rules, flag_duplicates)

    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        import_staging.unlimited(cur)
        parallel = workers > 1 and import_staging.helpers_can_see(cur)
        staging = import_staging.Staging.shared() if parallel else import_staging.Staging(None)
        if staging.parallel:
            # held until the caller's transaction ends: the sweep of another import leaves these tables alone
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (import_staging.LOCK_CLASS, staging.import_id))
        else:
            workers = 1
            # ON COMMIT DROP tables live until the transaction ends: a second import in one transaction starts clean
            cur.execute(
                "SELECT relname FROM pg_class"
                " WHERE relpersistence = 't' AND relkind = 'r' AND relname ~ '^import_' AND pg_table_is_visible(oid)"
            )
            leftover = [sql.Identifier(name) for (name,) in cur.fetchall()]
            if leftover:
                cur.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(leftover)))
        tables = ["raw", "coords", "code_uses"]
        checks = _checks_sql(staging, found, source, coords_from_python)

        def copy(target: Any) -> int:
            if staging.parallel:
                import_staging.sweep(target)
            target.execute(
                staging.create_columns(
                    "raw",
                    sql.SQL(", ").join(
                        [sql.SQL("row_no bigserial")]
                        + [sql.SQL("{} text").format(sql.Identifier(f"c{i}")) for i in range(len(header))]
                    ),
                )
            )
            try:
                target.copy_expert(
                    sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, ENCODING {})")
                    .format(
                        staging.table("raw"),
                        sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(len(header))),
                        sql.Literal(text_encoding.POSTGRES_NAMES[encoding]),
                    )
                    .as_string(target),
                    _Counted(stream, size - len(first_line), progress),
                )
            except (psycopg2.errors.CharacterNotInRepertoire, psycopg2.errors.UntranslatableCharacter) as exc:
                line = re.search(r"line (\d+)", exc.diag.context or "")
                where = f"row {line.group(1)} (line {int(line.group(1)) + 1} counting the header)" if line else "a row"
                raise InvalidInput(
                    f"the file is {encoding} text where it starts to be more than ASCII, but {where} has bytes that "
                    f"are not {encoding}: save the whole file in one encoding, UTF-8 or GBK, and send it again"
                ) from exc
            except psycopg2.errors.BadCopyFileFormat as exc:
                raise _malformed(exc, len(header)) from exc
            rows = int(target.rowcount)
            if max_rows is not None and rows > max_rows:
                raise InvalidInput(
                    f"the file has {rows:,} rows, more than {max_rows:,} (CITYGRID_API_MAX_FEATURES): split it"
                )
            # each chunk reads its range of row numbers; without an index every chunk scanned the whole file.
            # BRIN: the rows were copied in row number order, and it costs next to nothing to build
            target.execute(sql.SQL("CREATE INDEX ON {} USING brin (row_no)").format(staging.table("raw")))
            if "code" in found and not staging.parallel:
                target.execute(_code_uses_sql(staging, found["code"]))
            if coords_from_python:
                _stage_converted_coordinates(target, staging, found, input_crs.name)
            return rows

        if staging.parallel:
            with import_staging.helper(conn.engine) as helper_cur:
                report.rows = copy(helper_cur)
        else:
            report.rows = copy(cur)
        report.seconds["copy"] = time.perf_counter() - started
        # The codes the file repeats, counted over the whole file on a connection of their own while the helpers
        # start on the chunks (a million codes take a second or two): the first chunk is stored once they are.
        codes_counted = (
            import_staging.Background(conn.engine, _code_uses_sql(staging, found["code"]))
            if "code" in found and staging.parallel
            else None
        )
        # Whether the file repeats a code, known once the codes are counted (the first store): if not, a chunk's
        # errors and insert need no look at the counted codes (≈70 and ≈30 ms a chunk, in the storing transaction)
        repeats: bool | None = None if "code" in found else False

        # Chunk by chunk on every helper: checks, chain, due time, duplicates. Each chunk, once ready, is stored
        # here in file order while the helpers work on the chunks after it. A file with a bad row is still read to
        # the end, so that the report names every bad row, but nothing more is stored once one is found (unless
        # skip_invalid); a refused file is rolled back to the savepoint: nothing is written, whatever the caller
        # does with its transaction.
        stage = time.perf_counter()
        ranges = import_staging.chunks(report.rows, workers)
        tables += [f"{t}_{k}" for k in range(len(ranges)) for t in ("ready", "keys")]
        references = _References(cur)
        cur.execute("SAVEPOINT citygrid_import")
        # the stored rows are added to the map counts below, not written as a change each (map_counts.Tally)
        tally = map_counts.Tally()
        tally.start(cur)
        if references.set_based:
            cur.execute("SELECT current_setting('session_replication_role')")
            replication_role = cur.fetchone()[0]
            cur.execute("SET LOCAL session_replication_role = replica")  # undone by a rollback to the savepoint
        inserting = 0.0
        try:

            def work(target: Any, chunk: int, first: int, last: int) -> None:
                target.execute(_chunk_sql(staging, checks, chunk), {"first": first, "last": last, **params})
                if references.set_based:
                    ready = staging.table(f"ready_{chunk}")
                    target.execute(references.distinct_sql(ready, staging.create_as(f"keys_{chunk}")))

            def store(chunk: int, first: int, last: int) -> None:
                nonlocal inserting, repeats
                began = time.perf_counter()
                if codes_counted is not None:
                    codes_counted.wait()
                if repeats is None:
                    cur.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(staging.table("code_uses")))
                    repeats = bool(cur.fetchone()[0])
                cur.execute(_chunk_errors_sql(staging, chunk, repeats))
                bad = [RowError(int(r[0]), r[1]) for r in cur.fetchall()]
                report.errors.extend(bad)
                report.invalid += len(bad)
                if skip_invalid or not report.invalid:
                    if references.set_based:
                        references.lock_and_check(cur, staging.table(f"keys_{chunk}"))
                    try:
                        cur.execute(
                            sql.SQL(_INSERT_CHUNK_SQL).format(
                                ready=staging.table(f"ready_{chunk}"),
                                repeated=_repeated(staging, repeats),
                                month=_MONTH,
                            ),
                            params,
                        )
                    except psycopg2.errors.UniqueViolation as exc:
                        raise Conflict(
                            f"{exc.diag.message_detail} (stored by another writer during the import): nothing was "
                            "imported; import the file again"
                        ) from exc
                    stored = cur.fetchall()
                    report.inserted += sum(int(r[4]) for r in stored)
                    report.duplicates += sum(int(r[5]) for r in stored)
                    tally.add([(*r[:4], bytes(r[6])) for r in stored])
                    if progress is not None:
                        progress("insert", last, report.rows)
                inserting += time.perf_counter() - began
                if progress is not None:
                    progress("check", last, report.rows)

            if staging.parallel:
                import_staging.run_workers(conn.engine, workers, ranges, work, store)
            else:
                for chunk, (first, last) in enumerate(ranges):
                    work(cur, chunk, first, last)
                    store(chunk, first, last)
        except BaseException:
            if codes_counted is not None:
                codes_counted.wait(raising=False)
            cur.execute("ROLLBACK TO SAVEPOINT citygrid_import")
            raise
        report.seconds["check_and_assign"] = time.perf_counter() - stage
        report.seconds["insert"] = inserting
        if report.invalid and not skip_invalid:
            cur.execute("ROLLBACK TO SAVEPOINT citygrid_import")
            import_staging.drop(cur, staging, tables)
            report.inserted = report.duplicates = 0
            raise ImportRefused(_refusal(report), report=report)
        counting = time.perf_counter()
        tally.write(conn)
        report.seconds["map_counts"] = time.perf_counter() - counting
        if references.set_based:
            cur.execute("SELECT set_config('session_replication_role', %s, true)", (replication_role,))
            # the statement trigger that counts changes to incidents for the map's caches did not fire either
            cur.execute("SELECT nextval('citygrid_changes_incidents')")
        cur.execute("RELEASE SAVEPOINT citygrid_import")
        import_staging.drop(cur, staging, tables)
    audit.record(
        conn, action="import", table="incidents", rows=report.inserted,
        detail={"rows": report.rows, "inserted": report.inserted, "refused": report.invalid,
                "duplicates": report.duplicates, "crs": crs, "source": source, "skip_invalid": skip_invalid},
    )  # fmt: skip
    report.seconds["total"] = time.perf_counter() - started
    return report


# What COPY says of a row that is not CSV with the header's columns (PostgreSQL's messages), and how to fix it.
_MALFORMED = (
    ("extra data after last expected column", "has more values than the header's {columns} columns",
     "quote a value that has a comma in it (\"a, b\") or name every column in the header"),
    ("missing data for column", "has fewer values than the header's {columns} columns",
     "give every row a value for each column (an empty one where there is none)"),
    ("unterminated CSV quoted field", "opens a quoted value (\") that is never closed",
     "close the quote, and double a quote inside a quoted value (\"\")"),
)  # fmt: skip


def _malformed(exc: psycopg2.errors.BadCopyFileFormat, columns: int) -> InvalidInput:
    """Return the refusal of a file COPY cannot read as CSV: which row (1 = first after the header), what, how to fix.

    COPY numbers the rows it reads from 1, as the import does (the header was read before it); of a quoted value
    never closed, it names the last line of the file, and shows the row from where it starts (its first 100 bytes).
    """
    message = exc.diag.message_primary or ""
    found = re.fullmatch(r'COPY [^,]+, line (\d+)(?:, column [^:]*)?: "(.*)"', (exc.diag.context or "").strip(), re.S)
    row: int | None = None
    if found:
        row, shown = int(found.group(1)), found.group(2)
        if message.startswith("unterminated CSV quoted field"):
            row = None if shown.endswith("...") else row - shown.count("\n")
    what, fix = next(
        ((what, fix) for start, what, fix in _MALFORMED if message.startswith(start)),
        (f"is not CSV ({message})", "save the file as CSV from a spreadsheet"),
    )
    where = f"row {row} (line {row + 1} counting the header)" if row is not None else "a row"
    return InvalidInput(
        f"{where} {what.format(columns=columns)}: {fix}; nothing was imported",
        detail={"row": row, "problem": message},
    )


def _refusal(report: ImportReport) -> str:
    first = report.errors[0]
    return (
        f"{report.invalid} of {report.rows} rows are invalid (first: row {first.row}: {first.error}); nothing was "
        "imported: fix them, or import with --skip-invalid (?skip_invalid=true) to load the good rows only"
    )


def _stage_converted_coordinates(
    cur: Any, staging: import_staging.Staging, found: dict[str, int], crs_name: str
) -> None:
    """Convert the file's coordinates to WGS-84 in Python (GCJ-02/BD-09 need an iterative inverse)."""
    cur.execute(
        sql.SQL("SELECT row_no, {}, {} FROM {} ORDER BY row_no").format(
            sql.Identifier(f"c{found['lon']}"), sql.Identifier(f"c{found['lat']}"), staging.table("raw")
        )
    )
    rows = cur.fetchall()
    row_no = np.array([r[0] for r in rows], dtype=np.int64)
    x = np.array([_float(r[1]) for r in rows])
    y = np.array([_float(r[2]) for r in rows])
    crs = parse_crs(crs_name)
    ok = np.isfinite(x) & np.isfinite(y)
    if not crs.projected:
        ok &= (np.abs(x) <= 180) & (np.abs(y) <= 90)
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    if ok.any():
        lon[ok], lat[ok] = to_wgs84_arrays(x[ok], y[ok], crs)
    ok &= np.abs(lon - CENTRAL_MERIDIAN) <= FAR_FROM_MERIDIAN_DEG  # the rest cannot be measured (spatial.owner)
    cur.execute(staging.create_columns("coords", sql.SQL("row_no bigint PRIMARY KEY, lon float8, lat float8")))
    buffer = io.StringIO()
    np.savetxt(buffer, np.column_stack([row_no[ok], lon[ok], lat[ok]]), fmt=("%d", "%.9f", "%.9f"), delimiter=",")
    buffer.seek(0)
    cur.copy_expert(
        sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(staging.table("coords")).as_string(cur), buffer
    )


def _float(value: str | None) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except ValueError:
        return float("nan")


def _checks_sql(
    staging: import_staging.Staging, found: dict[str, int], default_source: str | None, coords_from_python: bool
) -> sql.Composed:
    """Compose the query that types the staged rows first..last and names each one's first problem (NULL: good).

    Only what a row says about itself is checked here (so that chunks of rows can be checked at once on
    several connections); its code against the rest of the file and the database is ``_CODE_ERRORS_SQL``.
    """

    def col(name: str) -> sql.Composable:
        if name in found:
            return sql.SQL("NULLIF(btrim(r.{}), '')").format(sql.Identifier(f"c{found[name]}"))
        if name == "source" and default_source is not None:
            return sql.Literal(default_source)
        return sql.SQL("NULL::text")

    if coords_from_python:
        lon = sql.SQL("t.lon_value")
        lat = sql.SQL("t.lat_value")
        lon_text = sql.SQL("k.lon")
        lat_text = sql.SQL("k.lat")
        coords_join = sql.SQL("LEFT JOIN {} k ON k.row_no = r.row_no").format(staging.table("coords"))
        coords_ok = sql.SQL("k.row_no IS NOT NULL")
        coord_error = sql.SQL(
            "WHEN NOT t.coords_ok THEN 'coordinates missing, not numbers, or outside the range of their crs'"
        )
    else:
        lon, lat = (
            sql.SQL(
                "CASE WHEN plain.{name} THEN CAST(t.{name}_text AS float8)"
                " WHEN t.{name}_text ~ {re} AND octet_length(t.{name}_text) <= {longest}"
                " THEN CAST(t.{name}_text AS float8) END"
            ).format(name=sql.SQL(name), re=sql.Literal(_READABLE_RE), longest=sql.Literal(_LONGEST_NUMBER))
            for name in ("lon", "lat")
        )
        lon_text = col("lon")
        lat_text = col("lat")
        coords_join = sql.SQL("")
        coords_ok = sql.SQL("true")
        coord_error = sql.SQL(
            "WHEN t.lon IS NULL AND t.lon_text ~ {number} THEN 'lon ' || t.lon_text || {too_big} "
            "WHEN t.lat IS NULL AND t.lat_text ~ {number} THEN 'lat ' || t.lat_text || {too_big} "
            "WHEN t.lon IS NULL OR t.lat IS NULL THEN 'lon/lat missing or not numbers' "
            "WHEN abs(t.lon) > 180 OR abs(t.lat) > 90 THEN 'lon ' || t.lon || ' / lat ' || t.lat || ' out of range'"
            " || CASE WHEN abs(t.lon) <= 90 AND abs(t.lat) <= 180 "
            "THEN ': they look swapped (give lon first, then lat)' ELSE ' (lon -180..180, lat -90..90)' END "
            "WHEN abs(t.lon - {meridian}) > {far} THEN 'lon ' || t.lon || ' is too far from this city to be covered'"
        ).format(
            meridian=sql.Literal(CENTRAL_MERIDIAN),
            far=sql.Literal(FAR_FROM_MERIDIAN_DEG),
            number=sql.Literal(_NUMBER_RE),
            too_big=sql.Literal(
                f" is out of range (lon -180..180, lat -90..90, in at most {_LONGEST_NUMBER} characters"
                " with an exponent under 100)"
            ),
        )
    return sql.SQL(
        """
        WITH typed AS MATERIALIZED (  -- computed once per row: later steps refer to these columns many times
            SELECT r.row_no, {lon_text} AS {lon_name}, {lat_text} AS {lat_name}, {coords_ok} AS coords_ok,
                   {item} AS item_code, {source} AS source, {code} AS code, coalesce({description}, '') AS description,
                   coalesce({address}, '') AS address,
                   {status} AS status_text, {satisfaction} AS satisfaction,
                   {deferred} AS deferred_text, {reworks} AS reworks_text, {photos} AS photos_text,
                   {reported} AS reported_text, {due} AS due_text, {closed} AS closed_text
            FROM {raw} r {coords_join}
            WHERE r.row_no BETWEEN %(first)s AND %(last)s
        ), plain AS MATERIALIZED (
            -- whether each column of the chunk is written one plain way throughout (migrations 0012, 0017): then
            -- its texts are only cast, instead of each being checked by its shape first; the same answers either way
            SELECT {lon_plain} AS lon, {lat_plain} AS lat,
                   citygrid_import_joined_times(string_agg(reported_text, E'\\n'), count(reported_text)) AS reported_at,
                   citygrid_import_joined_times(string_agg(due_text, E'\\n'), count(due_text)) AS due_at,
                   citygrid_import_joined_times(string_agg(closed_text, E'\\n'), count(closed_text)) AS closed_at
            FROM typed
        ), timed AS (
            SELECT t.*, {lon} AS lon, {lat} AS lat,
                   {reported_at} AS reported_at, {due_at} AS due_at, {closed_at} AS closed_at
            FROM typed t CROSS JOIN plain
            -- each value computed once, as the checks below refer to each many times, and passed on row by row:
            -- OFFSET 0 keeps the planner from copying the casts into every reference; stored (MATERIALIZED) and
            -- read back, these rows cost ≈15 ms more a chunk of 50,000
            OFFSET 0
        ), checked AS (
            SELECT t.*, coalesce(t.status_text, 'collected') AS status, ci.time_limit, ci.time_unit,
                   CASE
                       {coord_error}
                       WHEN t.item_code IS NULL THEN 'item_code missing'
                       WHEN ci.code IS NULL THEN 'item_code ' || t.item_code || ' is not one of the 147 catalogue items'
                       WHEN t.source IS NULL THEN 'source missing'
                       WHEN t.source NOT IN ({sources})
                            THEN 'source ' || t.source || ' unknown (use one of {source_list})'
                       WHEN t.reported_text IS NULL THEN 'reported_at missing'
                       WHEN t.reported_at IS NULL THEN 'reported_at ' || t.reported_text
                            || ' is not an ISO 8601 time such as 2017-05-01T09:30:00+08:00, or no such day'
                       WHEN t.due_text IS NOT NULL AND t.due_at IS NULL THEN 'due_at ' || t.due_text
                            || ' is not an ISO 8601 time'
                       WHEN t.closed_text IS NOT NULL AND t.closed_at IS NULL THEN 'closed_at ' || t.closed_text
                            || ' is not an ISO 8601 time'
                       -- as the single intake (check_report): a moment later than now and the clock skew is wrong
                       WHEN t.reported_at > %(latest)s THEN 'reported_at ' || t.reported_text
                            || ' is in the future: check the time and its zone'
                       WHEN t.closed_at > %(latest)s THEN 'closed_at ' || t.closed_text
                            || ' is in the future: check the time and its zone'
                       WHEN t.due_at < t.reported_at THEN 'due_at is before reported_at'
                       WHEN t.status_text IS NOT NULL AND t.status_text NOT IN ({statuses})
                            THEN 'status ' || t.status_text || ' unknown (use one of {status_list})'
                       WHEN coalesce(t.status_text, '') = 'closed' AND t.closed_at IS NULL
                            THEN 'status closed needs closed_at'
                       WHEN coalesce(t.status_text, '') <> 'closed' AND t.closed_at IS NOT NULL
                            THEN 'closed_at given but status is not closed'
                       WHEN t.closed_at < t.reported_at THEN 'closed_at is before reported_at'
                       WHEN t.satisfaction IS NOT NULL AND t.satisfaction NOT IN ({satisfactions})
                            THEN 'satisfaction ' || t.satisfaction || ' unknown (use one of {satisfaction_list})'
                       WHEN t.satisfaction IS NOT NULL AND coalesce(t.status_text, '') <> 'closed'
                            THEN 'satisfaction given but status is not closed'
                       WHEN t.deferred_text IS NOT NULL AND lower(t.deferred_text) NOT IN
                            ('true', 'false', 't', 'f', '1', '0', 'yes', 'no')
                            THEN 'deferred ' || t.deferred_text || ' is not true or false'
                       WHEN t.reworks_text IS NOT NULL AND t.reworks_text !~ {integer_re}
                            THEN 'reworks ' || t.reworks_text || ' is not a whole number'
                       WHEN t.photos_text !~ {photos_re} THEN 'photo '
                            || quote_literal((SELECT p FROM unnest(regexp_split_to_array(t.photos_text, {separators})) p
                                              WHERE p !~ '^https?://' LIMIT 1))
                            || ' is not an http(s) URL: upload the photo and give its address (several: one space,'
                            || ' comma or semicolon between them)'
                   END AS error
            FROM timed t
            LEFT JOIN catalogue_items ci ON ci.code = t.item_code
        )
        SELECT row_no, lon, lat, item_code, source, code, description, address, status, satisfaction, reported_at,
               due_at, closed_at,
               coalesce(lower(deferred_text) IN ('true', 't', '1', 'yes'), false) AS deferred,
               CASE WHEN reworks_text ~ {integer_re} THEN CAST(reworks_text AS integer) ELSE 0 END AS reworks,
               CASE WHEN photos_text IS NULL THEN '{{}}'::text[]
                    ELSE regexp_split_to_array(photos_text, {separators}) END AS photos,
               time_limit, time_unit, error
        FROM checked
        """
    ).format(
        raw=staging.table("raw"),
        lon=lon,
        lat=lat,
        lon_text=lon_text,
        lat_text=lat_text,
        lon_name=sql.SQL("lon_value" if coords_from_python else "lon_text"),
        lat_name=sql.SQL("lat_value" if coords_from_python else "lat_text"),
        lon_plain=_numbers_plain("lon", coords_from_python),
        lat_plain=_numbers_plain("lat", coords_from_python),
        reported_at=_time_read("reported"),
        due_at=_time_read("due"),
        closed_at=_time_read("closed"),
        item=col("item_code"),
        source=col("source"),
        code=col("code"),
        description=col("description"),
        address=col("address"),
        status=col("status"),
        satisfaction=col("satisfaction"),
        deferred=col("deferred"),
        reworks=col("reworks"),
        photos=col("photos"),
        reported=col("reported_at"),
        due=col("due_at"),
        closed=col("closed_at"),
        coords_join=coords_join,
        coords_ok=coords_ok,
        coord_error=coord_error,
        sources=sql.SQL(", ").join(sql.Literal(s) for s in SOURCES),
        source_list=sql.SQL(" ".join(SOURCES)),
        statuses=sql.SQL(", ").join(sql.Literal(s) for s in STATUS_LABELS),
        status_list=sql.SQL(" ".join(STATUS_LABELS)),
        satisfactions=sql.SQL(", ").join(sql.Literal(s) for s in SATISFACTION),
        satisfaction_list=sql.SQL(" ".join(SATISFACTION)),
        integer_re=sql.Literal(_INTEGER_RE),
        photos_re=sql.Literal(_PHOTOS_RE),
        separators=sql.Literal(_PHOTO_SEPARATORS),
    )


def _numbers_plain(name: str, coords_from_python: bool) -> sql.Composable:
    """Compose whether every text of a chunk's coordinate ``name`` is a number float8 reads (``_READABLE_RE``).

    0017's function checks the shape of the joined texts; here, the longest text and the exponents, looked for
    only when there is an e: ≈3 ms more a column of 50,000 numbers without one (the joined texts are made once,
    identical aggregates share their state).
    """
    if coords_from_python:
        return sql.SQL("NULL")
    return sql.SQL(
        "citygrid_import_joined_numbers(string_agg({text}, E'\\n'), count({text}))"
        " AND max(octet_length({text})) <= {longest}"
        " AND (strpos(string_agg({text}, E'\\n'), 'e') = 0 AND strpos(string_agg({text}, E'\\n'), 'E') = 0"
        " OR string_agg({text}, E'\\n') !~ {big})"
    ).format(
        text=sql.Identifier(f"{name}_text"), longest=sql.Literal(_LONGEST_NUMBER), big=sql.Literal(_BIG_EXPONENT_RE)
    )


def _time_read(name: str) -> sql.Composed:
    """Compose the reading of time column ``name`` of ``typed t``: cast alone when its chunk's column is plain."""
    return sql.SQL(
        "CASE plain.{name}_at WHEN 'zoned' THEN CAST(t.{name}_text AS timestamptz)"
        " WHEN 'local' THEN CAST(t.{name}_text AS timestamp) AT TIME ZONE 'Asia/Shanghai'"
        " WHEN 'shaped' THEN citygrid_import_time_shaped(t.{name}_text)"
        " ELSE citygrid_import_time(t.{name}_text) END"
    ).format(name=sql.SQL(name))


def _insert_params(key: ApiKey, rules: OwnerSettings, flag_duplicates: bool) -> dict[str, Any]:
    return {
        "edge": rules.edge_tolerance_m,
        "outside": rules.outside_tolerance_m,
        "street": rules.street_radius_m,
        "river": rules.river_radius_m,
        "key_id": key.id,
        "flag_duplicates": flag_duplicates,
        "window": DUPLICATE_WINDOW,
        "radius": DUPLICATE_RADIUS_M,
        "prefixes": json.dumps(CODE_PREFIX),
        "latest": datetime.now(UTC) + CLOCK_SKEW,  # a report or a closing after this is in the future
    }


def _chunk_sql(staging: import_staging.Staging, checks: sql.Composed, chunk: int) -> sql.Composed:
    """Compose the CREATE TABLE … AS that makes chunk ``chunk`` (rows first..last) ready to be stored.

    Every row of the chunk with its first problem (NULL: good) and, for the good ones, everything the insert
    needs: the chain from ``citygrid_owner_points`` (one call for the whole chunk, the function single reports
    use) and the due time from the item's time limit on the official calendar, both as of the row's report;
    the nearest open possible duplicate among the cases stored before the import (as the single intake does);
    and the start of the case code, for rows without one. A code may appear once, among the stored cases and in
    the file; only rows with no other problem get these errors, and only rows with none of them can be "not
    covered". Whether the code appears again in the file is known once the whole file is counted: the caller
    applies it (``_chunk_errors_sql``) to the rows marked ``code_free``.
    """
    return staging.create_as(f"ready_{chunk}") + sql.SQL(
        """
        WITH rows AS MATERIALIZED ({checks}
        ), gates AS MATERIALIZED (
            -- two index probes that usually spare one per good row: no stored case has a code between the least
            -- and the greatest of the chunk's (a file of new cases), or no open case was reported within the
            -- duplicate window of the chunk's reports (a file of past cases): then no row's code is taken, or no
            -- row has a possible duplicate. 50,000 probes of each kind cost ≈90 and ≈230 ms
            SELECT EXISTS (SELECT FROM incidents ex WHERE ex.code BETWEEN b.code_lo AND b.code_hi) AS codes_stored,
                   EXISTS (SELECT FROM incidents o
                           WHERE o.status NOT IN ('closed', 'rejected')
                             AND o.reported_at BETWEEN b.reported_lo - %(window)s AND b.reported_hi + %(window)s)
                       AS open_in_window
            FROM (SELECT min(code) AS code_lo, max(code) AS code_hi, min(reported_at) AS reported_lo,
                         max(reported_at) AS reported_hi
                  FROM rows
                  WHERE error IS NULL) b
        ), good AS MATERIALIZED (
            -- the item's time limit comes with the checked row: a join here, on a table the planner has no
            -- statistics for, was a nested loop over the catalogue per row. n numbers the good rows for the arrays
            -- of the chain, the due times and the probes, in any consistent order: ORDER BY row_no cost a sort
            SELECT s.*, ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326) AS geom, row_number() OVER () AS n
            FROM rows s
            WHERE s.error IS NULL
        ), probes AS MATERIALIZED (
            -- whether a row's code is taken, and its possible duplicate, for the rows a gate leaves to probe: asked
            -- in one call (0018) whose statement is planned to probe the indexes row by row, whatever the
            -- statistics of incidents say; only the rows found come back. The arrays are aggregated in one pass,
            -- with each row's n: the codes to look up, and the points, items and times of the open rows
            SELECT pr.*
            FROM (
                SELECT array_agg(q.n) FILTER (WHERE q.ask_code) AS code_ns,
                       array_agg(q.code) FILTER (WHERE q.ask_code) AS codes,
                       array_agg(q.n) FILTER (WHERE q.ask_duplicate) AS point_ns,
                       array_agg(q.geom) FILTER (WHERE q.ask_duplicate) AS points,
                       array_agg(q.item_code) FILTER (WHERE q.ask_duplicate) AS items,
                       array_agg(q.reported_at) FILTER (WHERE q.ask_duplicate) AS ats
                FROM (SELECT g.n, g.code, g.geom, g.item_code, g.reported_at,
                             g.code IS NOT NULL AND (SELECT codes_stored FROM gates) AS ask_code,
                             %(flag_duplicates)s AND g.status NOT IN ('closed', 'rejected')
                             AND (SELECT open_in_window FROM gates) AS ask_duplicate
                      FROM good g) q
                WHERE q.ask_code OR q.ask_duplicate
            ) a
            CROSS JOIN citygrid_import_probes(a.code_ns, a.codes, a.point_ns, a.points, a.items, a.ats,
                                              %(radius)s, %(window)s) pr
            WHERE (SELECT codes_stored OR open_in_window FROM gates)
        ), chain AS MATERIALIZED (
            -- citygrid_owner_points' answers, only the columns stored here, ≈40 percent cheaper (0016)
            SELECT * FROM citygrid_import_chain(
                (SELECT array_agg(geom ORDER BY n) FROM good), (SELECT array_agg(reported_at ORDER BY n) FROM good),
                %(edge)s, %(outside)s, %(street)s, %(river)s)
        ), due AS MATERIALIZED (
            -- with the probes' answers (few, usually none), joined to these narrow rows: joined to the good rows,
            -- the planner hashed the good rows with their chain once more (≈80 ms of a chunk of 50,000 rows, read
            -- with EXPLAIN ANALYZE)
            SELECT d.row_no, d.due_at, pr.taken, pr.duplicate_of
            FROM citygrid_due_times(
                (SELECT array_agg(reported_at ORDER BY n) FROM good),
                (SELECT array_agg(time_limit ORDER BY n) FROM good),
                (SELECT array_agg(time_unit ORDER BY n) FROM good)) d
            LEFT JOIN probes pr ON pr.row_no = d.row_no
        )
        SELECT g.row_no,
               CASE WHEN d.taken THEN 'code ' || g.code || ' already exists'
                    WHEN c.grid_code IS NULL
                         THEN 'not covered: ' || round(c.distance_to_grid_m::numeric, 1)
                              || ' m from the nearest grid ' || c.nearest_grid_code
                              || ' (check the coordinates and their crs)' END AS error,
               g.code IS NOT NULL AND d.taken IS NOT TRUE AS code_free,
               g.code,
               CASE WHEN g.code IS NULL THEN (CAST(%(prefixes)s AS jsonb) ->> g.source)
                    || to_char(g.reported_at AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || '-' END AS code_prefix,
               g.source, g.item_code, g.status, g.description, g.address, g.photos, g.reported_at,
               coalesce(g.due_at, d.due_at) AS due_at, g.closed_at, g.deferred, g.satisfaction, g.reworks, g.geom,
               c.generation, c.grid_code, c.community_code, c.subdistrict_code, c.squad_code, c.grid_member_id,
               c.street_code, c.street_chief_id, c.river_code, c.river_chief_id, c.outside, d.duplicate_of
        FROM good g
        JOIN chain c ON c.row_no = g.n
        JOIN due d ON d.row_no = g.n
        UNION ALL  -- the bad rows, with their own problem: nothing assigned, no code made (they are not stored)
        SELECT s.row_no, s.error, false, s.code, NULL, s.source, s.item_code, s.status, s.description,
               s.address, s.photos, s.reported_at, s.due_at, s.closed_at, s.deferred, s.satisfaction, s.reworks,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM rows s
        WHERE s.error IS NOT NULL
        """
    ).format(checks=checks)


def _repeated(staging: import_staging.Staging, repeats: bool) -> sql.Composable:
    """Compose the condition of ``_INSERT_CHUNK_SQL`` that leaves out the rows whose code the file repeats."""
    if not repeats:
        return sql.SQL("")
    return sql.SQL("AND NOT EXISTS (SELECT FROM {} u WHERE u.code = g.code)").format(staging.table("code_uses"))


def _chunk_errors_sql(staging: import_staging.Staging, chunk: int, repeats: bool) -> sql.Composed:
    """Compose the query listing a ready chunk's bad rows, with those of a code the file ``repeats``, in row order."""
    if not repeats:
        return sql.SQL("SELECT row_no, error FROM {} WHERE error IS NOT NULL ORDER BY 1").format(
            staging.table(f"ready_{chunk}")
        )
    return sql.SQL(
        "SELECT r.row_no, CASE WHEN r.code_free AND u.uses > 1"
        " THEN 'code ' || r.code || ' appears ' || u.uses || ' times in the file' ELSE r.error END"
        " FROM {ready} r LEFT JOIN {uses} u ON u.code = r.code"
        " WHERE r.error IS NOT NULL OR (r.code_free AND u.uses > 1) ORDER BY 1"
    ).format(ready=staging.table(f"ready_{chunk}"), uses=staging.table("code_uses"))


def _code_uses_sql(staging: import_staging.Staging, code_column: int) -> sql.Composed:
    """Compose the statement counting the codes that appear more than once in the whole staged file."""
    return staging.create_as("code_uses") + sql.SQL(
        "SELECT code, count(*) AS uses FROM (SELECT NULLIF(btrim(r.{}), '') AS code FROM {} r) s"
        " WHERE code IS NOT NULL GROUP BY code HAVING count(*) > 1"
    ).format(sql.Identifier(f"c{code_column}"), staging.table("raw"))


# A ready chunk's good rows, stored in row order: ids (and the codes made from them) follow the file's order.
# No ON CONFLICT: the codes were checked against the file and the stored cases (a speculative insertion per row
# cost a sixth of the insert); a code another writer stored since then refuses the file (Conflict). Returns the
# rows stored per month, status, subdistrict and source, with their points, for the map counts (Tally).
_MONTH = sql.SQL(map_counts.MONTH.format("reported_at"))
_INSERT_CHUNK_SQL = """
WITH ins AS (
    INSERT INTO incidents (id, code, source, item_code, status, description, address, photos, reported_at, due_at,
        closed_at, deferred, satisfaction, reworks, geom, generation, grid_code, community_code, subdistrict_code,
        squad_code, grid_member_id, street_code, street_chief_id, river_code, river_chief_id, outside, duplicate_of,
        api_key_id)
    SELECT n.id, coalesce(n.code, n.code_prefix || n.id), n.source, n.item_code, n.status, n.description, n.address,
        n.photos, n.reported_at, n.due_at, n.closed_at, n.deferred, n.satisfaction, n.reworks, n.geom, n.generation,
        n.grid_code, n.community_code, n.subdistrict_code, n.squad_code, n.grid_member_id, n.street_code,
        n.street_chief_id, n.river_code, n.river_chief_id, n.outside, n.duplicate_of, %(key_id)s
    FROM (SELECT r.*, nextval('incidents_id_seq') AS id
          FROM (SELECT * FROM {ready} g WHERE g.error IS NULL {repeated} ORDER BY g.row_no) r) n
    RETURNING geom, reported_at, status, subdistrict_code, source, duplicate_of
)
SELECT {month}, status, subdistrict_code, source, count(*), count(duplicate_of),
       string_agg(float8send(ST_X(geom)) || float8send(ST_Y(geom)), '')
FROM ins GROUP BY 1, 2, 3, 4
"""


@dataclass(frozen=True)
class _Reference:
    """One foreign key of incidents: the referenced table, column and type, and the incidents columns pointing there."""

    table: sql.Identifier
    column: str
    type: str
    columns: tuple[str, ...]
    constraints: tuple[str, ...]


class _References:
    """The foreign keys of incidents, checked set-based for a bulk insert that runs without the row triggers.

    PostgreSQL checks a foreign key with a query per inserted row (≈4 µs each, four keys: a third of a
    million-row insert). A bulk import instead gathers the distinct keys of each chunk (``distinct_sql``, on a
    helper), locks the rows they refer to FOR KEY SHARE, as those per-row checks do, and refuses the file if any
    is missing (``lock_and_check``, in the caller's transaction); then inserts the chunk with
    ``session_replication_role = replica``, under which no row trigger fires. A referenced row deleted before the
    lock is found missing; one deleted after it waits for this transaction and then fails its own check. The keys
    are read from the catalogue, so a key added later is checked too.
    """

    def __init__(self, cur: Cursor) -> None:
        cur.execute(
            """
            SELECT n.nspname, t.relname, fa.attname, format_type(fa.atttypid, fa.atttypmod),
                   array_agg(a.attname ORDER BY a.attname), array_agg(c.conname ORDER BY a.attname),
                   bool_and(cardinality(c.conkey) = 1)
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.confrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
            WHERE c.conrelid = 'incidents'::regclass AND c.contype = 'f'
            GROUP BY n.nspname, t.relname, fa.attname, fa.atttypid, fa.atttypmod ORDER BY t.relname, fa.attname
            """
        )
        found = cur.fetchall()
        self.references = [
            _Reference(sql.Identifier(schema, table), column, type_name, tuple(columns), tuple(names))
            for schema, table, column, type_name, columns, names, _ in found
        ]
        # only single-column keys are checked here; with any other, the row triggers stay on
        self.set_based = bool(found) and all(single for *_, single in found) and _may_skip_row_triggers(cur)

    def distinct_sql(self, ready: sql.Composable, keys: sql.Composed) -> sql.Composed:
        """Compose the statement that starts with ``keys`` (a CREATE TABLE … AS) and lists the good rows' keys.

        One scan of the chunk for every key column at once (grouping sets): a scan per column, or an array per
        row, cost ≈3× more (≈70 and ≈200 ms for 50,000 rows and two keys, against ≈25).
        """
        columns = [(n, sql.SQL("t.{}").format(sql.Identifier(c))) for n, ref in enumerate(self.references)
                   for c in ref.columns]  # fmt: skip
        return keys + sql.SQL(
            "SELECT DISTINCT reference, key FROM (SELECT CASE {which} END AS reference, coalesce({keys}) AS key"
            " FROM {ready} t WHERE t.error IS NULL GROUP BY GROUPING SETS ({sets})) k WHERE key IS NOT NULL"
        ).format(
            which=sql.SQL(" ").join(
                sql.SQL("WHEN GROUPING({}) = 0 THEN {}").format(c, sql.Literal(n)) for n, c in columns
            ),
            keys=sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(c) for _, c in columns),
            ready=ready,
            sets=sql.SQL(", ").join(sql.SQL("({})").format(c) for _, c in columns),
        )

    def lock_and_check(self, cur: Cursor, keys: sql.Composable) -> None:
        """Lock the rows the keys listed in ``keys`` refer to; raise Conflict naming any that does not exist."""
        for n, ref in enumerate(self.references):
            cur.execute(
                sql.SQL(
                    """
                    WITH refs AS (
                        SELECT CAST(k.key AS {type}) AS key FROM {keys} k WHERE k.reference = {n}
                    ), locked AS (
                        SELECT p.{column} AS key FROM {table} p WHERE p.{column} IN (SELECT key FROM refs)
                        FOR KEY SHARE
                    )
                    SELECT key FROM refs EXCEPT SELECT key FROM locked ORDER BY 1
                    """
                ).format(
                    type=sql.SQL(ref.type),  # a type name from the catalogue
                    keys=keys,
                    n=sql.Literal(n),
                    column=sql.Identifier(ref.column),
                    table=ref.table,
                )
            )
            missing = [str(row[0]) for row in cur.fetchall()]
            if missing:
                raise Conflict(
                    f"{', '.join(ref.columns)} refer to {ref.table.strings[1]}.{ref.column} "
                    f"{', '.join(missing[:10])}, which does not exist (deleted during the import?): nothing was "
                    "imported; import the file again",
                    detail={"constraints": list(ref.constraints), "missing": missing[:100]},
                )


# The triggers on incidents that session_replication_role = replica silences and a bulk import stands in for:
# the per-row audit (off in bulk mode anyway: one entry per import) and the change count (bumped by the import).
_STOOD_IN_FOR = frozenset({"incidents_audit", "incidents_count_changes"})


def _may_skip_row_triggers(cur: Cursor) -> bool:
    """Return whether a bulk insert may run with session_replication_role = replica.

    Only when this database user may set it (a superuser, or granted it) and every trigger on incidents that it
    would silence is one the import stands in for: a trigger added later keeps the import on the row triggers
    until the import learns to do its work (or the trigger is made ENABLE ALWAYS).
    """
    cur.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'incidents'::regclass AND NOT tgisinternal"
        " AND tgenabled = 'O'"  # fires in origin mode only, so not under replica
    )
    if {name for (name,) in cur.fetchall()} - _STOOD_IN_FOR:
        return False
    cur.execute("SAVEPOINT citygrid_replica_probe")
    try:
        cur.execute("SET LOCAL session_replication_role = replica")
    except psycopg2.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT citygrid_replica_probe")
        return False
    cur.execute("ROLLBACK TO SAVEPOINT citygrid_replica_probe")  # the probe's SET goes with it
    return True


def rows_of(data: Iterable[dict[str, Any]]) -> bytes:
    """Return CSV bytes for a list of row dicts (tests and the API's JSON bulk use it)."""
    rows = list(data)
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
