"""Import real boundaries: subdistricts, communities or grids as a new boundary generation; streets in place.

GIS staff receive boundaries from the surveying bureau as Shapefiles (or GeoPackage, GeoJSON) in CGCS2000,
often projected (EPSG:4544) and sometimes without a ``.prj``. One import, in one transaction:

1. read the file with pyogrio and bring its coordinates to WGS-84 with ``spatial.crs`` (the ``--crs`` given,
   else the file's own): EPSG codes, CGCS2000, GCJ-02 and BD-09 are all accepted;
2. map its fields to ours (exact, case-insensitive, Shapefile-truncated, ``--field ours=theirs``; parent codes
   derived from the 15/12-digit codes when absent) and run the loader's feature checks
   (``spatial.loading.check_frame``); invalid geometries are repaired and recorded as problems;
3. refuse codes that cannot be stored (duplicates, wrong length or parent, a parent that does not exist,
   children left without their parent) — these no ``--force`` can pass;
4. create the new generation: the previous one ends where it starts (the exclusion constraint on
   ``boundary_generations`` forbids overlaps), the other boundary levels are copied, the imported level
   comes from the file, and ``grid_parts`` follow by trigger;
5. check the topology of the whole new generation in PostGIS, measured in EPSG:4544: overlaps within a
   level, gaps (a parent not covered by its children; holes in the city), and children outside their parent,
   each with its location and area. With problems the import is refused (rolled back) unless ``force``, which
   records them on the generation;
6. report the difference against the previous generation: added, removed and changed codes with areas.

Why generations and not updates in place: incidents keep the generation they were assigned under (DESIGN.md),
so an answer given last month can still be explained with last month's boundaries.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely
from sqlalchemy import ColumnElement, Table, and_, func, insert, literal, or_, select, text, update
from sqlalchemy.engine import Connection

from spatial.crs import InputCrs, parse_crs, to_wgs84_arrays
from spatial.errors import InvalidInput
from spatial.layers import communities, generations, grids, organisation, streets, subdistricts
from spatial.layers.base import Layer
from spatial.loading import check_frame, load_rows, read_gis_file

LEVELS: tuple[Layer, ...] = (subdistricts.layer, communities.layer, grids.layer)  # parents first
IMPORTABLE = ("subdistricts", "communities", "grids", "streets")
# Each level's parent level and the column that names the parent.
PARENTS = {"communities": ("subdistricts", "subdistrict_code"), "grids": ("communities", "community_code")}
CODE_DIGITS = {"subdistricts": 9, "communities": 12, "grids": 15}
SINGULAR = {"subdistricts": "subdistrict", "communities": "community", "grids": "grid"}

BEIJING = timezone(timedelta(hours=8))  # a valid_from given without a zone is Beijing time, as everywhere in the CLI
DEFAULT_MIN_AREA_M2 = 1.0  # gaps, overlaps and overhangs smaller than this are digitising noise, not problems
CHANGE_TOLERANCE_M2 = 0.01  # a boundary whose symmetric difference is below this is unchanged
SHAPEFILE_FIELD_LENGTH = 10
PREVIOUS_STREETS = "CREATE TEMP TABLE previous_streets ON COMMIT DROP AS SELECT code, name, kind, geom FROM streets"
_LOCATION = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)")


@dataclass(frozen=True)
class Problem:
    """A topology or geometry problem of the imported boundaries, located and measured."""

    kind: str  # invalid_geometry | overlap | gap | outside_parent | hole
    layer: str
    codes: tuple[str, ...]
    message: str
    lon: float | None = None
    lat: float | None = None
    area_m2: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the problem as JSON-ready values (as recorded on a forced generation)."""
        return {**asdict(self), "codes": list(self.codes)}


@dataclass(frozen=True)
class Change:
    """One code's difference between the previous generation and the imported one."""

    code: str
    kind: str  # added | removed | changed
    name: str
    area_before_m2: float | None
    area_after_m2: float | None
    moved_m2: float | None  # area of the symmetric difference (for streets: Hausdorff distance in m)
    note: str = ""


