"""Who owns this point, measured: single lookups over HTTP and a million-point batch, each with a baseline.

Baselines measured in the same run:
- tipg (an OGC API – Features server on the same PostGIS) answering a CQL2 ``S_INTERSECTS`` filter on the
  same grids table: it returns the grid only, we return the whole chain;
- geopandas ``sjoin`` of the same million points against the same grids (grid only).
Targets (issue 3): p50 ≤ 2 ms and p99 ≤ 10 ms at one client, ≥ 2,000 lookups/s at 16 clients and ≥ 3× tipg;
1,000,000 points through POST /v1/owner/batch in ≤ 10 s.
"""

from __future__ import annotations

import http.client
import io
import time
from urllib.parse import quote, urlparse

import geopandas as gpd
import httpx
import numpy as np
from sqlalchemy import create_engine

from benchmarks.harness import WORKERS, database_url, python, server, wrk
from spatial.keys import create_key

WEST, SOUTH, EAST, NORTH = 104.220, 23.355, 104.270, 23.385  # well inside the fixture city: every point owned
SINGLE_REQUESTS = 2000
LOAD_SECONDS = 10
BATCH_POINTS = 1_000_000

LUA = """
math.randomseed(42)
request = function()
  local lon = {west} + math.random() * {dlon}
  local lat = {south} + math.random() * {dlat}
  return wrk.format("GET", string.format("{path}", lon, lat))
end
"""


def lua(path: str) -> str:
    # string.format reads every % in the path: escape the URL's own %xx, keep our two %.7f
    escaped = path.replace("%", "%%").replace("%%.7f", "%.7f")
    return LUA.format(west=WEST, south=SOUTH, dlon=EAST - WEST, dlat=NORTH - SOUTH, path=escaped)


def single_client(base: str, path: str) -> tuple[float, float]:
    """Return p50 and p99 in ms of sequential requests from one keep-alive client (a thin one: http.client)."""
    rng = np.random.default_rng(7)
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    timings = []
    for _ in range(SINGLE_REQUESTS + 50):
        lon, lat = WEST + rng.random() * (EAST - WEST), SOUTH + rng.random() * (NORTH - SOUTH)
        started = time.perf_counter()
        conn.request("GET", path.replace("%.7f", f"{lon:.7f}", 1).replace("%.7f", f"{lat:.7f}", 1))
        response = conn.getresponse()
        response.read()
        timings.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{base}{path}: HTTP {response.status}")
    ms = np.array(timings[50:]) * 1000  # the first 50 warm caches and prepared plans
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def batch_points() -> bytes:
    rng = np.random.default_rng(11)
    lon = WEST + rng.random(BATCH_POINTS) * (EAST - WEST)
    lat = SOUTH + rng.random(BATCH_POINTS) * (NORTH - SOUTH)
    buffer = io.StringIO()
    buffer.write("id,lon,lat\n")
    np.savetxt(buffer, np.column_stack([np.arange(BATCH_POINTS), lon, lat]), fmt=("%d", "%.7f", "%.7f"), delimiter=",")
    return buffer.getvalue().encode()


