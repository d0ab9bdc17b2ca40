"""Statistically tested hotspots of incidents: Getis-Ord Gi* over H3 cells or over grids.

Incidents matching the filters are counted per cell; every cell of the study area takes part, empty ones
included (a hotspot is only hot against its surroundings). Gi* (esda.G_Local, star=True, binary weights:
a cell and its ring of neighbours) gives a z-score per cell. Bins follow ArcGIS's ``Gi_Bin`` convention:
the two-sided p-value of the z-score, the false discovery rate controlled (Benjamini-Hochberg, ``esda.fdr``),
±3 = 99 %, ±2 = 95 %, ±1 = 90 % confidence, the sign from the z-score, 0 = not significant.

Each cell also carries esda's conditional-permutation pseudo p-value (``p_sim``). It is reported, not used
for the bins: Gi* holds the focal cell's own count fixed in every permutation, so a cell whose own count
makes it hot can never look extreme against its permutations (measured on the fixture: the busiest planted
cell, 116 reports against a background of ≈9, gets p_sim ≈ 0.001 at best, which no FDR level at 99 % admits
over 390 cells), while its z-score is 5.0.
"""

from __future__ import annotations

import io
import itertools
import queue
import re
import struct
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import h3
import numpy as np
import numpy.typing as npt
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from spatial.changes import VersionedCache, incidents_version
from spatial.errors import InvalidInput

if TYPE_CHECKING:
    import libpysal


def load_statistics() -> None:
    """Import esda and libpysal now: seconds of imports that the Gi* code otherwise pays on its first call.

    They are imported where used, so that a command that only counts cells (a bulk import's map counts) does
    not pay for them; a server calls this once at start instead of making its first hotspot request wait.
    """
    import esda  # noqa: F401
    import libpysal  # noqa: F401


CONFIDENCE_LEVELS = ((3, 0.01), (2, 0.05), (1, 0.10))  # Gi_Bin: 99 %, 95 %, 90 %
DEFAULT_PERMUTATIONS = 999
SEED = 20170630


@dataclass(frozen=True)
class Filters:
    """Which incidents count: catalogue item or category, period, subdistrict, source, status."""

    item: str | None = None
    category: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    subdistrict: str | None = None
    source: str | None = None
    status: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """Return a SQL condition on ``incidents i`` and its bound parameters."""
        return conditions(
            (
                ("i.item_code", "=", self.item),
                ("left(i.item_code, 2)", "=", self.category),
                ("i.reported_at", ">=", self.date_from),
                ("i.reported_at", "<", self.date_to),
                ("i.subdistrict_code", "=", self.subdistrict),
                ("i.source", "=", self.source),
                ("i.status", "=", self.status),
            ),
            prefix="p",
        )


def conditions(terms: Iterable[tuple[str, str, Any]], *, prefix: str) -> tuple[str, dict[str, Any]]:
    """Return ``column op :name`` for each (column, op, value) whose value is given, ANDed, and the bound values.

    Columns and operators are ours; only values are bound, named ``prefix`` and a number, so that conditions made
    with different prefixes can share one statement.
    """
    clauses = ["TRUE"]
    params: dict[str, Any] = {}
    for column, op, value in terms:
        if value is not None:
            name = f"{prefix}{len(params)}"
            clauses.append(f"{column} {op} :{name}")
            params[name] = value
    return " AND ".join(clauses), params


@dataclass
class Cells:
    """An aggregation: cell ids, their incident counts, polygons (GeoJSON), and their neighbours."""

    ids: list[str]
    counts: npt.NDArray[np.float64]
    polygons: list[dict[str, Any]]
    neighbours: dict[int, list[int]]

    def weights(self) -> libpysal.weights.W:
        """Return binary contiguity weights (Gi* adds each cell to its own neighbourhood)."""
        import libpysal  # see load_statistics

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # islands are reported by libpysal as a warning; Gi* handles them
            return libpysal.weights.W(self.neighbours, silence_warnings=True)


@dataclass
class Hotspot:
    """Gi* of one cell."""

    cell: str
    count: int
    z: float
    p_sim: float
    p_value: float
    gi_bin: int


@dataclass
class Points:
    """Incidents as coordinate arrays; ``in_view``: whether each lies in the view asked for (``geom && view``)."""

    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    in_view: npt.NDArray[np.bool_] | None = None