@dataclass
class ImportReport:
    """What an import did (or would do): the new generation, the problems and the difference."""

    layer: str
    source: str
    features: int
    generation: int | None = None
    previous_generation: int | None = None
    valid_from: datetime | None = None
    problems: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)
    forced: bool = False

    def counts(self) -> dict[str, int]:
        """Return how many codes were added, removed, changed and left unchanged."""
        kinds = [c.kind for c in self.changes]
        return {k: kinds.count(k) for k in ("added", "removed", "changed")} | {"unchanged": self.unchanged}


class BoundaryProblems(InvalidInput):
    """The imported boundaries have topology or geometry problems, and ``force`` was not given."""

    code = "boundary_problems"

    def __init__(self, report: ImportReport) -> None:
        lines = "; ".join(p.message for p in report.problems[:5])
        more = f" (and {len(report.problems) - 5} more)" if len(report.problems) > 5 else ""
        super().__init__(
            f"{report.source}: {len(report.problems)} problem(s), nothing imported: {lines}{more}. Fix the file, "
            "or import with --force to record them on the new generation",
            detail={"problems": [p.as_dict() for p in report.problems]},
        )
        self.report = report


# --- reading the file -----------------------------------------------------------------------------------


def read_boundary_file(
    path: Path,
    layer: Layer,
    *,
    crs: str | None = None,
    fields: Mapping[str, str] | None = None,
    encoding: str | None = None,
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Return the file's features with our field names and WGS-84 lon/lat geometry, and warnings.

    ``crs`` (``EPSG:4544``, ``cgcs2000``, ``gcj02``…) overrides the file's own CRS; without either the file
    is refused. ``fields`` maps our field names to the file's (``{"code": "WGBM"}``). ``encoding`` forces a
    Shapefile's text encoding; without it one that declares none is read as UTF-8 or GBK
    (``spatial.loading.read_gis_file``).
    """
    frame = read_gis_file(path, encoding=encoding)
    warnings: list[str] = []
    frame = _rename_fields(frame, layer, fields or {}, path)
    source_crs = _source_crs(frame, crs, path, warnings)
    geometry = np.asarray(frame.geometry.values, dtype=object)
    lonlat = shapely.transform(geometry, lambda xy: _to_lonlat(xy, source_crs))
    frame = gpd.GeoDataFrame(frame.drop(columns="geometry"), geometry=lonlat, crs=4326)
    for name in frame.columns:
        if name != "geometry" and frame[name].dtype == object:
            frame[name] = frame[name].map(lambda v: v.strip() if isinstance(v, str) else v)
    return frame, warnings


def _rename_fields(frame: Any, layer: Layer, mapping: Mapping[str, str], path: Path) -> Any:
    """Return ``frame`` with the layer's field names: explicit mapping, exact, case-insensitive, truncated."""
    ours = [f.name for f in layer.fields if f.name != "generation"]
    unknown = [name for name in mapping if name not in ours]
    if unknown:
        raise InvalidInput(f"--field {', '.join(unknown)}: layer {layer.name} has fields {', '.join(ours)}")
    theirs = {str(c).lower(): str(c) for c in frame.columns if c != "geometry"}
    renames: dict[str, str] = {}
    for name in ours:
        if name in mapping:
            source = theirs.get(mapping[name].lower())
            if source is None:
                raise InvalidInput(
                    f"{path}: no field {mapping[name]!r} (for {name}); fields: {', '.join(theirs.values())}"
                )
        else:
            source = theirs.get(name) or theirs.get(name[:SHAPEFILE_FIELD_LENGTH])
        if source is not None:
            renames[source] = name
    frame = frame.drop(columns=[c for c in frame.columns if c in ours and c not in renames.values()])
    frame = frame.rename(columns=renames)
    if layer.name in PARENTS and PARENTS[layer.name][1] not in frame.columns and "code" in frame.columns:
        parent_digits = CODE_DIGITS[PARENTS[layer.name][0]]  # CJ/T 213: a code starts with its parent's
        frame[PARENTS[layer.name][1]] = frame["code"].map(lambda c: _code_text(c)[:parent_digits] if c else c)
    if "code" in frame.columns:
        frame["code"] = frame["code"].map(_code_text)
    return frame


def _code_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if value is not None else ""


def _source_crs(frame: Any, crs: str | None, path: Path, warnings: list[str]) -> InputCrs:
    """Return the CRS the file's coordinates are in: ``--crs`` if given, else the file's own EPSG code."""
    file_epsg = frame.crs.to_epsg() if frame.crs is not None else None
    if crs:
        chosen = parse_crs(crs)
        if file_epsg is not None and parse_crs(f"EPSG:{file_epsg}") != chosen:
            warnings.append(f"{path.name} says EPSG:{file_epsg}; its coordinates were read as {chosen.name} (--crs)")
        return chosen
    if frame.crs is None:
        raise InvalidInput(f"{path}: no coordinate reference system; say which with --crs (e.g. --crs EPSG:4544)")
    if file_epsg is None:
        raise InvalidInput(f"{path}: its CRS has no EPSG code ({frame.crs.name}); say which it is with --crs")
    return parse_crs(f"EPSG:{file_epsg}")


def _to_lonlat(xy: npt.NDArray[np.float64], crs: InputCrs) -> npt.NDArray[np.float64]:
    lon, lat = to_wgs84_arrays(xy[:, 0], xy[:, 1], crs)
    return np.column_stack([lon, lat])


def invalid_geometries(frame: Any, layer: Layer) -> list[Problem]:
    """Return a located problem for every invalid geometry (GEOS names the place: "Self-intersection[x y]")."""
    problems = []
    geometry = np.asarray(frame.geometry.values, dtype=object)
    for index in np.flatnonzero(~shapely.is_valid(geometry)):
        reason = str(shapely.is_valid_reason(geometry[index]))
        code = _code_text(frame["code"].iloc[index]) if "code" in frame.columns else f"feature {index + 1}"
        where = _LOCATION.search(reason)
        lon, lat = (float(where.group(1)), float(where.group(2))) if where else (None, None)
        problems.append(
            Problem(
                "invalid_geometry",
                layer.name,
                (code,),
                f"{layer.label_zh} {code} 几何无效 invalid geometry: {reason}",
                lon,
                lat,
            )  # fmt: skip
        )
    return problems


# --- checks that no --force can pass --------------------------------------------------------------------


def _code_errors(conn: Connection, frame: Any, layer: Layer, previous: int | None) -> list[str]:
    """Return every reason the file's codes cannot be stored in the new generation."""
    errors: list[str] = []
    codes = [str(c) for c in frame["code"]] if "code" in frame.columns else []
    duplicates = sorted(code for code, count in Counter(codes).items() if count > 1)
    if duplicates:
        errors.append(f"codes appear twice: {', '.join(duplicates[:10])}")
    digits = CODE_DIGITS.get(layer.name)
    if digits:
        bad = [c for c in codes if not re.fullmatch(rf"[0-9]{{{digits}}}", c)]
        if bad:
            errors.append(f"codes that are not {digits} digits (CJ/T 213): {', '.join(bad[:10])}")
    if layer.name in PARENTS:
        parent_name, parent_key = PARENTS[layer.name]
        parent_digits = CODE_DIGITS[parent_name]
        mismatched = [c for c, p in zip(codes, frame[parent_key], strict=True) if c[:parent_digits] != str(p)]
        if mismatched:
            errors.append(f"codes that do not start with their {parent_key}: {', '.join(mismatched[:10])}")
        parent = _table(parent_name)
        existing = set(conn.execute(select(parent.c.code).where(parent.c.generation == previous)).scalars())
        missing = sorted({str(p) for p in frame[parent_key]} - existing)
        if missing:
            errors.append(f"{parent_key} not among the current {parent_name}: {', '.join(missing[:10])}")
    child = next((name for name, (parent_name, _) in PARENTS.items() if parent_name == layer.name), None)
    if child is not None and previous is not None:
        child_table = _table(child)
        key = PARENTS[child][1]
        orphans = conn.execute(
            select(child_table.c.code)
            .where(child_table.c.generation == previous, child_table.c[key].not_in(codes or [""]))
            .order_by(child_table.c.code)
        ).scalars().all()  # fmt: skip
        if orphans:
            errors.append(
                f"current {child} would lose their {SINGULAR[layer.name]}: {', '.join(orphans[:10])}"
                + (f" (and {len(orphans) - 10} more)" if len(orphans) > 10 else "")
                + f"; keep those codes in the file, or import {child} first"
            )
    return errors


def _table(name: str) -> Table:
    return {layer.name: layer.table for layer in LEVELS}[name]


# --- the new generation ---------------------------------------------------------------------------------


def import_boundaries(
    conn: Connection,
    layer_name: str,
    path: Path,
    *,
    crs: str | None = None,
    fields: Mapping[str, str] | None = None,
    force: bool = False,
    label: str | None = None,
    valid_from: datetime | None = None,
    min_area_m2: float = DEFAULT_MIN_AREA_M2,
    replace: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Import ``path`` as ``layer_name`` inside the caller's transaction and return the report.

    Boundary levels become a new generation (refused with BoundaryProblems when the topology has problems,
    unless ``force``); streets are upserted (``replace`` also removes streets missing from the file). The
    caller commits, or rolls back for a dry run. ``encoding`` forces a Shapefile's text encoding. A
    ``valid_from`` without a time zone (a date, say) is Beijing time (+08:00).
    """
    if layer_name not in IMPORTABLE:
        raise InvalidInput(f"cannot import {layer_name!r}: import one of {', '.join(IMPORTABLE)}")
    if layer_name == "streets":
        return _import_streets(conn, path, crs=crs, fields=fields, replace=replace, encoding=encoding)
    layer = next(level for level in LEVELS if level.name == layer_name)
    frame, warnings = read_boundary_file(path, layer, crs=crs, fields=fields, encoding=encoding)
    report = ImportReport(layer=layer_name, source=path.name, features=len(frame), warnings=warnings, forced=force)
    report.problems.extend(invalid_geometries(frame, layer))

    previous, previous_from = _latest_generation(conn)
    if valid_from is not None and valid_from.tzinfo is None:
        valid_from = valid_from.replace(tzinfo=BEIJING)
    start = valid_from or conn.execute(select(func.now())).scalar_one()
    if previous_from is not None and start <= previous_from:
        raise InvalidInput(
            f"valid_from {start.isoformat()} is not after generation {previous}'s start {previous_from.isoformat()}"
        )
    errors = _code_errors(conn, frame, layer, previous)
    if errors:
        raise InvalidInput(f"{path.name}: {'; '.join(errors)}", detail={"errors": errors})
    generation = (previous or 0) + 1
    frame["generation"] = generation
    batch = check_frame(layer, frame, path, make_valid=True)

    _open_generation(conn, generation, previous, start, label or f"导入{layer.label_zh} {path.name}", path.name)
    for level in LEVELS:
        if level.name == layer_name:
            load_rows(conn, batch)
        elif previous is not None:
            _copy_level(conn, level, previous, generation)
    report.problems.extend(check_topology(conn, generation, min_area_m2=min_area_m2))
    report.generation, report.previous_generation, report.valid_from = generation, previous, start
    if previous is not None:
        report.changes, report.unchanged = _boundary_diff(conn, layer, previous, generation)
    else:
        report.changes = [Change(str(c), "added", "", None, None, None) for c in frame["code"]]
    report.warnings.extend(_grids_without_member(conn, generation, start))
    if report.problems and not force:
        raise BoundaryProblems(report)
    if report.problems:
        table = generations.table
        problems = [p.as_dict() for p in report.problems]
        conn.execute(update(table).where(table.c.generation == generation).values(problems=problems))
    return report


def _latest_generation(conn: Connection) -> tuple[int | None, datetime | None]:
    table = generations.table
    row = conn.execute(
        select(table.c.generation, table.c.valid_from, table.c.valid_to).order_by(table.c.valid_from.desc()).limit(1)
    ).first()
    if row is None:
        return None, None
    if row.valid_to is not None:
        raise InvalidInput(
            f"the latest boundary generation {row.generation} already ends at {row.valid_to.isoformat()}: "
            "an import continues an open-ended generation"
        )
    return row.generation, row.valid_from


def _open_generation(
    conn: Connection, generation: int, previous: int | None, start: datetime, label: str, source: str
) -> None:
    """Close the previous generation where the new one starts, and record the new one."""
    table = generations.table
    if previous is not None:
        conn.execute(update(table).where(table.c.generation == previous).values(valid_to=start))
    conn.execute(insert(table).values(generation=generation, label=label, valid_from=start, source=source))


def _copy_level(conn: Connection, level: Layer, previous: int, generation: int) -> None:
    """Copy one boundary level's rows from the previous generation into the new one (one INSERT … SELECT)."""
    table = level.table
    names = [c.name for c in table.columns if c.name not in ("generation", "geom_m")]
    rows = select(literal(generation), *(table.c[n] for n in names)).where(table.c.generation == previous)
    conn.execute(insert(table).from_select(["generation", *names], rows))


# --- topology -------------------------------------------------------------------------------------------


def _area(geom: ColumnElement[Any]) -> ColumnElement[float]:
    return func.ST_Area(func.ST_Transform(geom, 4544))


def check_topology(conn: Connection, generation: int, *, min_area_m2: float = DEFAULT_MIN_AREA_M2) -> list[Problem]:
    """Return every overlap, gap and overhang larger than ``min_area_m2`` in a generation, located and measured.

    Overlaps: two features of one level whose interiors meet. Gaps: parts of a parent its children do not
    cover, and holes in the union of the subdistricts. Overhangs: parts of a child outside its parent.
    """
    problems: list[Problem] = []
    for level in LEVELS:
        problems += _overlaps(conn, level, generation, min_area_m2)
        if level.name in PARENTS:
            parent = next(p for p in LEVELS if p.name == PARENTS[level.name][0])
            problems += _gaps(conn, parent, level, generation, min_area_m2)
            problems += _outside(conn, parent, level, generation, min_area_m2)
    problems += _holes(conn, generation, min_area_m2)
    return problems


def _pieces_over(conn: Connection, pieces: Any, min_area_m2: float, *codes: str) -> list[Any]:
    area = _area(pieces.c.geom)
    point = func.ST_PointOnSurface(pieces.c.geom)
    query = (
        select(*(pieces.c[c] for c in codes), area.label("area_m2"), func.ST_X(point).label("lon"),
               func.ST_Y(point).label("lat"))
        .where(area > min_area_m2)
        .order_by(*(pieces.c[c] for c in codes))
    )  # fmt: skip
    return list(conn.execute(query))


def _overlaps(conn: Connection, level: Layer, generation: int, min_area_m2: float) -> list[Problem]:
    a, b = level.table.alias("a"), level.table.alias("b")
    shared = func.ST_CollectionExtract(func.ST_Intersection(a.c.geom, b.c.geom), 3)
    pairs = (
        select(a.c.code.label("a"), b.c.code.label("b"), func.ST_Dump(shared).geom.label("geom"))
        .where(a.c.generation == generation, b.c.generation == generation, a.c.code < b.c.code)
        .where(func.ST_Intersects(a.c.geom, b.c.geom), ~func.ST_Touches(a.c.geom, b.c.geom))
        .cte("overlap_pieces")
    )
    return [
        Problem(
            "overlap",
            level.name,
            (row.a, row.b),
            f"{level.label_zh} {row.a} 与 {row.b} 重叠 overlap {row.area_m2:.2f} m² at ({row.lon:.7f}, {row.lat:.7f})",
            row.lon,
            row.lat,
            round(row.area_m2, 2),
        )  # fmt: skip
        for row in _pieces_over(conn, pairs, min_area_m2, "a", "b")
    ]


def _gaps(conn: Connection, parent: Layer, child: Layer, generation: int, min_area_m2: float) -> list[Problem]:
    p, c = parent.table.alias("p"), child.table.alias("c")
    key = PARENTS[child.name][1]
    covered = (
        select(c.c[key].label("parent"), func.ST_Union(c.c.geom).label("geom"))
        .where(c.c.generation == generation)
        .group_by(c.c[key])
        .cte("covered")
    )
    empty = func.ST_GeomFromText("POLYGON EMPTY", 4326)
    uncovered = func.ST_CollectionExtract(func.ST_Difference(p.c.geom, func.coalesce(covered.c.geom, empty)), 3)
    pieces = (
        select(p.c.code.label("code"), func.ST_Dump(uncovered).geom.label("geom"))
        .select_from(p.outerjoin(covered, covered.c.parent == p.c.code))
        .where(p.c.generation == generation)
        .cte("gap_pieces")
    )
    return [
        Problem(
            "gap",
            child.name,
            (row.code,),
            f"{parent.label_zh} {row.code} 内有{child.label_zh}未覆盖的空隙 gap {row.area_m2:.2f} m² "
            f"at ({row.lon:.7f}, {row.lat:.7f})",
            row.lon,
            row.lat,
            round(row.area_m2, 2),
        )  # fmt: skip
        for row in _pieces_over(conn, pieces, min_area_m2, "code")
    ]


def _outside(conn: Connection, parent: Layer, child: Layer, generation: int, min_area_m2: float) -> list[Problem]:
    p, c = parent.table.alias("p"), child.table.alias("c")
    key = PARENTS[child.name][1]
    overhang = func.ST_CollectionExtract(func.ST_Difference(c.c.geom, p.c.geom), 3)
    pieces = (
        select(c.c.code.label("code"), p.c.code.label("parent"), func.ST_Dump(overhang).geom.label("geom"))
        .select_from(c.join(p, and_(p.c.generation == c.c.generation, p.c.code == c.c[key])))
        .where(c.c.generation == generation, ~func.ST_CoveredBy(c.c.geom, p.c.geom))
        .cte("outside_pieces")
    )
    return [
        Problem(
            "outside_parent",
            child.name,
            (row.code, row.parent),
            f"{child.label_zh} {row.code} 超出所属{parent.label_zh} {row.parent} outside its {SINGULAR[parent.name]} "
            f"{row.area_m2:.2f} m² at ({row.lon:.7f}, {row.lat:.7f})",
            row.lon,
            row.lat,
            round(row.area_m2, 2),
        )  # fmt: skip
        for row in _pieces_over(conn, pieces, min_area_m2, "code", "parent")
    ]


def _holes(conn: Connection, generation: int, min_area_m2: float) -> list[Problem]:
    """Return holes in the union of the subdistricts: land inside the city that no subdistrict covers."""
    s = subdistricts.table
    union = select(func.ST_Dump(func.ST_Union(s.c.geom)).geom.label("geom")).where(s.c.generation == generation)
    parts = union.cte("city_parts")
    filled = func.ST_MakePolygon(func.ST_ExteriorRing(parts.c.geom))
    holes = func.ST_CollectionExtract(func.ST_Difference(filled, parts.c.geom), 3)
    pieces = select(literal("city").label("code"), func.ST_Dump(holes).geom.label("geom")).cte("hole_pieces")
    return [
        Problem(
            "hole",
            "subdistricts",
            (),
            f"街道之间的空洞 hole between subdistricts {row.area_m2:.2f} m² at ({row.lon:.7f}, {row.lat:.7f})",
            row.lon,
            row.lat,
            round(row.area_m2, 2),
        )  # fmt: skip
        for row in _pieces_over(conn, pieces, min_area_m2, "code")
    ]


# --- the difference -------------------------------------------------------------------------------------


def _boundary_diff(conn: Connection, layer: Layer, previous: int, generation: int) -> tuple[list[Change], int]:
    """Return added, removed and changed codes of a level between two generations, and the unchanged count."""
    t = layer.table
    parent_key = PARENTS.get(layer.name, (None, "name"))[1]
    old = select(t.c.code, t.c.name, t.c[parent_key].label("parent"), t.c.geom).where(t.c.generation == previous)
    new = select(t.c.code, t.c.name, t.c[parent_key].label("parent"), t.c.geom).where(t.c.generation == generation)
    o, n = old.subquery("o"), new.subquery("n")
    query = (
        select(
            func.coalesce(n.c.code, o.c.code).label("code"),
            o.c.name.label("old_name"), n.c.name.label("new_name"),
            o.c.parent.label("old_parent"), n.c.parent.label("new_parent"),
            _area(o.c.geom).label("before"), _area(n.c.geom).label("after"),
            _area(func.ST_SymDifference(o.c.geom, n.c.geom)).label("moved"),
        )
        .select_from(o.join(n, o.c.code == n.c.code, full=True))
        .order_by("code")
    )  # fmt: skip
    changes: list[Change] = []
    unchanged = 0
    for row in conn.execute(query):
        rounded = {k: None if getattr(row, k) is None else round(getattr(row, k), 2) for k in ("before", "after")}
        if row.old_name is None:
            changes.append(Change(row.code, "added", row.new_name, None, rounded["after"], None))
            continue
        if row.new_name is None:
            changes.append(Change(row.code, "removed", row.old_name, rounded["before"], None, None))
            continue
        notes = []
        if row.old_name != row.new_name:
            notes.append(f"renamed from {row.old_name}")
        if row.old_parent != row.new_parent and layer.name in PARENTS:
            notes.append(f"moved from {row.old_parent} to {row.new_parent}")
        if row.moved > CHANGE_TOLERANCE_M2 or notes:
            changes.append(
                Change(row.code, "changed", row.new_name, rounded["before"], rounded["after"], round(row.moved, 2),
                       "; ".join(notes))
            )  # fmt: skip
        else:
            unchanged += 1
    return changes, unchanged


def _grids_without_member(conn: Connection, generation: int, at: datetime) -> list[str]:
    """Return a warning naming the grids of a generation that have no grid member on duty at ``at``."""
    g, d = grids.table, organisation.duties_table
    on_duty = (
        select(d.c.target_code)
        .where(d.c.target_kind == "grid", d.c.role == "grid_member", d.c.valid_from <= at)
        .where(or_(d.c.valid_to.is_(None), d.c.valid_to > at))
    )
    missing = conn.execute(
        select(g.c.code).where(g.c.generation == generation, g.c.code.not_in(on_duty)).order_by(g.c.code)
    ).scalars().all()  # fmt: skip
    if not missing:
        return []
    listed = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
    return [f"{len(missing)} grid(s) have no grid member on duty: {listed}; add their duties"]


# --- streets --------------------------------------------------------------------------------------------


def _import_streets(
    conn: Connection,
    path: Path,
    *,
    crs: str | None,
    fields: Mapping[str, str] | None,
    replace: bool,
    encoding: str | None,
) -> ImportReport:
    """Upsert streets by code (they have no generation) and report what changed; ``replace`` drops the rest."""
    layer = streets.layer
    frame, warnings = read_boundary_file(path, layer, crs=crs, fields=fields, encoding=encoding)
    report = ImportReport(layer="streets", source=path.name, features=len(frame), warnings=warnings)
    report.problems.extend(invalid_geometries(frame, layer))
    if report.problems:
        raise BoundaryProblems(report)
    errors = _code_errors(conn, frame, layer, None)
    if errors:
        raise InvalidInput(f"{path.name}: {'; '.join(errors)}", detail={"errors": errors})
    batch = check_frame(layer, frame, path)
    t = layer.table
    conn.execute(
        text("CREATE TEMP TABLE previous_streets ON COMMIT DROP AS SELECT code, name, kind, geom FROM streets")
    )
    load_rows(conn, batch)
    codes = [str(c) for c in frame["code"]]
    if replace:
        conn.execute(t.delete().where(t.c.code.not_in(codes)))
    old = text("SELECT code, name, kind, geom FROM previous_streets").columns(
        t.c.code, t.c.name, t.c.kind, t.c.geom
    ).subquery("o")  # fmt: skip
    n = t.alias("n")
    query = (
        select(
            func.coalesce(n.c.code, old.c.code).label("code"), old.c.name.label("old_name"),
            n.c.name.label("new_name"), old.c.kind.label("old_kind"), n.c.kind.label("new_kind"),
            func.ST_HausdorffDistance(func.ST_Transform(old.c.geom, 4544), func.ST_Transform(n.c.geom, 4544))
            .label("moved"),
        )
        .select_from(old.join(n, old.c.code == n.c.code, full=True))
        .order_by("code")
    )  # fmt: skip
    for row in conn.execute(query):
        if row.old_name is None:
            report.changes.append(Change(row.code, "added", row.new_name, None, None, None))
        elif row.new_name is None:
            report.changes.append(Change(row.code, "removed", row.old_name, None, None, None))
        elif row.moved > 0.01 or row.old_name != row.new_name or row.old_kind != row.new_kind:
            report.changes.append(Change(row.code, "changed", row.new_name, None, None, round(row.moved, 2)))
        else:
            report.unchanged += 1
    return report