def main() -> None:
    url = database_url()
    libpq_url = url.replace("postgresql+psycopg2://", "postgresql://")
    print("== owner: who owns this point ==")
    ours_cmd = [python(), "-m", "uvicorn", "api.main:create_app", "--factory", "--port", "{port}", "--workers", WORKERS,
                "--log-level", "warning"]  # fmt: skip
    tipg_cmd = [
        python(),
        "-m",
        "uvicorn",
        "tipg.main:app",
        "--port",
        "{port}",
        "--workers",
        WORKERS,
        "--log-level",
        "warning",
    ]
    tipg_env = {"DATABASE_URL": libpq_url, "TIPG_DB_SCHEMAS": '["public"]'}
    ours_path = "/v1/owner?lon=%.7f&lat=%.7f"
    cql = quote("S_INTERSECTS(geom,POINT(%.7f %.7f))", safe="%(). ")
    tipg_path = f"/collections/public.grids/items?filter-lang=cql2-text&f=geojson&filter={cql}".replace(" ", "%20")
    tipg_path = tipg_path.replace("%25.7f", "%.7f")

    with (
        server(ours_cmd, {"DATABASE_URL": url}, "/health") as ours_server,
        server(tipg_cmd, tipg_env, "/collections") as tipg_server,
    ):
        ours, tipg = ours_server.base, tipg_server.base
        sample = httpx.get(tipg + tipg_path.replace("%.7f", "104.244", 1).replace("%.7f", "23.371", 1)).json()
        assert sample["numberReturned"] == 1, sample  # the baseline answers the same question (grid only)
        ours_p50, ours_p99 = single_client(ours, ours_path)
        tipg_p50, tipg_p99 = single_client(tipg, tipg_path)
        ours_load = wrk(ours, lua(ours_path), connections=16, seconds=LOAD_SECONDS)
        tipg_load = wrk(tipg, lua(tipg_path), connections=16, seconds=LOAD_SECONDS)
    print(f"single client  ours: p50 {ours_p50:.2f} ms, p99 {ours_p99:.2f} ms   (targets ≤ 2, ≤ 10)")
    print(f"single client  tipg: p50 {tipg_p50:.2f} ms, p99 {tipg_p99:.2f} ms")
    print(f"single client  ratio tipg/ours p50: {tipg_p50 / ours_p50:.1f}x")
    print(
        f"16 clients     ours: {ours_load.requests_per_s:,.0f} req/s, p50 {ours_load.p50_ms:.2f} ms, "
        f"p99 {ours_load.p99_ms:.2f} ms, errors {ours_load.errors}   (target ≥ 2,000/s)"
    )
    print(
        f"16 clients     tipg: {tipg_load.requests_per_s:,.0f} req/s, p50 {tipg_load.p50_ms:.2f} ms, "
        f"p99 {tipg_load.p99_ms:.2f} ms, errors {tipg_load.errors}"
    )
    print(f"16 clients     ratio ours/tipg throughput: {ours_load.requests_per_s / tipg_load.requests_per_s:.1f}x"
          "   (target ≥ 3x)")  # fmt: skip

    body = batch_points()
    engine = create_engine(url)
    with engine.begin() as conn:  # owner batches are a staff tool (their rows carry phone numbers)
        _, secret = create_key(conn, name="bench owner batch", role="dispatcher")
    engine.dispose()
    with server(ours_cmd[:-4] + ["--log-level", "warning"], {"DATABASE_URL": url}, "/health") as batch_server:
        ours = batch_server.base
        started = time.perf_counter()
        rows = 0
        with httpx.stream(
            "POST",
            ours + "/v1/owner/batch",
            content=body,
            timeout=600,
            headers={"content-type": "text/csv", "X-API-Key": secret},
        ) as response:
            for chunk in response.iter_bytes():
                rows += chunk.count(b"\n")
        batch_s = time.perf_counter() - started
    assert rows == BATCH_POINTS + 1, rows

    started = time.perf_counter()
    engine = create_engine(url)
    grids = gpd.read_postgis("SELECT code, geom FROM grids WHERE generation = 1", engine, geom_col="geom")
    frame = np.loadtxt(io.BytesIO(body), delimiter=",", skiprows=1)
    points = gpd.GeoDataFrame({"id": frame[:, 0]}, geometry=gpd.points_from_xy(frame[:, 1], frame[:, 2]), crs=4326)
    joined = gpd.sjoin(points, grids, how="left", predicate="within")
    sjoin_s = time.perf_counter() - started
    engine.dispose()
    print(f"batch {BATCH_POINTS:,} points  ours (whole chain, HTTP, CSV out): {batch_s:.1f} s   (target ≤ 10 s)")
    print(f"batch {BATCH_POINTS:,} points  geopandas sjoin (grid only, in process): {sjoin_s:.1f} s"
          f" ({int(joined['code'].notna().sum()):,} matched)")  # fmt: skip
    print(f"batch          ratio ours/geopandas time: {batch_s / sjoin_s:.2f}x")


if __name__ == "__main__":
    main()