def parse_cell(cell: str) -> tuple[str, int]:
    """Return ("h3", resolution) or ("grid", 0) for ``h3:<res>`` or ``grid``; refuse anything else."""
    if cell == "grid":
        return "grid", 0
    if cell.startswith("h3:") and cell[3:].isdigit() and 5 <= int(cell[3:]) <= 11:
        return "h3", int(cell[3:])
    raise InvalidInput(f"cell={cell!r} is not understood: use h3:<5..11> (e.g. h3:9, cells of ≈0.1 km²) or grid")


def aggregate_h3(
    conn: Connection,
    filters: Filters,
    resolution: int,
    generation: int,
    per_cell: dict[int, int] | None = None,
) -> Cells:
    """Count incidents per H3 cell over every cell that touches the grids of ``generation``.

    ``per_cell``: the incidents matching ``filters`` per H3 cell (as an integer) when the caller has counted
    them (from points it read, or spatial.map_counts); otherwise they are read and counted here.
    """
    area = conn.execute(
        text("SELECT ST_AsGeoJSON(ST_Union(geom)) FROM grids WHERE generation = :g"), {"g": generation}
    ).scalar_one()
    if area is None:
        raise InvalidInput(f"boundary generation {generation} has no grids")
    study = h3.geo_to_cells(_geojson(area), resolution)
    # Cells whose centre falls just outside the grids still hold incidents near the edge: add their ring.
    cells = sorted(set(study) | {n for c in study for n in h3.grid_disk(c, 1)})
    index = {c: k for k, c in enumerate(cells)}
    counts = np.zeros(len(cells))
    if per_cell is None:
        points = read_points(conn, filters)
        per_cell = count_points_per_cell(points.lat, points.lon, resolution)
    for cell_int, n in per_cell.items():
        k = index.get(h3.int_to_str(cell_int))
        if k is not None:
            counts[k] += n
    neighbours = {k: [index[n] for n in h3.grid_disk(c, 1) if n != c and n in index] for c, k in index.items()}
    polygons = [_h3_polygon(c) for c in cells]
    return Cells(ids=cells, counts=counts, polygons=polygons, neighbours=neighbours)


SPLIT_PAGES = 2_000  # a table larger than this (16 MB) is read in parts on two connections at once
PARTS = 8


def read_points(
    conn: Connection,
    filters: Filters,
    *,
    view: tuple[float, float, float, float] | None = None,
    split_pages: int = SPLIT_PAGES,
) -> Points:
    """Return lon and lat of the incidents matching ``filters`` as arrays, and which lie in ``view`` if given.

    ``view`` (west, south, east, north) is tested by PostgreSQL with the ``&&`` that ``/v1/heat`` filters by,
    so a heat map made from these points counts exactly what that query counts.

    PostgreSQL packs the coordinates into one bytea per answer to ``&&`` (float8send: 16 bytes a point),
    read straight into numpy: a row per point cost more in PostgreSQL's output and Python's COPY loop than
    the scan itself. A table of more than ``split_pages`` pages is read in parts (ranges of its pages) on two
    connections of ``conn``'s engine at once; they share one snapshot (``pg_export_snapshot``), so the parts
    add up to exactly what one statement reads.
    """
    where, params = filters.where()
    in_view = "true"
    if view is not None:
        in_view = "i.geom && ST_MakeEnvelope(%(west)s, %(south)s, %(east)s, %(north)s, 4326)"
        params = {**params, "west": view[0], "south": view[1], "east": view[2], "north": view[3]}
    # COPY takes no bound parameters, so psycopg2 quotes them into the statement (mogrify).
    statement = (
        f"COPY (SELECT {in_view}, string_agg(float8send(ST_X(i.geom)) || float8send(ST_Y(i.geom)), '')"
        " FROM incidents i WHERE "
        + re.sub(r":(p\d+)\b", r"%(\1)s", where.replace("%", "%%"))
        + "{part} GROUP BY 1) TO STDOUT (FORMAT binary)"
    )
    pages = conn.execute(text("SELECT pg_relation_size('incidents') / current_setting('block_size')::int")).scalar_one()
    if pages <= split_pages:
        data = [_copy(conn, statement.format(part=""), params)]
    else:
        data = _copy_in_parts(conn.engine, statement, params, pages=pages)
    packed: dict[bool, list[npt.NDArray[np.float64]]] = {True: [], False: []}
    for flag, xy in (row for d in data for row in _bool_bytea_rows(d)):
        packed[flag].append(np.frombuffer(xy, dtype=">f8").reshape(-1, 2))
    inside, outside = (np.concatenate(packed[flag] or [np.empty((0, 2))]) for flag in (True, False))
    points = np.concatenate([inside, outside]).astype(float)
    flags = np.concatenate([np.ones(len(inside), dtype=bool), np.zeros(len(outside), dtype=bool)])
    return Points(points[:, 0].copy(), points[:, 1].copy(), flags if view is not None else None)


