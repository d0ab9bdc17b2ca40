"""Case intake, measured: a million-row bulk import and single reports over HTTP, each against a baseline.

- bulk: ``citygrid incidents import`` of 1,000,000 cases from CSV (every row checked, its whole chain, due
  time and duplicate check, one transaction), end to end as a user runs it; baseline in the same run: the bare
  PostGIS join of the same points, staged by COPY, to the subdivided grids (grid code only: our floor).
  Target (issue 4): ≤ 15 s.
- single: POST /v1/incidents from one client (p50, p99) and from 16 (wrk); baseline in the same run: GET
  /v1/owner of the same points (the chain lookup alone, no write). Targets: p50 ≤ 5 ms, ≥ 500/s, no errors.

A database of its own (``<name>_bench_intake``) is created on the server with the fixture, and dropped after.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import psycopg2
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from benchmarks.harness import ROOT, WORKERS, CpuSampler, python, server, wrk
from spatial import db, migrate
from spatial.keys import create_key
from spatial.loading import load_directory
from spatial.settings import DatabaseSettings

WEST, SOUTH, EAST, NORTH = 104.225, 23.355, 104.265, 23.385  # well inside the fixture city: every point covered
ROWS = 1_000_000
SINGLE_REQUESTS = 2000
LOAD_SECONDS = 10
ITEMS = ("0508", "0101", "0111", "0302", "0701", "0601", "0105", "0203")

LUA = """
math.randomseed(42)
local items = {{"0508", "0101", "0111", "0302", "0701", "0601"}}
request = function()
  local lon = {west} + math.random() * {dlon}
  local lat = {south} + math.random() * {dlat}
  local body = string.format('{{"lon":%.7f,"lat":%.7f,"item_code":"%s","source":"hotline","description":"bench"}}',
                             lon, lat, items[math.random(#items)])
  return wrk.format("POST", "/v1/incidents", {{["Content-Type"]="application/json", ["X-API-Key"]="{key}"}}, body)
end
"""


def bench_database(purpose: str = "intake") -> str:
    """Create ``<name>_bench_<purpose>`` with the fixture; return its URL."""
    server_url = make_url(db.database_url(DatabaseSettings()))
    name = f"{server_url.database}_bench_{purpose}"
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    url = server_url.set(database=name).render_as_string(hide_password=False)
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    load_directory(engine, ROOT / "fixtures" / "geojson")
    engine.dispose()
    return url


def drop_database(url: str) -> None:
    target = make_url(url)
    _admin(target, f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')


def _admin(url: URL, *statements: str) -> None:
    admin = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        for statement in statements:
            cur.execute(statement)  # our own database names
    admin.close()


def cases_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write a million cases (80 % closed, like a year of history) and return their lon/lat."""
    rng = np.random.default_rng(2017)
    lon = np.round(WEST + rng.random(ROWS) * (EAST - WEST), 7)
    lat = np.round(SOUTH + rng.random(ROWS) * (NORTH - SOUTH), 7)
    start = np.datetime64("2016-06-01T00:00:00")
    reported = start + np.sort(rng.integers(0, 365 * 86400, ROWS)).astype("timedelta64[s]")
    closed = rng.random(ROWS) < 0.8
    took = rng.integers(600, 5 * 86400, ROWS).astype("timedelta64[s]")
    items = np.array(ITEMS)[rng.integers(0, len(ITEMS), ROWS)]
    with path.open("w", encoding="utf-8") as sink:
        sink.write("code,source,item_code,lon,lat,reported_at,status,closed_at\n")
        buffer = io.StringIO()
        for i in range(ROWS):
            closed_at = f"{reported[i] + took[i]}+08:00" if closed[i] else ""
            buffer.write(
                f"BM{i:07d},patrol,{items[i]},{lon[i]:.7f},{lat[i]:.7f},{reported[i]}+08:00,"
                f"{'closed' if closed[i] else 'handling'},{closed_at}\n"
            )
            if i % 100_000 == 99_999:
                sink.write(buffer.getvalue())
                buffer = io.StringIO()
        sink.write(buffer.getvalue())
    return lon, lat


def floor_join(url: str, lon: np.ndarray, lat: np.ndarray) -> tuple[float, int]:
    """Stage the points by COPY, then time the bare join to the subdivided grids; return (seconds, matched)."""
    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE floor_points (lon float8, lat float8)")
            buffer = io.StringIO()
            np.savetxt(buffer, np.column_stack([lon, lat]), fmt="%.7f", delimiter=",")
            buffer.seek(0)
            cur.copy_expert("COPY floor_points FROM STDIN WITH (FORMAT csv)", buffer)
            cur.execute("ALTER TABLE floor_points ADD COLUMN geom geometry(Point, 4326)")
            cur.execute("UPDATE floor_points SET geom = ST_SetSRID(ST_MakePoint(lon, lat), 4326)")
            cur.execute("ANALYZE floor_points")
            started = time.perf_counter()
            cur.execute(
                "SELECT count(gp.grid_code) FROM floor_points p"
                " LEFT JOIN grid_parts gp ON gp.generation = 1 AND ST_Intersects(gp.geom, p.geom)"
            )
            matched = cur.fetchone()[0]  # type: ignore[index]
            return time.perf_counter() - started, int(matched)
    finally:
        conn.close()


def bulk(url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as folder:
        path = Path(folder) / "cases.csv"
        lon, lat = cases_csv(path)
        env = {**os.environ, "DATABASE_URL": url.replace("postgresql+psycopg2://", "postgresql://")}
        sampler = CpuSampler(url)
        started = time.perf_counter()
        running = subprocess.Popen(
            [str(Path(python()).with_name("citygrid")), "incidents", "import", str(path), "--skip-invalid"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        sampler.start(running.pid)
        stdout, stderr = running.communicate()
        import_s = time.perf_counter() - started
        backends, importer = sampler.stop()
        if running.returncode != 0:
            raise RuntimeError(f"import failed: {stderr[-2000:]}")
        floor_s, matched = floor_join(url, lon, lat)
    print(f"bulk {ROWS:,} cases   ours (CSV → checked, chain, due, duplicates, one transaction): {import_s:.1f} s"
          "   (target ≤ 15 s)")  # fmt: skip
    print(f"                     {stdout.strip()}")
    if backends:
        # where the time goes: the caller's backend (the inserts) is the largest, then one per helper connection
        print(f"bulk                 CPU: PostgreSQL backends {sum(backends):.1f} s (each: "
              f"{', '.join(f'{b:.1f}' for b in backends if b >= 0.1)}), importer process {importer or 0:.1f} s;"
              f" {os.cpu_count()} cores")  # fmt: skip
    print(f"bulk {ROWS:,} points  floor (bare join of the staged points to grid_parts): {floor_s:.1f} s"
          f" ({matched:,} matched)")  # fmt: skip
    print(f"bulk                 ratio ours/floor: {import_s / floor_s:.2f}x")


def single_client(base: str, key: str) -> tuple[float, float, float, float]:
    """Return p50/p99 (ms) of sequential POSTs and of GET /v1/owner at the same points, one keep-alive client."""
    rng = np.random.default_rng(7)
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    posts, gets = [], []
    for n in range(SINGLE_REQUESTS + 50):
        lon, lat = WEST + rng.random() * (EAST - WEST), SOUTH + rng.random() * (NORTH - SOUTH)
        body = json.dumps({"lon": lon, "lat": lat, "item_code": ITEMS[n % len(ITEMS)], "source": "hotline"})
        started = time.perf_counter()
        conn.request("POST", "/v1/incidents", body, {"Content-Type": "application/json", "X-API-Key": key})
        response = conn.getresponse()
        response.read()
        posts.append(time.perf_counter() - started)
        if response.status not in (200, 201):
            raise RuntimeError(f"POST /v1/incidents: HTTP {response.status}")
        started = time.perf_counter()
        conn.request("GET", f"/v1/owner?lon={lon:.7f}&lat={lat:.7f}")
        response = conn.getresponse()
        response.read()
        gets.append(time.perf_counter() - started)
    post_ms, get_ms = np.array(posts[50:]) * 1000, np.array(gets[50:]) * 1000
    return (
        float(np.percentile(post_ms, 50)), float(np.percentile(post_ms, 99)),
        float(np.percentile(get_ms, 50)), float(np.percentile(get_ms, 99)),
    )  # fmt: skip


def single(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        _, key = create_key(conn, name="bench hotline", role="dispatcher")
    engine.dispose()
    command = [python(), "-m", "uvicorn", "api.main:create_app", "--factory", "--port", "{port}", "--workers", WORKERS,
               "--log-level", "warning"]  # fmt: skip
    with server(command, {"DATABASE_URL": url}, "/health") as running:
        base = running.base
        post_p50, post_p99, get_p50, get_p99 = single_client(base, key)
        lua = LUA.format(west=WEST, south=SOUTH, dlon=EAST - WEST, dlat=NORTH - SOUTH, key=key)
        load = wrk(base, lua, connections=16, seconds=LOAD_SECONDS)
    print(f"single client  POST /v1/incidents: p50 {post_p50:.2f} ms, p99 {post_p99:.2f} ms   (target p50 ≤ 5 ms)")
    print(f"single client  GET /v1/owner (baseline, same points): p50 {get_p50:.2f} ms, p99 {get_p99:.2f} ms")
    print(f"single client  ratio POST/owner p50: {post_p50 / get_p50:.1f}x")
    print(f"16 clients     POST /v1/incidents: {load.requests_per_s:,.0f} req/s, p50 {load.p50_ms:.2f} ms, "
          f"p99 {load.p99_ms:.2f} ms, errors {load.errors}   (target ≥ 500/s, 0 errors)")  # fmt: skip


def main() -> None:
    print("== intake: cases in bulk and one by one ==")
    url = bench_database()
    try:
        single(url)
        bulk(url)
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
