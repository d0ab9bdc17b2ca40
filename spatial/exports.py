"""Files for the field: the demolition campaign's lists (拆违台账), and the same for incidents, stalls and markets.

Every export is one query over a layer joined to its responsibility chain — grid → community → subdistrict
→ squad, and the grid member on duty now (for incidents: the chain stored when the case was reported) — with
the caller's filters, read in one REPEATABLE READ snapshot so that the totals sent first (in headers or a
sidecar) describe exactly the rows that follow.

Formats:
- GeoJSON: RFC 7946 (longitude, latitude; exterior rings counter-clockwise; no ``crs`` member), each feature
  written by PostgreSQL and streamed from a server-side cursor, so memory stays flat for any number of rows;
- CSV: streamed the same way (UTF-8 with a byte-order mark so that Excel shows Chinese; geometry as ``WKT``);
- KML: streamed the same way (``ST_AsKML`` geometry, the properties as typed ``ExtendedData``);
- GeoPackage and zipped Shapefile (UTF-8 ``.cpg``, 10-character field names): written by GDAL (pyogrio)
  chunk by chunk into a temporary file, then sent.
Areas (``footprint_m2``, ``demolished_m2``, ``area_m2``) are measured in EPSG:4544 and given to 0.01 m².
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
from pyogrio.raw import write as ogr_write
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Engine,
    FromClause,
    Numeric,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.engine import Connection

from spatial.errors import InvalidInput, NotFound
from spatial.layers import communities, grids, illegal_buildings, incidents, markets, organisation, stalls, subdistricts
from spatial.layers.base import Layer, current_generation
from spatial.workflow import STATUS_LABELS

CST = timezone(timedelta(hours=8))  # Beijing time: the dates in file names and the local time of timestamps
GEOJSON_DECIMALS = 8  # about 1 mm: areas read back from the file agree with the database to far below 0.1 m²
CHUNK_ROWS = 5_000  # rows per fetch from the server-side cursor, and per GDAL append
UNASSIGNED = "unassigned"  # the totals key of rows outside every grid
AREA_KINDS = ("subdistrict", "community", "grid")

STATUS_ZH = {
    "discovered": "已发现", "investigated": "已调查", "notice_served": "已送达通知", "scheduled": "已排期拆除",
    "demolished": "已拆除", "legalised": "已补办手续",
    **STATUS_LABELS,  # a case's status as the workflow, the map and /v1/incidents/workflow name it
}  # fmt: skip


@dataclass(frozen=True)
class Format:
    """A file format an export can be written in."""

    suffix: str
    media_type: str
    driver: str | None = None  # the GDAL driver that writes it; None when we stream it ourselves

    @property
    def streamed(self) -> bool:
        """Return True for the formats sent as they are read (GeoJSON, CSV, KML)."""
        return self.driver is None


FORMATS = {
    "geojson": Format("geojson", "application/geo+json"),
    "csv": Format("csv", "text/csv; charset=utf-8"),
    "kml": Format("kml", "application/vnd.google-earth.kml+xml"),
    "gpkg": Format("gpkg", "application/geopackage+sqlite3", "GPKG"),
    "shp.zip": Format("shp.zip", "application/zip", "ESRI Shapefile"),
}
KML_TYPES = {"text": "string", "int": "int", "float": "double", "bool": "bool", "date": "string", "timestamp": "string"}


@dataclass(frozen=True)
class ExportColumn:
    """One property of an exported feature: its field name, Chinese label, Shapefile name and type."""

    name: str
    label_zh: str
    shp_name: str  # at most 10 characters (dBase)
    kind: str  # text | int | float | bool | date | timestamp
    expression: ColumnElement[Any]


@dataclass(frozen=True)
class FilterSpec:
    """A filter a dataset accepts: how its values are read and which column they test."""

    kind: str  # choice | subdistrict | community | grid | text | bool | from | to
    expression: ColumnElement[Any]
    help: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """What can be exported: a layer joined to its chain, its columns, filters and totals."""

    name: str  # as in the URL: illegal-buildings
    label_zh: str
    layer: Layer
    geometry_type: str
    source: FromClause
    id_expression: ColumnElement[Any]
    geometry: ColumnElement[Any]
    columns: tuple[ExportColumn, ...]
    filters: Mapping[str, FilterSpec]
    subdistrict: tuple[ColumnElement[Any], ColumnElement[Any]]  # (code, name) the totals group by
    measures: tuple[tuple[str, ColumnElement[Any]], ...]  # sums in the totals besides the count
    order_by: tuple[ColumnElement[Any], ...]


def _m2(expression: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.round(cast(expression, Numeric), 2)


@dataclass(frozen=True)
class _Chain:
    grid_code: ColumnElement[Any]
    grid: ColumnElement[Any]
    community_code: ColumnElement[Any]
    community: ColumnElement[Any]
    subdistrict_code: ColumnElement[Any]
    subdistrict: ColumnElement[Any]
    squad: ColumnElement[Any]
    grid_member: ColumnElement[Any]
    grid_member_phone: ColumnElement[Any]
    source: FromClause

    def columns(self) -> tuple[ExportColumn, ...]:
        return (
            ExportColumn("subdistrict_code", "街道代码", "sd_code", "text", self.subdistrict_code),
            ExportColumn("subdistrict", "街道", "subdist", "text", self.subdistrict),
            ExportColumn("community_code", "社区代码", "cm_code", "text", self.community_code),
            ExportColumn("community", "社区", "community", "text", self.community),
            ExportColumn("grid_code", "网格编码", "grid_code", "text", self.grid_code),
            ExportColumn("grid", "网格", "grid", "text", self.grid),
            ExportColumn("squad", "执法中队", "squad", "text", self.squad),
            ExportColumn("grid_member", "网格员", "gm_name", "text", self.grid_member),
            ExportColumn("grid_member_phone", "网格员电话", "gm_phone", "text", self.grid_member_phone),
        )

    def filters(self) -> dict[str, FilterSpec]:
        return {
            "subdistrict": FilterSpec("subdistrict", self.subdistrict_code, "subdistrict code or name, e.g. 开化街道"),
            "community": FilterSpec("community", self.community_code, "community code or name"),
            "grid": FilterSpec("grid", self.grid_code, "15-digit grid code or grid name"),
        }


def _chain_now(source: Any) -> _Chain:
    """Join a layer with (generation, grid_code) to its grid, community, subdistrict, squad and grid member now.

    The grid member is the holder of the grid's duty at this moment (the exclusion constraint on duties allows
    one), so the join never multiplies a row.
    """
    g = grids.table.alias("g")
    c = communities.table.alias("c")
    s = subdistricts.table.alias("s")
    sq = organisation.squads_table.alias("sq")
    d = organisation.duties_table.alias("d")
    p = organisation.people_table.alias("p")
    now = func.now()
    joined = (
        source.outerjoin(g, and_(g.c.generation == source.c.generation, g.c.code == source.c.grid_code))
        .outerjoin(c, and_(c.c.generation == g.c.generation, c.c.code == g.c.community_code))
        .outerjoin(s, and_(s.c.generation == c.c.generation, s.c.code == c.c.subdistrict_code))
        .outerjoin(sq, sq.c.subdistrict_code == s.c.code)
        .outerjoin(
            d,
            and_(
                d.c.target_kind == "grid",
                d.c.role == "grid_member",
                d.c.target_code == source.c.grid_code,
                d.c.valid_from <= now,
                or_(d.c.valid_to.is_(None), d.c.valid_to > now),
            ),  # fmt: skip
        )
        .outerjoin(p, p.c.id == d.c.person_id)
    )
    return _Chain(
        source.c.grid_code, g.c.name, c.c.code, c.c.name, s.c.code, s.c.name, sq.c.name, p.c.name, p.c.phone, joined
    )


def _illegal_buildings() -> Dataset:
    b = illegal_buildings.table.alias("b")
    chain = _chain_now(b)
    dates = ("discovered", "investigated", "notice_served", "scheduled", "demolished", "legalised")
    labels = ("发现日期", "调查日期", "送达通知日期", "排期拆除日期", "拆除日期", "补办手续日期")
    shp = ("discovered", "investig", "notice", "scheduled", "demolished", "legalised")
    columns = (
        ExportColumn("code", "编号", "code", "text", b.c.code),
        ExportColumn("address", "地址", "address", "text", b.c.address),
        *chain.columns(),
        ExportColumn("status", "状态", "status", "text", b.c.status),
        ExportColumn("status_zh", "状态（中文）", "status_zh", "text", _status_zh(b.c.status)),
        *(ExportColumn(f"{d}_at", z, s, "date", b.c[f"{d}_at"]) for d, z, s in zip(dates, labels, shp, strict=True)),
        ExportColumn("floors", "层数", "floors", "int", b.c.floors),
        ExportColumn("footprint_m2", "占地面积（平方米）", "foot_m2", "float", _m2(b.c.footprint_m2)),
        ExportColumn("demolished_m2", "拆除面积（平方米）", "demol_m2", "float", _m2(b.c.demolished_m2)),
        ExportColumn("campaign", "专项行动", "campaign", "text", b.c.campaign),
    )
    filters = {
        "status": FilterSpec("choice", b.c.status, "status", illegal_buildings.STATUSES),
        **chain.filters(),
        "campaign": FilterSpec("text", b.c.campaign, "campaign name, e.g. 五治三改一拆一增"),
        "discovered_from": FilterSpec("from", b.c.discovered_at, "discovered on or after (YYYY-MM-DD)"),
        "discovered_to": FilterSpec("to", b.c.discovered_at, "discovered on or before (YYYY-MM-DD)"),
        "demolished_from": FilterSpec("from", b.c.demolished_at, "demolished on or after (YYYY-MM-DD)"),
        "demolished_to": FilterSpec("to", b.c.demolished_at, "demolished on or before (YYYY-MM-DD)"),
    }
    return Dataset(
        name="illegal-buildings", label_zh="违法建筑", layer=illegal_buildings.layer, geometry_type="Polygon",
        source=chain.source, id_expression=b.c.code, geometry=b.c.geom, columns=columns, filters=filters,
        subdistrict=(chain.subdistrict_code, chain.subdistrict),
        measures=(("footprint_m2", b.c.footprint_m2), ("demolished_m2", b.c.demolished_m2)),
        order_by=(chain.grid_code.asc().nulls_last(), b.c.code),
    )  # fmt: skip


def _stalls() -> Dataset:
    t = stalls.table.alias("t")
    m = markets.table.alias("m")
    chain = _chain_now(t)
    source = chain.source.outerjoin(m, m.c.code == t.c.market_code)
    columns = (
        ExportColumn("code", "编号", "code", "text", t.c.code),
        ExportColumn("kind", "类型", "kind", "text", t.c.kind),
        ExportColumn("licensed", "持证", "licensed", "bool", t.c.licensed),
        ExportColumn("market_code", "市场编号", "mkt_code", "text", t.c.market_code),
        ExportColumn("market", "市场", "market", "text", m.c.name),
        *chain.columns(),
    )
    filters = {
        **chain.filters(),
        "kind": FilterSpec("text", t.c.kind, "stall kind"),
        "licensed": FilterSpec("bool", t.c.licensed, "true or false"),
        "market": FilterSpec("text", t.c.market_code, "market code"),
    }
    return Dataset(
        name="stalls", label_zh="摊点", layer=stalls.layer, geometry_type="Point", source=source,
        id_expression=t.c.code, geometry=t.c.geom, columns=columns, filters=filters,
        subdistrict=(chain.subdistrict_code, chain.subdistrict), measures=(),
        order_by=(chain.grid_code.asc().nulls_last(), t.c.code),
    )  # fmt: skip


def _markets() -> Dataset:
    t = markets.table.alias("t")
    chain = _chain_now(t)
    area = func.ST_Area(func.ST_Transform(t.c.geom, 4544))
    columns = (
        ExportColumn("code", "编号", "code", "text", t.c.code),
        ExportColumn("name", "名称", "name", "text", t.c.name),
        ExportColumn("kind", "类型", "kind", "text", t.c.kind),
        ExportColumn("rectified_at", "整治日期", "rectified", "date", t.c.rectified_at),
        ExportColumn("area_m2", "面积（平方米）", "area_m2", "float", _m2(area)),
        *chain.columns(),
    )
    filters = {
        **chain.filters(),
        "kind": FilterSpec("text", t.c.kind, "market kind, e.g. 农产品"),
        "rectified_from": FilterSpec("from", t.c.rectified_at, "rectified on or after (YYYY-MM-DD)"),
        "rectified_to": FilterSpec("to", t.c.rectified_at, "rectified on or before (YYYY-MM-DD)"),
    }
    return Dataset(
        name="markets", label_zh="市场", layer=markets.layer, geometry_type="Polygon", source=chain.source,
        id_expression=t.c.code, geometry=t.c.geom, columns=columns, filters=filters,
        subdistrict=(chain.subdistrict_code, chain.subdistrict), measures=(("area_m2", area),),
        order_by=(chain.grid_code.asc().nulls_last(), t.c.code),
    )  # fmt: skip


def _incidents() -> Dataset:
    """Incidents carry the chain stored when they were reported (DESIGN: re-assignment is explicit)."""
    t = incidents.table.alias("t")
    g = grids.table.alias("g")
    c = communities.table.alias("c")
    s = subdistricts.table.alias("s")
    sq = organisation.squads_table.alias("sq")
    p = organisation.people_table.alias("p")
    ci = table("catalogue_items", column("code"), column("name_zh")).alias("ci")
    source = (
        t.outerjoin(g, and_(g.c.generation == t.c.generation, g.c.code == t.c.grid_code))
        .outerjoin(c, and_(c.c.generation == t.c.generation, c.c.code == t.c.community_code))
        .outerjoin(s, and_(s.c.generation == t.c.generation, s.c.code == t.c.subdistrict_code))
        .outerjoin(sq, sq.c.code == t.c.squad_code)
        .outerjoin(p, p.c.id == t.c.grid_member_id)
        .outerjoin(ci, ci.c.code == t.c.item_code)
    )
    chain = _Chain(
        t.c.grid_code, g.c.name, t.c.community_code, c.c.name, t.c.subdistrict_code, s.c.name, sq.c.name, p.c.name,
        p.c.phone, source,
    )  # fmt: skip
    columns = (
        ExportColumn("code", "编号", "code", "text", t.c.code),
        ExportColumn("source", "来源", "source", "text", t.c.source),
        ExportColumn("item_code", "事项代码", "item_code", "text", t.c.item_code),
        ExportColumn("item", "事项", "item", "text", ci.c.name_zh),
        ExportColumn("status", "状态", "status", "text", t.c.status),
        ExportColumn("status_zh", "状态（中文）", "status_zh", "text", _status_zh(t.c.status)),
        ExportColumn("reported_at", "上报时间", "reported", "timestamp", t.c.reported_at),
        ExportColumn("due_at", "处置时限", "due", "timestamp", t.c.due_at),
        ExportColumn("closed_at", "结案时间", "closed", "timestamp", t.c.closed_at),
        ExportColumn("satisfaction", "满意度", "satisfact", "text", t.c.satisfaction),
        *chain.columns(),
    )
    filters = {
        "status": FilterSpec("choice", t.c.status, "case status", incidents.STATUSES),
        **chain.filters(),
        "source": FilterSpec("choice", t.c.source, "where the case came from", incidents.SOURCES),
        "item": FilterSpec("text", t.c.item_code, "catalogue item code, e.g. 0508"),
        "reported_from": FilterSpec("from", t.c.reported_at, "reported on or after (YYYY-MM-DD, Beijing time)"),
        "reported_to": FilterSpec("to", t.c.reported_at, "reported on or before (YYYY-MM-DD, Beijing time)"),
        "closed_from": FilterSpec("from", t.c.closed_at, "closed on or after (YYYY-MM-DD, Beijing time)"),
        "closed_to": FilterSpec("to", t.c.closed_at, "closed on or before (YYYY-MM-DD, Beijing time)"),
    }
    return Dataset(
        name="incidents", label_zh="案件", layer=incidents.layer, geometry_type="Point", source=source,
        id_expression=t.c.code, geometry=t.c.geom, columns=columns, filters=filters,
        subdistrict=(t.c.subdistrict_code, s.c.name), measures=(),
        order_by=(t.c.grid_code.asc().nulls_last(), t.c.reported_at, t.c.code),
    )  # fmt: skip


def _status_zh(status: ColumnElement[Any]) -> ColumnElement[Any]:
    return case(STATUS_ZH, value=status, else_=status)


DATASETS: dict[str, Dataset] = {
    dataset.name: dataset for dataset in (_illegal_buildings(), _incidents(), _stalls(), _markets())
}


def dataset_named(name: str) -> Dataset:
    """Return the dataset called ``name`` (as in the URL), or raise NotFound listing them."""
    try:
        return DATASETS[name]
    except KeyError:
        raise NotFound(f"no export named {name!r}; exports: {', '.join(DATASETS)}") from None


def format_named(name: str) -> Format:
    """Return the format with suffix ``name``, or raise NotFound listing them."""
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise NotFound(f"no export format {name!r}; formats: {', '.join(FORMATS)}") from None


@dataclass(frozen=True)
class Export:
    """A validated export request: dataset, format, the SQL conditions and what they mean in words."""

    dataset: Dataset
    format: Format
    conditions: tuple[ColumnElement[bool], ...]
    applied: dict[str, list[str]]  # filter name -> values as resolved (codes for areas)
    name_zh: tuple[str, ...]  # the filters in words, for the file name
    name_ascii: tuple[str, ...]
    day: date = field(default_factory=lambda: datetime.now(CST).date())

    def file_name(self, *, ascii_only: bool = False) -> str:
        """Return the download name: dataset, filters and date, e.g. 违法建筑_开化街道_已拆除_2017-06-30.geojson."""
        head = self.dataset.name if ascii_only else self.dataset.label_zh
        parts = [head, *(self.name_ascii if ascii_only else self.name_zh), self.day.isoformat()]
        stem = "_".join(re.sub(r'[\\/:*?"<>|\s]+', "-", part) for part in parts)
        return f"{stem}.{self.format.suffix}"

    def content_disposition(self) -> str:
        """Return the Content-Disposition header: an ASCII name and the Chinese one (RFC 6266 / 5987)."""
        return f"attachment; filename=\"{self.file_name(ascii_only=True)}\"; filename*=UTF-8''{quote(self.file_name())}"


def prepare(conn: Connection, dataset_name: str, format_name: str, filters: Mapping[str, Sequence[str]]) -> Export:
    """Return the validated export; unknown filters, values, names and bad date ranges raise InvalidInput."""
    dataset = dataset_named(dataset_name)
    fmt = format_named(format_name)
    conditions: list[ColumnElement[bool]] = []
    applied: dict[str, list[str]] = {}
    name_zh: list[str] = []
    name_ascii: list[str] = []
    ranges: dict[str, dict[str, date]] = {}
    unknown = [name for name in filters if name not in dataset.filters]
    if unknown:
        raise InvalidInput(
            f"filter {', '.join(map(repr, unknown))} does not apply to {dataset.name}; "
            f"it takes: {', '.join(dataset.filters)}",
            detail={"filters": list(dataset.filters)},
        )
    # The file name reads place first, then the rest in the dataset's order: 违法建筑_开化街道_已拆除_….
    ordered = sorted(filters, key=lambda n: (dataset.filters[n].kind not in AREA_KINDS, list(dataset.filters).index(n)))
    for name in ordered:
        values = [v.strip() for v in filters[name] if v is not None and v.strip()]
        if not values:
            continue
        spec = dataset.filters[name]
        if spec.kind == "choice":
            check_choices(name, values, spec.choices)
            conditions.append(spec.expression.in_(values))
            name_zh.append("+".join(STATUS_ZH.get(v, v) for v in values))
            name_ascii.append("+".join(values))
        elif spec.kind in AREA_KINDS:
            resolved = resolve_areas(conn, spec.kind, values)
            conditions.append(spec.expression.in_([code for code, _ in resolved]))
            values = [code for code, _ in resolved]
            name_zh.append("+".join(label for _, label in resolved))
            name_ascii.append("+".join(values))
        elif spec.kind == "bool":
            flags = {_boolean(name, v) for v in values}
            conditions.append(spec.expression.in_(flags))
            name_zh.append(f"{name}={'+'.join(sorted(str(f).lower() for f in flags))}")
            name_ascii.append(name_zh[-1])
        elif spec.kind == "text":
            conditions.append(spec.expression.in_(values))
            name_zh.append("+".join(values))
            name_ascii.append(f"{name}={len(values)}")
        else:  # from / to
            if len(values) > 1:
                raise InvalidInput(f"{name} takes one date, not {len(values)}")
            day = _date(name, values[0])
            ranges.setdefault(name.rsplit("_", 1)[0], {})[spec.kind] = day
            conditions.append(_date_condition(spec, day))
        applied[name] = values
    for prefix, bounds in ranges.items():
        start, end = bounds.get("from"), bounds.get("to")
        if start and end and start > end:
            raise InvalidInput(f"{prefix}_from {start} is after {prefix}_to {end}: swap them")
        words = f"{prefix}{start or ''}~{end or ''}"
        name_zh.append(words)
        name_ascii.append(words)
    return Export(dataset, fmt, tuple(conditions), applied, tuple(name_zh), tuple(name_ascii))


def _date(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name}={text!r} is not a date: write YYYY-MM-DD, e.g. 2017-03-31") from None


def _date_condition(spec: FilterSpec, day: date) -> ColumnElement[bool]:
    """Return ``column >= day`` or ``column <= day`` (whole days, Beijing time, for timestamps too)."""
    if spec.kind == "from":
        start = datetime.combine(day, datetime.min.time(), CST)
        return spec.expression >= (start if _is_timestamp(spec) else day)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), CST)
    return spec.expression < end if _is_timestamp(spec) else spec.expression <= day


def _is_timestamp(spec: FilterSpec) -> bool:
    return isinstance(spec.expression.type, DateTime)


def _boolean(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "是", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "否", "f", "n"):
        return False
    raise InvalidInput(f"{name}={text!r} is not true or false")


def check_choices(name: str, values: Sequence[str], choices: Sequence[str]) -> None:
    """Raise InvalidInput naming the accepted values when a value of filter ``name`` is not one of ``choices``."""
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise InvalidInput(
            f"{name} {', '.join(map(repr, unknown))} is not one of: {', '.join(choices)}",
            detail={"filter": name, "choices": list(choices)},
        )


def resolve_areas(conn: Connection, kind: str, values: Sequence[str]) -> list[tuple[str, str]]:
    """Return (code, name) for each subdistrict, community or grid given by code or name (current boundaries).

    Names match exactly, without their 街道/社区 suffix, or (subdistricts) by English name in any case; an
    unknown one raises InvalidInput with examples. The map's filters (hotspots, heat, tiles) read areas so too.
    """
    layer = {"subdistrict": subdistricts, "community": communities, "grid": grids}[kind]
    t = layer.table
    wanted = select(t.c.code, t.c.name, *([t.c.name_en] if kind == "subdistrict" else [])).where(
        t.c.generation == current_generation(conn)
    )
    known = [tuple(row) for row in conn.execute(wanted)]
    resolved = []
    for value in values:
        match = next(
            (
                (row[0], row[1])
                for row in known
                if value in (row[0], row[1], re.sub("(街道|社区)$", "", row[1]))
                or (len(row) > 2 and row[2] and value.lower() == str(row[2]).lower())
            ),
            None,
        )
        if match is None:
            examples = ", ".join(f"{row[1]} ({row[0]})" for row in known[:6])
            raise InvalidInput(
                f"{kind} {value!r} matches no {kind} in the current boundaries; give a code or a name, e.g. {examples}",
                detail={"filter": kind, "value": value},
            )
        resolved.append(match)
    return resolved


# --- totals ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    """Count and summed areas per subdistrict, and for the whole export."""

    measures: tuple[str, ...]
    subdistricts: list[dict[str, Any]]
    total: dict[str, Any]

    def header(self) -> str:
        """Return the totals as compact ASCII JSON for the ``X-Citygrid-Totals`` header (codes, not names)."""
        by_code = {
            row["code"] or UNASSIGNED: {k: row[k] for k in ("count", *self.measures)} for row in self.subdistricts
        }
        return json.dumps({**by_code, "total": self.total}, ensure_ascii=True, separators=(",", ":"))

    def as_dict(self) -> dict[str, Any]:
        """Return the totals with subdistrict names (the sidecar)."""
        return {"subdistricts": self.subdistricts, "total": self.total}


def totals(conn: Connection, export: Export) -> Totals:
    """Return count and summed m² per subdistrict for the export's rows (one GROUP BY)."""
    dataset = export.dataset
    code, name = dataset.subdistrict
    sums = [func.round(cast(func.coalesce(func.sum(expr), 0), Numeric), 2).label(key) for key, expr in dataset.measures]
    query = (
        select(code.label("code"), func.min(name).label("name"), func.count().label("count"), *sums)
        .select_from(dataset.source)
        .where(and_(true(), *export.conditions))
        .group_by(code)
        .order_by(code.asc().nulls_last())
    )
    measures = tuple(key for key, _ in dataset.measures)
    rows = []
    for row in conn.execute(query).mappings():
        rows.append(
            {"code": row["code"], "name": row["name"], "count": row["count"], **{k: float(row[k]) for k in measures}}
        )
    total = {"count": sum(r["count"] for r in rows), **{k: round(sum(r[k] for r in rows), 2) for k in measures}}
    return Totals(measures, rows, total)