def _bool_bytea_rows(data: bytes) -> list[tuple[bool, bytes]]:
    """Return the (boolean, bytea) rows of a binary COPY: signature and flags (19 bytes), rows, trailer (-1)."""
    rows: list[tuple[bool, bytes]] = []
    at = 19
    while True:
        (fields,) = struct.unpack_from(">h", data, at)
        if fields == -1:
            return rows
        flag_length, flag, length = struct.unpack_from(">i?i", data, at + 2)
        assert fields == 2 and flag_length == 1 and length >= 0
        rows.append((flag, bytes(data[at + 11 : at + 11 + length])))
        at += 11 + length


def _copy(conn: Connection, statement: str, params: dict[str, Any]) -> bytes:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cursor: Any = dbapi.cursor()  # psycopg2's: mogrify and copy_expert are not in the DB-API
    try:
        buffer = io.BytesIO()
        cursor.copy_expert(cursor.mogrify(statement, params), buffer)
    finally:
        cursor.close()
    return buffer.getvalue()


def _copy_in_parts(engine: Engine, statement: str, params: dict[str, Any], *, pages: int) -> list[bytes]:
    """Run ``statement`` over eight ranges of the table's pages, on two connections at once, in one snapshot.

    Eight ranges, taken in turn by whichever connection is free, because live rows are not spread evenly over
    the pages (an UPDATE writes new row versions at the end, VACUUM leaves the old pages half empty).
    """
    bounds = [pages * k // PARTS for k in range(1, PARTS)]
    ranges = [f" AND i.ctid < '({bounds[0]},0)'::tid"]
    ranges += [f" AND i.ctid >= '({a},0)'::tid AND i.ctid < '({b},0)'::tid" for a, b in itertools.pairwise(bounds)]
    # Rows written after the page count was read land in later pages: the last range is open-ended.
    ranges.append(f" AND i.ctid >= '({bounds[-1]},0)'::tid")
    pending = queue.SimpleQueue[str]()
    for part in ranges:
        pending.put(statement.format(part=part))
    # A snapshot can be shared only between transactions that keep one: REPEATABLE READ. Both roll back.
    repeatable = engine.execution_options(isolation_level="REPEATABLE READ")
    with repeatable.connect() as one, repeatable.connect() as two:
        snapshot = one.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        two.execute(text("SET TRANSACTION SNAPSHOT :snapshot"), {"snapshot": snapshot})

        def drain(conn: Connection) -> list[bytes]:
            done = []
            while True:
                try:
                    done.append(_copy(conn, pending.get_nowait(), params))
                except queue.Empty:
                    return done

        with ThreadPoolExecutor(max_workers=1) as pool:
            other = pool.submit(drain, two)
            return drain(one) + other.result()


# H3 cells of many points at once. In the plane of a gnomonic projection (the one H3 draws each icosahedron
# face in) the cells of one resolution are a regular hexagonal lattice with straight edges; a gnomonic plane
# tangent at our own origin maps onto H3's by a projective transformation, which keeps lines straight. So
# we fit that transformation once on cell centres around the origin (their local IJ coordinates are lattice
# coordinates), round every point to its nearest lattice hexagon in numpy, and let h3 itself decide every
# point within EDGE_MARGIN of an edge, and every point of a cell whose corners do not land where the
# lattice puts them (a cell cut by a face edge, a pentagon). The answer equals h3.latlng_to_cell per point
# (tests/api/test_hotspots.py checks it on the fixture, on points on cell edges and corners, and at each
# resolution); a million points take ~0.2 s instead of ~1 s.
EDGE_MARGIN = 1e-6  # in hexagon spacings (≈0.3 mm at resolution 9), far above the fit's rounding error
_SQRT3 = float(np.sqrt(3.0))
_NORMALS = np.array([[1.0, 0.0], [0.5, _SQRT3 / 2], [-0.5, _SQRT3 / 2]])  # towards three of six neighbours
_CORNERS = np.array([[np.cos(a), np.sin(a)] for a in np.radians([30, 90, 150, 210, 270, 330])]) / _SQRT3


def _gnomonic(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], lat0: float, lon0: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    phi, dlam, phi0 = np.radians(lat), np.radians(lon - lon0), np.radians(lat0)
    cos_c = np.sin(phi0) * np.sin(phi) + np.cos(phi0) * np.cos(phi) * np.cos(dlam)
    x = np.cos(phi) * np.sin(dlam) / cos_c
    y = (np.cos(phi0) * np.sin(phi) - np.sin(phi0) * np.cos(phi) * np.cos(dlam)) / cos_c
    return x, y


def _lattice_xy(i: Any, j: Any) -> tuple[Any, Any]:
    """Return the plane position of lattice point (i, j): H3's IJ axes are 120° apart, neighbours 1 apart."""
    return i - j / 2, j * _SQRT3 / 2


class _Projective:
    """A projective transformation of the plane, fitted by least squares to point pairs."""

    def __init__(self, x: Any, y: Any, u: Any, v: Any) -> None:
        zero, one = np.zeros_like(x), np.ones_like(x)
        rows = np.concatenate([np.stack([x, y, one, zero, zero, zero, -u * x, -u * y], axis=1),
                               np.stack([zero, zero, zero, x, y, one, -v * x, -v * y], axis=1)])  # fmt: skip
        solution = np.linalg.lstsq(rows, np.concatenate([u, v]), rcond=None)[0]
        self.m = np.append(solution, 1.0).reshape(3, 3)

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        m = self.m
        w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
        return (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w


def cells_of_points(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], resolution: int
) -> npt.NDArray[np.uint64]:
    """Return the H3 cell (as an integer) of each point: what ``h3.latlng_to_cell`` gives, point by point."""
    exact = h3.api.basic_int.latlng_to_cell
    if len(lat) < _FEW_POINTS:
        return np.array([exact(a, b, resolution) for a, b in zip(lat.tolist(), lon.tolist(), strict=True)],
                        dtype=np.uint64)  # fmt: skip
    cells = np.zeros(len(lat), dtype=np.uint64)
    slot, cell_of_slot = _lattice_slots(lat, lon, resolution)
    placed = slot >= 0
    cells[placed] = cell_of_slot[slot[placed]]
    for k in np.flatnonzero(cells == 0).tolist():  # near an edge, or a cell the lattice does not describe
        cells[k] = exact(float(lat[k]), float(lon[k]), resolution)
    return cells


def count_points_per_cell(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], resolution: int
) -> dict[int, int]:
    """Return how many points each H3 cell (as an integer) holds: ``cells_of_points`` counted, without sorting."""
    if len(lat) < _FEW_POINTS:
        found, n = np.unique(cells_of_points(lat, lon, resolution), return_counts=True)
        return dict(zip(found.tolist(), n.tolist(), strict=True))
    slot, cell_of_slot = _lattice_slots(lat, lon, resolution)
    placed = slot >= 0
    per_slot = np.bincount(slot[placed], minlength=len(cell_of_slot))
    described = cell_of_slot != 0
    counts = dict(zip(cell_of_slot[described].tolist(), per_slot[described].tolist(), strict=True))
    exact = h3.api.basic_int.latlng_to_cell
    undecided = np.flatnonzero(~placed | ~described[np.maximum(slot, 0)])
    for k in undecided.tolist():
        cell = exact(float(lat[k]), float(lon[k]), resolution)
        counts[cell] = counts.get(cell, 0) + 1
    return {cell: n for cell, n in counts.items() if n}


