"""GeoJSON export of 100,000 illegal-building footprints, streamed, against two baselines in the same run.

- ours: GET /v1/exports/illegal-buildings.geojson — every footprint with its whole chain (subdistrict,
  community, grid, squad, grid member on duty), status dates and areas, each feature written by PostgreSQL
  and streamed from a server-side cursor;
- tipg: /collections/public.illegal_buildings/items?limit=100000 on the same table (the table's columns only,
  no chain), the whole FeatureCollection built in memory before it is sent;
- geopandas: read_postgis of the same query as ours, then to_json(), in process.
Target (issue 6): ≥ 50,000 features/s with flat memory. The servers' memory is read from /proc (peak RSS).

A database of its own (``<name>_bench_export``) is created on the server: the fixture, with its 823
footprints copied (shifted up to ±40 m) to 100,000.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass

import geopandas as gpd
import httpx
import psycopg2
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from benchmarks.harness import ROOT, Server, python, server
from spatial import db, exports, migrate
from spatial.keys import create_key
from spatial.loading import load_directory
from spatial.settings import DatabaseSettings

FOOTPRINTS = 100_000
RUNS = 3

MULTIPLY = """
INSERT INTO illegal_buildings (code, address, campaign, floors, status, discovered_at, investigated_at,
    notice_served_at, scheduled_at, demolished_at, legalised_at, geom, demolished_m2, generation, grid_code)
SELECT 'WJB' || lpad(n::text, 6, '0'), b.address, b.campaign, b.floors, b.status, b.discovered_at,
    b.investigated_at, b.notice_served_at, b.scheduled_at, b.demolished_at, b.legalised_at,
    ST_Translate(b.geom, ((n::bigint * 7919) % 81 - 40) * 0.00001, ((n::bigint * 104729) % 81 - 40) * 0.00001),
    b.demolished_m2, b.generation, b.grid_code
FROM generate_series(1, :extra) AS n
JOIN illegal_buildings b ON b.code = 'WJ' || lpad(((n - 1) % 823 + 1)::text, 4, '0')
"""


def bench_database() -> tuple[str, str]:
    """Create ``<name>_bench_export`` with the fixture and 100,000 footprints; return its URL and a planner key."""
    server = make_url(db.database_url(DatabaseSettings()))
    name = f"{server.database}_bench_export"
    admin = psycopg2.connect(
        host=server.host, port=server.port, user=server.username, password=server.password, dbname="postgres"
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # our own name
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    url = server.set(database=name).render_as_string(hide_password=False)
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    load_directory(engine, ROOT / "fixtures" / "geojson")
    with engine.begin() as conn:
        conn.execute(text(MULTIPLY), {"extra": FOOTPRINTS - 823})
        conn.execute(text("ANALYZE illegal_buildings"))
        assert conn.execute(text("SELECT count(*) FROM illegal_buildings")).scalar_one() == FOOTPRINTS
        _, secret = create_key(conn, name="bench planner", role="planner")  # exports are for planners
    engine.dispose()
    return url, secret


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Run:
    """One timed download: seconds to the last byte, bytes, and the server's RSS before and at its peak."""

    seconds: float
    megabytes: float
    rss_before_mb: float
    rss_peak_mb: float