# --- reading the rows in one snapshot -------------------------------------------------------------------


class Snapshot:
    """One export read in one REPEATABLE READ transaction: totals first, then the rows, then closed.

    The connection is held until the rows are consumed (or ``close`` is called): the streaming formats close
    it when their last chunk is sent.
    """

    def __init__(self, engine: Engine, export: Export) -> None:
        self.export = export
        self._conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        self._transaction = self._conn.begin()
        try:
            self.totals = totals(self._conn, export)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the read-only transaction and give the connection back."""
        if not self._conn.closed:
            self._transaction.rollback()
            self._conn.close()

    def _rows(self, *columns: ColumnElement[Any]) -> Iterator[Sequence[Sequence[Any]]]:
        dataset = self.export.dataset
        query = (
            select(*columns)
            .select_from(dataset.source)
            .where(and_(true(), *self.export.conditions))
            .order_by(*dataset.order_by)
        )
        result = self._conn.execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS).execute(query)
        yield from result.partitions(CHUNK_ROWS)

    def stream(self, *, header: str = "zh") -> Iterator[bytes]:
        """Yield a streamed format (GeoJSON, CSV with a ``zh`` or ``en`` header, KML) chunk by chunk; then close."""
        suffix = self.export.format.suffix
        if suffix == "geojson":
            return self.geojson()
        if suffix == "csv":
            return self.csv(header=header)
        if suffix == "kml":
            return self.kml()
        self.close()
        raise InvalidInput(f"{suffix} is written to a file, not streamed")

    def geojson(self) -> Iterator[bytes]:
        """Yield the RFC 7946 FeatureCollection in chunks, each feature written by PostgreSQL; then close."""
        dataset = self.export.dataset
        properties = func.json_build_object(
            *(item for col in dataset.columns for item in (literal(col.name), col.expression))
        )
        geometry = func.ST_AsGeoJSON(func.ST_ForcePolygonCCW(dataset.geometry), GEOJSON_DECIMALS, 0)
        feature = func.concat(
            '{"type":"Feature","id":', func.to_json(dataset.id_expression), ',"geometry":', geometry,
            ',"properties":', properties, "}",
        )  # fmt: skip
        try:
            name = json.dumps(dataset.layer.name)
            yield f'{{"type":"FeatureCollection","name":{name},"features":[\n'.encode()
            separator = ""
            for partition in self._rows(feature):
                yield (separator + ",\n".join(row[0] for row in partition)).encode()
                separator = ",\n"
            yield b"\n]}\n"
        finally:
            self.close()

    def csv(self, *, header: str = "zh") -> Iterator[bytes]:
        """Yield CSV (UTF-8 with BOM; Chinese or English header; geometry as WKT last); then close."""
        dataset = self.export.dataset
        columns = dataset.columns
        titles = [col.label_zh if header == "zh" else col.name for col in columns] + ["WKT"]
        try:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            buffer.write("\ufeff")
            writer.writerow(titles)
            yield buffer.getvalue().encode()
            for partition in self._rows(*(col.expression for col in columns), func.ST_AsText(dataset.geometry)):
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                for row in partition:
                    writer.writerow([_csv_value(v) for v in row])
                yield buffer.getvalue().encode()
        finally:
            self.close()

    def kml(self) -> Iterator[bytes]:
        """Yield KML 2.2: one Placemark per row (name = code), typed ExtendedData, ``ST_AsKML`` geometry; then close."""
        dataset = self.export.dataset
        layer = dataset.layer.name
        fields = "".join(
            f'<SimpleField name="{col.name}" type="{KML_TYPES[col.kind]}"><displayName>{escape(col.label_zh)}'
            "</displayName></SimpleField>"
            for col in dataset.columns
        )
        try:
            yield (
                '<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
                f"<name>{escape(self.export.file_name())}</name>"
                f'<Schema name="{layer}" id="{layer}">{fields}</Schema><Folder><name>{layer}</name>\n'
            ).encode()
            columns = (*(col.expression for col in dataset.columns), func.ST_AsKML(dataset.geometry))
            for partition in self._rows(dataset.id_expression, *columns):
                pieces = []
                for row in partition:
                    data = "".join(
                        f'<SimpleData name="{col.name}">{escape(_text_value(value))}</SimpleData>'
                        for col, value in zip(dataset.columns, row[1:-1], strict=True)
                        if value is not None
                    )
                    pieces.append(
                        f"<Placemark><name>{escape(str(row[0]))}</name><ExtendedData>"
                        f'<SchemaData schemaUrl="#{layer}">{data}</SchemaData></ExtendedData>{row[-1]}</Placemark>\n'
                    )
                yield "".join(pieces).encode()
            yield b"</Folder></Document></kml>\n"
        finally:
            self.close()

    def write_file(self, directory: Path) -> Path:
        """Write the export with GDAL into ``directory`` chunk by chunk and return the file (zipped Shapefile)."""
        fmt = self.export.format
        dataset = self.export.dataset
        if fmt.driver is None:
            raise InvalidInput(f"{fmt.suffix} is streamed, not written to a file")
        shapefile = fmt.driver == "ESRI Shapefile"
        layer = dataset.layer.name
        path = directory / (f"{layer}.shp" if shapefile else f"{layer}.{fmt.suffix}")
        names = [col.shp_name if shapefile else col.name for col in dataset.columns]
        written = False
        for partition in self._rows(*(col.expression for col in dataset.columns), func.ST_AsBinary(dataset.geometry)):
            self._write_chunk(path, names, partition, append=written)
            written = True
        if not written:
            self._write_chunk(path, names, [], append=False)
        if not shapefile:
            return path
        archive = directory / f"{layer}.shp.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for part in sorted(directory.glob(f"{layer}.*")):
                if part != archive:
                    bundle.write(part, part.name)
        return archive

    def _write_chunk(self, path: Path, names: list[str], rows: Sequence[Sequence[Any]], *, append: bool) -> None:
        fmt = self.export.format
        dataset = self.export.dataset
        data: list[npt.NDArray[Any]] = []
        offsets: dict[str, npt.NDArray[Any]] = {}
        for index, (col, name) in enumerate(zip(dataset.columns, names, strict=True)):
            array, tz = _field_array(col.kind, [row[index] for row in rows], native_times=fmt.driver == "GPKG")
            data.append(array)
            if tz is not None:
                offsets[name] = tz
        geometry = np.array([bytes(row[-1]) for row in rows], dtype=object)
        shapefile = fmt.driver == "ESRI Shapefile"
        ogr_write(
            str(path), geometry, data, names, layer=path.stem if shapefile else dataset.layer.name,
            driver=fmt.driver, geometry_type=dataset.geometry_type, crs="EPSG:4326",
            encoding="UTF-8" if shapefile else None, append=append, gdal_tz_offsets=offsets or None,
        )  # fmt: skip


GDAL_UTC = 100  # GDAL's time-zone flag for UTC (each step of 1 is 15 minutes)


def _field_array(
    kind: str, values: list[Any], *, native_times: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any] | None]:
    """Return the numpy array GDAL writes for one column (and time-zone flags for timestamps)."""
    if kind == "int":
        return np.array(values, dtype=np.int32), None
    if kind == "float":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64), None
    if kind == "bool":
        return np.array(values, dtype=bool), None
    if kind == "date":  # the unit always: a column of only NaT has none, and GDAL then writes text or date-times
        return np.array([np.datetime64("NaT") if v is None else v for v in values], dtype="datetime64[D]"), None
    if kind == "timestamp" and native_times:  # GeoPackage date-times are UTC (its specification, 1.1.1.1.1)
        utc = [None if v is None else v.astimezone(UTC).replace(tzinfo=None) for v in values]
        array = np.array([np.datetime64("NaT") if v is None else np.datetime64(v, "ms") for v in utc])
        return array.astype("datetime64[ms]"), np.full(len(values), GDAL_UTC, dtype=np.int32)
    if kind == "timestamp":  # a Shapefile has no date-time field: ISO 8601 text with the offset
        return np.array([None if v is None else v.isoformat() for v in values], dtype=object), None
    return np.array(values, dtype=object), None


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