_FEW_POINTS = 1_000  # below this, h3 itself places each point: the lattice's set-up costs more
_CHUNK = 1 << 16  # points projected at a time: arrays that stay in the CPU's cache, not a gigabyte of temporaries


def _lattice_slots(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], resolution: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """Return each point's lattice hexagon (a slot; -1 within EDGE_MARGIN of an edge) and each slot's cell.

    A slot's cell is 0 where the lattice hexagon does not describe an H3 cell (see above): its points, like
    those at -1, are for h3 itself to place.
    """
    origin = h3.latlng_to_cell(float(lat.min() + lat.max()) / 2, float(lon.min() + lon.max()) / 2, resolution)
    lat0, lon0 = h3.cell_to_latlng(origin)
    around = h3.grid_disk(origin, 6)
    ij = np.array([h3.cell_to_local_ij(origin, c) for c in around], dtype=float)
    centres = np.array([h3.cell_to_latlng(c) for c in around])
    cx, cy = _gnomonic(centres[:, 0], centres[:, 1], lat0, lon0)
    scale = float(np.abs(np.concatenate([cx, cy])).max())
    to_lattice = _Projective(cx / scale, cy / scale, *_lattice_xy(ij[:, 0], ij[:, 1]))

    n = len(lat)
    i_all, j_all, sure = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        gx, gy = _gnomonic(lat[part], lon[part], lat0, lon0)
        px, py = to_lattice(gx / scale, gy / scale)
        # Nearest lattice point: cube rounding in axial coordinates q = i - j, r = j.
        r = py * 2 / _SQRT3
        q = px + r / 2 - r
        s = -q - r
        rq, rr, rs = np.round(q), np.round(r), np.round(s)
        dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
        fix_q = (dq > dr) & (dq > ds)
        rq = np.where(fix_q, -rr - rs, rq)
        rr = np.where(~fix_q & (dr > ds), -rq - rs, rr)
        i, j = (rq + rr).astype(np.int64), rr.astype(np.int64)
        hx, hy = _lattice_xy(i, j)
        ox, oy = px - hx, py - hy
        farthest = np.abs(ox)  # the offset towards the nearest edge, along each pair of opposite normals
        for nx, ny in _NORMALS[1:]:
            np.maximum(farthest, np.abs(ox * nx + oy * ny), out=farthest)
        i_all[part], j_all[part], sure[part] = i, j, 0.5 - farthest > EDGE_MARGIN

    # Each lattice hexagon in use: its cell, if the cell's corners sit on the hexagon's.
    i0, j0 = int(i_all.min()), int(j_all.min())
    width = int(j_all.max()) - j0 + 1
    slot = (i_all - i0) * width + (j_all - j0)
    used = np.flatnonzero(np.bincount(slot[sure], minlength=1))
    cell_of_slot = np.zeros(int(slot.max()) + 1, dtype=np.uint64)
    for k in used.tolist():
        li, lj = k // width + i0, k % width + j0
        try:
            cell = h3.local_ij_to_cell(origin, li, lj)
        except h3.H3BaseException:
            continue
        corners = np.array(h3.cell_to_boundary(cell))
        bx, by = to_lattice(*(v / scale for v in _gnomonic(corners[:, 0], corners[:, 1], lat0, lon0)))
        ex, ey = _lattice_xy(li, lj)
        ideal = _CORNERS + [ex, ey]
        misplaced = np.sqrt(((np.stack([bx, by], axis=1)[:, None, :] - ideal[None, :, :]) ** 2).sum(axis=2))
        if len(corners) == 6 and misplaced.min(axis=1).max() < EDGE_MARGIN / 10:
            cell_of_slot[k] = h3.str_to_int(cell)
    slot[~sure] = -1
    return slot, cell_of_slot


