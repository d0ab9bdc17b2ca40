"""Incidents counted per map cell, kept up to date as they change: the map's default view without a million points.

``incident_map_counts`` (migration 0013) holds how many incidents share an H3 cell of resolution 9, a heat
cell of zoom 14, a month of ``reported_at`` (China Standard Time) and a status, subdistrict and source. Every
statement that writes incidents also writes, in its own transaction, one row per incident it added (+1) or
took away (-1) into ``incident_map_changes``; ``fold`` moves them into the counts. So the counts plus the
changes not yet folded, read in one statement (one snapshot), are what the incidents hold at that snapshot,
a hotline report a minute later included, and nothing needs computing again from the points when one arrives.

``read`` answers what ``/v1/heat`` and the hotspots' H3 counting answer, the same numbers, for the filters
the counts keep apart: period (whole months in UTC+8, or open), status, subdistrict and source, at zoom 14
or below and H3 resolution 9 (``serves``). Anything else (an item or category, a period that starts or ends
inside a month, a closer zoom) is counted from the points as before.

Heat at a zoom ``z`` ≤ 14 sums zoom-14 cells: a cell of zoom ``z`` is ``360 / 2^(z+4)`` degrees, a power of
two times the zoom-14 cell, so ``floor(x / cell_z)`` is exactly ``floor(x / cell_14) >> (14 - z)`` (IEEE
division by a power of two is exact). What lies in the view is PostgreSQL's ``geom && view`` on float4
boxes: cells wholly inside the view come from the counts, and the cells along its edges are counted from
the incidents themselves with that same test, so a view that cuts the city counts what ``/v1/heat`` counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from spatial.hotspots import Filters, _bool_bytea_rows, _copy, cells_of_points, conditions
from spatial.layers.incidents import heat_cell

HEAT_ZOOM = 14  # the map's default zoom (MapSettings.zoom): every zoom up to it is served
H3_RESOLUTION = 9  # the hotspots' default cell
CHINA = timezone(timedelta(hours=8))  # months are counted in China Standard Time, which keeps no summer time
FOLD_AT = 1_000  # changes a reader counts itself before it folds them into the counts first
_FOLD_LOCK = 20170630_11  # pg_advisory lock: one fold at a time
_EDGE_MARGIN = 1e-7  # degrees: a view's inner cells end this far inside it (far above rounding, far below a cell)


def months(filters: Filters) -> tuple[date | None, date | None] | None:
    """Return the first months in and after the period of ``filters``, or None if the counts cannot answer them.

    ``reported_at >= from`` is ``month >= from's month`` only when ``from`` is the start of a month in UTC+8;
    the same for ``to``. Items and categories are not kept apart in the counts.
    """
    if filters.item is not None or filters.category is not None:
        return None
    found: list[date | None] = []
    for moment in (filters.date_from, filters.date_to):
        if moment is None:
            found.append(None)
            continue
        if moment.tzinfo is None:
            return None
        local = moment.astimezone(CHINA)
        if (local.day, local.hour, local.minute, local.second, local.microsecond) != (1, 0, 0, 0, 0):
            return None
        found.append(local.date())
    return found[0], found[1]


def serves(filters: Filters, *, zoom: int | None = None, cell: str | None = None) -> bool:
    """Return whether the counts answer ``filters`` (and heat at ``zoom``, hotspots over ``cell``, if given)."""
    return (
        months(filters) is not None
        and (zoom is None or zoom <= HEAT_ZOOM)
        and (cell is None or cell == f"h3:{H3_RESOLUTION}")
    )


@dataclass
class Counted:
    """What ``read`` counted: incidents per H3 cell (as an integer) and the heat cells, each if asked for."""

    h3: dict[int, int] | None
    heat: list[list[float]] | None


def pending(conn: Connection, at_most: int = FOLD_AT + 1) -> int:
    """Return how many changes wait to be folded, counting up to ``at_most``."""
    return int(
        conn.execute(
            text("SELECT count(*) FROM (SELECT FROM incident_map_changes LIMIT :n) c"), {"n": at_most}
        ).scalar_one()
    )


def fold_if_due(conn: Connection) -> bool:
    """Fold the changes if more than FOLD_AT wait (more than a reader should count itself); return whether it did."""
    if pending(conn) > FOLD_AT:
        fold(conn.engine)
        return True
    return False


def read(
    conn: Connection,
    filters: Filters,
    *,
    h3_cells: bool = True,
    view: tuple[float, float, float, float] | None = None,
    zoom: int | None = None,
) -> Counted:
    """Count the incidents matching ``filters`` per H3 cell (``h3_cells``) and per heat cell of ``view`` at ``zoom``.

    One statement, so one snapshot: counts, changes not yet folded, and the incidents along the view's edges.
    """
    bounds = months(filters)
    if bounds is None or (view is not None and (zoom is None or zoom > HEAT_ZOOM)):
        raise ValueError(f"the map counts do not answer {filters} at zoom {zoom}: check serves() first")
    fold_if_due(conn)
    where, params = filters.where()  # conditions on "i": the changes carry the columns they name
    dims, dim_params = _dims(filters, bounds)
    params |= dim_params
    parts = ["SELECT 2 AS part, NULL::bigint AS h3, NULL::int AS gx, NULL::int AS gy, i.x, i.y, i.sign::bigint AS n"
             f" FROM incident_map_changes i WHERE {where}"]  # fmt: skip
    if h3_cells:
        parts.append(
            f"SELECT 0, c.h3, NULL, NULL, NULL, NULL, sum(c.n) FROM incident_map_counts c WHERE {dims} GROUP BY c.h3"
        )
    block = None
    if view is not None and zoom is not None:
        cell = heat_cell(zoom)
        block = _inner_block(view, cell)
        params |= {"cell": cell, "west": view[0], "south": view[1], "east": view[2], "north": view[3]}
        edges = "TRUE"
        if block is not None:
            x0, x1, y0, y1 = block
            shift = HEAT_ZOOM - zoom
            parts.append(
                "SELECT 1, NULL, c.gx >> :shift, c.gy >> :shift, NULL, NULL, sum(c.n) FROM incident_map_counts c"
                f" WHERE {dims} AND c.gx BETWEEN :bx0 AND :bx1 AND c.gy BETWEEN :by0 AND :by1 GROUP BY 3, 4"
            )
            params |= {"shift": shift, "bx0": x0 << shift, "bx1": ((x1 + 1) << shift) - 1,
                       "by0": y0 << shift, "by1": ((y1 + 1) << shift) - 1,
                       "x0": x0, "x1": x1, "y0": y0, "y1": y1,
                       # the strips between the inner cells and the view's edges, for the index
                       "wx": x0 * cell + 1e-6, "ex": (x1 + 1) * cell - 1e-6,
                       "sy": y0 * cell + 1e-6, "ny": (y1 + 1) * cell - 1e-6}  # fmt: skip
            edges = (
                "(i.geom && ST_MakeEnvelope(:west, :south, :wx, :north, 4326)"
                " OR i.geom && ST_MakeEnvelope(:ex, :south, :east, :north, 4326)"
                " OR i.geom && ST_MakeEnvelope(:west, :south, :east, :sy, 4326)"
                " OR i.geom && ST_MakeEnvelope(:west, :ny, :east, :north, 4326))"
                " AND NOT (floor(ST_X(i.geom) / :cell) BETWEEN :x0 AND :x1"
                " AND floor(ST_Y(i.geom) / :cell) BETWEEN :y0 AND :y1)"
            )
        # The cells the inner block leaves out, from the incidents, as /v1/heat counts them.
        parts.append(
            "SELECT 3, NULL, floor(ST_X(i.geom) / :cell)::int, floor(ST_Y(i.geom) / :cell)::int, NULL, NULL,"
            " count(*) FROM incidents i WHERE i.geom && ST_MakeEnvelope(:west, :south, :east, :north, 4326)"
            f" AND {where} AND {edges} GROUP BY 3, 4"
        )
    rows = conn.execute(text(" UNION ALL ".join(parts)), params).all()

    changed = [r for r in rows if r.part == 2]
    x = np.array([r.x for r in changed], dtype=float)
    y = np.array([r.y for r in changed], dtype=float)
    sign = np.array([r.n for r in changed], dtype=np.int64)
    per_h3: dict[int, int] | None = None
    if h3_cells:
        per_h3 = defaultdict(int)
        for r in rows:
            if r.part == 0:
                per_h3[r.h3] += int(r.n)
        for cell_int, s in zip(cells_of_points(y, x, H3_RESOLUTION).tolist(), sign.tolist(), strict=True):
            per_h3[cell_int] += s
        per_h3 = {c: n for c, n in per_h3.items() if n}
    heat = None
    if view is not None and zoom is not None:
        cell = heat_cell(zoom)
        per_cell: dict[tuple[int, int], int] = defaultdict(int)
        for r in rows:
            if r.part in (1, 3):
                per_cell[(r.gx, r.gy)] += int(r.n)
        if block is not None and len(changed):
            x0, x1, y0, y1 = block
            gx, gy = np.floor(x / cell).astype(np.int64), np.floor(y / cell).astype(np.int64)
            inside = (gx >= x0) & (gx <= x1) & (gy >= y0) & (gy <= y1)  # the rest is in the edges' count
            for a, b, s in zip(gx[inside].tolist(), gy[inside].tolist(), sign[inside].tolist(), strict=True):
                per_cell[(a, b)] += s
        heat = [
            [round((b + 0.5) * cell, 6), round((a + 0.5) * cell, 6), n] for (a, b), n in sorted(per_cell.items()) if n
        ]
    return Counted(per_h3, heat)


def _dims(filters: Filters, bounds: tuple[date | None, date | None]) -> tuple[str, dict[str, Any]]:
    """Return the condition on the counts ``c`` that ``filters`` make, and its parameters."""
    return conditions(
        (
            ("c.month", ">=", bounds[0]),
            ("c.month", "<", bounds[1]),
            ("c.status", "=", filters.status),
            ("c.subdistrict_code", "=", filters.subdistrict),
            ("c.source", "=", filters.source),
        ),
        prefix="d",
    )


def _inner_block(view: tuple[float, float, float, float], cell: float) -> tuple[int, int, int, int] | None:
    """Return the heat cells (x0, x1, y0, y1) whose every point lies strictly inside ``view``, or None if none.

    A point of cell ``g`` lies within a rounding error of [g·cell, (g+1)·cell]; inside by _EDGE_MARGIN, it is
    in the view whatever float4 rounding PostgreSQL's ``&&`` applies to the view's box and the point's.
    """
    west, south, east, north = view
    x0, x1 = math.ceil((west + _EDGE_MARGIN) / cell), math.floor((east - _EDGE_MARGIN) / cell) - 1
    y0, y1 = math.ceil((south + _EDGE_MARGIN) / cell), math.floor((north - _EDGE_MARGIN) / cell) - 1
    if x0 > x1 or y0 > y1:
        return None
    return x0, x1, y0, y1


# The changes, taken out of their table into a scratch table of the fold's transaction, summed per point, month and
# filtered columns; each combination of the latter numbered (kind), so that a point travels as 24 bytes.
# The month an incident is counted in, of its reported_at (a timestamptz expression)
MONTH = "date_trunc('month', {} AT TIME ZONE INTERVAL '+08:00')::date"

_TAKEN = f"""
CREATE TEMP TABLE citygrid_folding ON COMMIT DROP AS
WITH gone AS (
    DELETE FROM incident_map_changes RETURNING sign, x, y, reported_at, status, subdistrict_code, source
), summed AS (
    SELECT x, y, {MONTH.format("reported_at")} AS month, status,
           subdistrict_code, source, sum(sign)::int AS n, count(*) AS changes
    FROM gone GROUP BY 1, 2, 3, 4, 5, 6
)
SELECT s.*, (dense_rank() OVER (ORDER BY month, status, subdistrict_code, source))::int - 1 AS kind FROM summed s
"""
_POINTS = (
    "COPY (SELECT true, coalesce(string_agg(float8send(x) || float8send(y) || int4send(kind) || int4send(n), ''), '')"
    " FROM citygrid_folding WHERE n <> 0) TO STDOUT (FORMAT binary)"
)
_POINT = np.dtype([("x", ">f8"), ("y", ">f8"), ("kind", ">i4"), ("n", ">i4")])

_ADDED = """
INSERT INTO incident_map_counts AS c (month, h3, gx, gy, status, subdistrict_code, source, n)
SELECT * FROM unnest(CAST(:month AS date[]), CAST(:h3 AS bigint[]), CAST(:gx AS int[]), CAST(:gy AS int[]),
                     CAST(:status AS text[]), CAST(:subdistrict AS text[]), CAST(:source AS text[]), CAST(:n AS int[]))