def download(server: Server, path: str, key: str = "") -> Run:
    """Stream ``path`` to nowhere while sampling the server's resident memory every 20 ms."""
    before = rss_mb(server.pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(server.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    size = 0
    started = time.perf_counter()
    try:
        # identity: both servers send the same bytes (tipg would otherwise gzip, we never compress)
        with httpx.stream(
            "GET", server.base + path, timeout=600, headers={"Accept-Encoding": "identity", "X-API-Key": key}
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_raw():
                size += len(chunk)
        seconds = time.perf_counter() - started
    finally:
        done.set()
        sampler.join()
    return Run(seconds, size / 1e6, before, peak[0])


def check_count(server: Server, path: str, key: str = "") -> int:
    document = json.loads(httpx.get(server.base + path, timeout=600, headers={"X-API-Key": key}).content)
    return len(document["features"])


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda run: run.seconds)


def report(name: str, run: Run) -> None:
    rate = FOOTPRINTS / run.seconds
    growth = run.rss_peak_mb - run.rss_before_mb
    print(
        f"{name:10} {run.seconds:6.2f} s  {rate:9,.0f} features/s  {run.megabytes:6.1f} MB  "
        f"server RSS {run.rss_before_mb:5.0f} → peak {run.rss_peak_mb:5.0f} MB (+{growth:.0f})"
    )


def main() -> None:
    print("== export: 100,000 illegal-building footprints as GeoJSON ==")
    url, key = bench_database()
    libpq = url.replace("postgresql+psycopg2://", "postgresql://")
    ours_cmd = [python(), "-m", "uvicorn", "api.main:create_app", "--factory", "--port", "{port}", "--log-level",
                "warning"]  # fmt: skip
    tipg_cmd = [python(), "-m", "uvicorn", "tipg.main:app", "--port", "{port}", "--log-level", "warning"]
    tipg_env = {
        "DATABASE_URL": libpq, "TIPG_DB_SCHEMAS": '["public"]', "TIPG_DB_TABLES": '["public.illegal_buildings"]',
        "TIPG_MAX_FEATURES_PER_QUERY": str(FOOTPRINTS), "TIPG_DEFAULT_FEATURES_LIMIT": "10",
    }  # fmt: skip
    ours_path = "/v1/exports/illegal-buildings.geojson"
    tipg_path = f"/collections/public.illegal_buildings/items?limit={FOOTPRINTS}"

    with server(ours_cmd, {"DATABASE_URL": url}, "/health") as ours:
        assert check_count(ours, ours_path, key) == FOOTPRINTS
        ours_runs = [download(ours, ours_path, key) for _ in range(RUNS)]
    with server(tipg_cmd, tipg_env, "/collections") as tipg:
        assert check_count(tipg, tipg_path) == FOOTPRINTS
        tipg_runs = [download(tipg, tipg_path) for _ in range(RUNS)]

    engine = create_engine(url, poolclass=NullPool, connect_args={"options": "-c timezone=Asia/Shanghai"})
    dataset = exports.DATASETS["illegal-buildings"]
    query = select(*(col.expression.label(col.name) for col in dataset.columns), func.ST_AsHEXEWKB(dataset.geometry)
                   .label("geom")).select_from(dataset.source).order_by(*dataset.order_by)  # fmt: skip
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    geopandas_seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        frame = gpd.read_postgis(sql, engine, geom_col="geom")
        body = frame.to_json(drop_id=True, default=str)  # dates as ISO text, as ours
        geopandas_seconds.append(time.perf_counter() - started)
        assert len(frame) == FOOTPRINTS and body.startswith('{"type": "FeatureCollection"')
    engine.dispose()

    ours_best, tipg_best = best(ours_runs), best(tipg_runs)
    gpd_best = min(geopandas_seconds)
    report("ours", ours_best)
    report("tipg", tipg_best)
    print(f"{'geopandas':10} {gpd_best:6.2f} s  {FOOTPRINTS / gpd_best:9,.0f} features/s  (read_postgis + to_json,"
          " in process)")  # fmt: skip
    print(f"target ≥ 50,000 features/s: ours {FOOTPRINTS / ours_best.seconds:,.0f}/s")
    print(f"ratio ours/tipg throughput:      {tipg_best.seconds / ours_best.seconds:.1f}x")
    print(f"ratio ours/geopandas throughput: {gpd_best / ours_best.seconds:.1f}x")
    print("(best of 3 runs each; memory: peak resident size of the server process during the download)")


if __name__ == "__main__":
    sys.exit(main())