def aggregate_grids(conn: Connection, filters: Filters, generation: int) -> Cells:
    """Count incidents per grid of ``generation``; neighbours are grids that share an edge or a corner."""
    where, params = filters.where()
    rows = conn.execute(
        text(
            f"SELECT g.code, ST_AsGeoJSON(g.geom, 7) AS geometry, count(i.id) AS n FROM grids g "
            f"LEFT JOIN incidents i ON i.grid_code = g.code AND {where} "
            "WHERE g.generation = :generation GROUP BY g.code, g.geom ORDER BY g.code"
        ),
        {**params, "generation": generation},
    ).all()
    ids = [r.code for r in rows]
    index = {c: k for k, c in enumerate(ids)}
    neighbours: dict[int, list[int]] = {k: [] for k in range(len(ids))}
    pairs = conn.execute(
        text(
            "SELECT a.code, b.code FROM grids a JOIN grids b ON a.generation = b.generation AND a.code < b.code"
            " AND ST_Intersects(a.geom_m, ST_Buffer(b.geom_m, 0.01)) WHERE a.generation = :generation"
        ),
        {"generation": generation},
    ).all()
    for a, b in pairs:
        neighbours[index[a]].append(index[b])
        neighbours[index[b]].append(index[a])
    return Cells(
        ids=ids,
        counts=np.array([r.n for r in rows], dtype=float),
        polygons=[_geojson(r.geometry) for r in rows],
        neighbours=neighbours,
    )