ON CONFLICT ON CONSTRAINT incident_map_counts_key DO UPDATE SET n = c.n + excluded.n
"""


def fold(engine: Engine) -> int:
    """Move every committed change into the counts, in one transaction; return how many changes it folded.

    A fold already running elsewhere is left to finish (0): a reader counts what is still unfolded itself.
    """
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _FOLD_LOCK}).scalar_one():
            return 0
        conn.execute(text(_TAKEN))
        taken = int(conn.execute(text("SELECT coalesce(sum(changes), 0) FROM citygrid_folding")).scalar_one())
        kinds = {
            r.kind: (r.month, r.status, r.subdistrict_code, r.source)
            for r in conn.execute(
                text("SELECT DISTINCT kind, month, status, subdistrict_code, source FROM citygrid_folding")
            )
        }
        # An incident added and taken away again (or moved and moved back) sums to nought: not sent (n <> 0).
        packed = [xy for _, xy in _bool_bytea_rows(_copy(conn, _POINTS, {}))]
        points = np.frombuffer(b"".join(packed), dtype=_POINT)
        if len(points):
            found, sums = _cell_sums(points["x"].astype(float), points["y"].astype(float),
                                     points["kind"].astype(np.int64), points["n"].astype(np.int64))  # fmt: skip
            _upsert(conn, found, sums, kinds)
        return taken


class Tally:
    """The incidents a bulk writer inserts, which it adds to the counts itself, in its own transaction.

    From ``start`` to ``write`` the writer's transaction sets ``citygrid.map_counted``, so that the insert trigger
    writes no change rows for its inserts (migration 0014). An import sums its rows per point and kind (month,
    status, subdistrict, source) with each chunk's insert and hands them to ``add``, which sums them per cell on
    a thread of its own while the next chunk is inserted; ``write`` adds the sums to ``incident_map_counts``
    before the import commits.
    """

    def __init__(self) -> None:
        self._kinds: dict[tuple[date, str, str | None, str], int] = {}
        # one thread: each chunk's sums are merged into the running ones in the order the chunks came
        self._summing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citygrid-map-tally")
        self._parts: list[Future[None]] = []
        self._found = np.zeros((0, 4), dtype=np.int64)
        self._sums = np.zeros(0, dtype=np.int64)

    @staticmethod
    def start(cur: Any) -> None:
        """Say, for the transaction of ``cur`` (a DB-API cursor), that its inserts are counted by the writer."""
        cur.execute("SELECT set_config('citygrid.map_counted', 'on', true)")

    def add(self, groups: list[tuple[date, str, str | None, str, bytes]]) -> None:
        """Take a chunk's points by kind: x and y as big-endian float8 pairs (``float8send(x) || float8send(y)``)."""
        if not groups:
            return
        kinds = [self._kinds.setdefault((g[0], g[1], g[2], g[3]), len(self._kinds)) for g in groups]
        self._parts.append(self._summing.submit(self._merge, kinds, [g[4] for g in groups]))

    def write(self, conn: Connection) -> None:
        """End what ``start`` said, and add what was taken to the counts, in ``conn``'s transaction."""
        conn.execute(text("SELECT set_config('citygrid.map_counted', 'off', true)"))
        self._summing.shutdown()
        for part in self._parts:
            part.result()  # raises what a summing raised
        _upsert(conn, self._found, self._sums, {k: key for key, k in self._kinds.items()})

    def _merge(self, kinds: list[int], points: list[bytes]) -> None:
        """Sum a chunk's points per cell and kind, one incident a point, into the running sums."""
        xy = [np.frombuffer(p, dtype=">f8").reshape(-1, 2) for p in points]
        joined = np.concatenate(xy).astype(float)
        kind = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in zip(kinds, xy, strict=True)])
        found, sums = _cell_sums(joined[:, 0], joined[:, 1], kind, np.ones(len(kind), dtype=np.int64))
        self._found, self._sums = _summed(
            list(np.concatenate([self._found, found]).T), np.concatenate([self._sums, sums])
        )


def _cell_sums(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], kind: npt.NDArray[np.int64], n: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return the distinct (H3 cell, heat x, heat y, kind) of the points, as a matrix, and the sum of ``n`` of each."""
    cell = heat_cell(HEAT_ZOOM)
    columns = [cells_of_points(y, x, H3_RESOLUTION).astype(np.int64), np.floor(x / cell).astype(np.int64),
               np.floor(y / cell).astype(np.int64), kind]  # fmt: skip
    return _summed(columns, n)


def _upsert(
    conn: Connection, found: npt.NDArray[np.int64], sums: npt.NDArray[np.int64], kinds: dict[int, tuple[Any, ...]]
) -> None:
    """Add ``sums`` to the counts of the cells ``found`` (rows of H3 cell, heat x, heat y, kind)."""
    keep = sums != 0
    found, sums = found[keep], sums[keep]
    if not len(sums):
        return
    chosen = [kinds[k] for k in found[:, 3].tolist()]
    conn.execute(
        text(_ADDED),
        {
            "month": [c[0] for c in chosen],
            "h3": found[:, 0].tolist(),
            "gx": found[:, 1].tolist(),
            "gy": found[:, 2].tolist(),
            "status": [c[1] for c in chosen],
            "subdistrict": [c[2] for c in chosen],
            "source": [c[3] for c in chosen],
            "n": sums.tolist(),
        },
    )
    if (sums < 0).any():
        conn.execute(text("DELETE FROM incident_map_counts WHERE n = 0"))


def _summed(
    columns: list[npt.NDArray[np.int64]], n: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return the distinct rows of ``columns`` (as a matrix) and the sum of ``n`` over each.

    Each column is numbered densely and the numbers are combined into one integer when they fit in 63 bits (a
    city's data always does): one sort of integers, where a sort of rows took seconds for a million.
    """
    numbered, sizes = [], []
    for column in columns:
        values, index = np.unique(column, return_inverse=True)
        numbered.append(index.ravel().astype(np.int64))
        sizes.append(len(values))
    if math.prod(sizes) < 2**62:
        combined = numbered[0]
        for index, size in zip(numbered[1:], sizes[1:], strict=True):
            combined = combined * size + index
        _, first, which = np.unique(combined, return_index=True, return_inverse=True)
        found = np.column_stack(columns)[first]
    else:
        found, which = np.unique(np.column_stack(columns), axis=0, return_inverse=True)
    return found, np.bincount(which.ravel(), weights=n, minlength=len(found)).astype(np.int64)