def gi_star(cells: Cells, *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = SEED) -> list[Hotspot]:
    """Return Gi* per cell with permutation p-values and FDR-corrected Gi_Bin."""
    if len(cells.ids) < 3:
        raise InvalidInput("too few cells for a hotspot analysis: widen the area or use smaller cells")
    if cells.counts.sum() == 0:
        return [Hotspot(c, 0, 0.0, 1.0, 1.0, 0) for c in cells.ids]
    import esda  # see load_statistics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = esda.G_Local(
            cells.counts, cells.weights(), transform="B", permutations=permutations, star=True, seed=seed, n_jobs=1
        )
    z = np.asarray(g.Zs, dtype=float)
    p_sim = np.asarray(g.p_sim, dtype=float)
    p_two = np.minimum(1.0, 2.0 * np.asarray(g.p_norm, dtype=float))  # esda's p_norm is one-sided
    bins = gi_bins(z, p_two)
    return [
        Hotspot(cells.ids[k], int(cells.counts[k]), float(z[k]), float(p_sim[k]), float(p_two[k]), int(bins[k]))
        for k in range(len(cells.ids))
    ]


def gi_bins(z: npt.NDArray[np.float64], p_values: npt.NDArray[np.float64]) -> npt.NDArray[np.int_]:
    """Return ArcGIS-style Gi_Bin: ±3/±2/±1 where the FDR-corrected test passes at 99/95/90 %, else 0."""
    import esda  # see load_statistics

    bins = np.zeros(len(z), dtype=int)
    for level, alpha in reversed(CONFIDENCE_LEVELS):  # 90 % first, stronger levels overwrite
        threshold = esda.fdr(p_values, alpha)
        significant = p_values <= threshold
        bins[significant] = level * np.sign(z[significant]).astype(int)
    return bins


def feature_collection(cells: Cells, hotspots: list[Hotspot], *, cell: str) -> dict[str, Any]:
    """Return the hotspots as an RFC 7946 FeatureCollection, one feature per cell."""
    features = [
        {
            "type": "Feature",
            "id": h.cell,
            "geometry": polygon,
            "properties": {
                "cell": h.cell,
                "count": h.count,
                "z": round(h.z, 4),
                "p_sim": h.p_sim,
                "p_value": h.p_value,
                "gi_bin": h.gi_bin,
                "confidence": {3: 99, 2: 95, 1: 90, 0: 0}[abs(h.gi_bin)],
            },
        }
        for h, polygon in zip(hotspots, cells.polygons, strict=True)
    ]
    return {"type": "FeatureCollection", "cell": cell, "features": features}


_ANALYSES: VersionedCache[dict[str, Any]] = VersionedCache(size=32)


def analyse(
    conn: Connection,
    filters: Filters,
    *,
    cell: str,
    generation: int,
    permutations: int = DEFAULT_PERMUTATIONS,
    points: Points | None = None,
    counts: Callable[[], dict[int, int]] | None = None,
) -> dict[str, Any]:
    """Aggregate, compute Gi*, and return the GeoJSON answer of /v1/hotspots (reused until incidents change).

    ``points``: the incidents matching ``filters``, when the caller has read them (``read_points``) for
    something else too; H3 cells are counted from them instead of reading them again. ``counts``: how to have
    them counted per H3 cell without reading them (spatial.map_counts), when the caller knows it can.
    """
    kind, resolution = parse_cell(cell)

    def compute() -> dict[str, Any]:
        cells = (
            aggregate_grids(conn, filters, generation)
            if kind == "grid"
            else aggregate_h3(conn, filters, resolution, generation, _counted(resolution, points, counts))
        )
        return feature_collection(cells, gi_star(cells, permutations=permutations), cell=cell)

    key = (filters, cell, generation, permutations)
    return _ANALYSES.get(key, incidents_version(conn), compute)


def _counted(
    resolution: int, points: Points | None, counts: Callable[[], dict[int, int]] | None
) -> dict[int, int] | None:
    """Return the incidents per H3 cell from what the caller of ``analyse`` has, or None if it has neither."""
    if counts is not None:
        return counts()
    if points is not None:
        return count_points_per_cell(points.lat, points.lon, resolution)
    return None


def _geojson(text_value: str) -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads(text_value)
    return loaded


def _h3_polygon(cell: str) -> dict[str, Any]:
    ring = [[round(lng, 7), round(lat, 7)] for lat, lng in h3.cell_to_boundary(cell)]
    ring.append(ring[0])
    if _signed_area(ring) < 0:  # RFC 7946: exterior rings counter-clockwise
        ring.reverse()
    return {"type": "Polygon", "coordinates": [ring]}


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False)) / 2
