"""The load run of issue 7: 60 s of the morning's mix against the server on loopback.

80 % owner lookups (GET /v1/owner), 10 % incident reports (POST /v1/incidents with an API key and an
Idempotency-Key), 10 % layer reads (GET /v1/layers/… with a bbox), sent at a fixed rate (default 600/s, the
target is ≥ 500/s) over 32 keep-alive connections. Targets: zero errors, p99 ≤ 50 ms. Baseline in the same run:
owner lookups alone at the same rate (the mix's cheapest request), so the mix's cost shows as a ratio.

The client is a small asyncio HTTP/1.1 loop on raw sockets (one process, ≈10 µs of Python per request) rather
than locust or httpx: on a 2-core machine the load generator must not take the server's CPU. Every request is
timed on its own, so latencies are per kind; every acknowledged report is kept (Idempotency-Key → case code)
for the fault run (``benchmarks/fault.py``), which drives the same traffic while PostgreSQL is stopped.

A database of its own (``<name>_bench_load``) is created with the fixture, and dropped after.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from benchmarks.harness import WORKERS, python, server
from benchmarks.intake import ITEMS, bench_database, drop_database
from spatial.keys import create_key

WEST, SOUTH, EAST, NORTH = 104.225, 23.355, 104.265, 23.385  # well inside the fixture city: every point covered
LAYERS = ("grids", "streets", "markets", "stalls", "illegal_buildings")
BBOX_DEGREES = 0.005  # ≈ 500 m: a street block's worth of features
KINDS = ("owner", "incident", "layer")
T = TypeVar("T")
RATE = 600
SECONDS = 60
CONNECTIONS = 32
TIMEOUT_S = 10.0  # longer than any honest answer: a request still unanswered then is a hang


@dataclass(frozen=True)
class Outcome:
    """One request: its kind, status (0: no answer), latency, when it was sent, and its Retry-After."""

    kind: str
    status: int
    latency_ms: float
    sent_s: float
    retry_after: str | None = None
    problem: str = ""


@dataclass
class Traffic:
    """What a run sent and got back; ``acknowledged`` maps each report's Idempotency-Key to its case code."""

    outcomes: list[Outcome] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)
    unacknowledged: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0


class Mix:
    """The requests of a run, in a fixed order from a seeded generator: i % 10 == 0 a report, == 5 a layer read."""

    def __init__(self, api_key: str, *, run_id: str, seed: int = 7) -> None:
        self.api_key = api_key
        self.run_id = run_id
        self.random = random.Random(seed)

    def request(self, i: int) -> tuple[str, bytes, str | None]:
        """Return the kind, the bytes and (for a report) the Idempotency-Key of request ``i``."""
        lon = WEST + self.random.random() * (EAST - WEST)
        lat = SOUTH + self.random.random() * (NORTH - SOUTH)
        if i % 10 == 0:
            key = f"{self.run_id}-{i:08d}"
            item = ITEMS[i // 10 % len(ITEMS)]
            body = json.dumps({"lon": round(lon, 7), "lat": round(lat, 7), "item_code": item, "source": "hotline",
                               "description": "load run"}).encode()  # fmt: skip
            return "incident", post("/v1/incidents", body, {"X-API-Key": self.api_key, "Idempotency-Key": key}), key
        if i % 10 == 5:
            layer = LAYERS[i // 10 % len(LAYERS)]
            bbox = f"{lon:.5f},{lat:.5f},{lon + BBOX_DEGREES:.5f},{lat + BBOX_DEGREES:.5f}"
            return "layer", get(f"/v1/layers/{layer}?bbox={bbox}"), None
        return "owner", get(f"/v1/owner?lon={lon:.7f}&lat={lat:.7f}"), None


class OwnerOnly(Mix):
    """The baseline: owner lookups only, from the same points."""

    def request(self, i: int) -> tuple[str, bytes, str | None]:
        """Return an owner lookup."""
        lon = WEST + self.random.random() * (EAST - WEST)
        lat = SOUTH + self.random.random() * (NORTH - SOUTH)
        return "owner", get(f"/v1/owner?lon={lon:.7f}&lat={lat:.7f}"), None


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{lines}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError(f"an answer without Content-Length: {status_line}")
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split(" ", 2)[1]), headers, body


async def drive(
    host: str,
    port: int,
    requests: Callable[[int], tuple[str, bytes, str | None]],
    *,
    rate: float,
    seconds: float,
    connections: int = CONNECTIONS,
    on_start: Callable[[float], None] | None = None,
) -> Traffic:
    """Send request i at ``i / rate`` s for ``seconds`` over ``connections`` keep-alive connections; time each.

    A request unanswered after TIMEOUT_S counts as a hang (status 0); a closed connection is reopened.
    ``on_start`` is called with the start time (``time.perf_counter()``), e.g. to schedule a fault.
    """
    traffic = Traffic()
    counter = itertools.count()
    start = time.perf_counter()
    end = start + seconds

    async def worker() -> None:
        reader = writer = None
        while True:
            i = next(counter)
            due = start + i / rate
            if due >= end:
                break
            kind, payload, idempotency_key = requests(i)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            status, retry_after, problem = 0, None, ""
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
                assert reader is not None
                status, headers, body = await asyncio.wait_for(_exchange(reader, writer, payload), TIMEOUT_S)
                retry_after = headers.get("retry-after")
                if headers.get("connection") == "close":
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                problem = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
                if writer is not None:
                    writer.close()
                reader = writer = None
            latency_ms = (time.perf_counter() - sent) * 1000
            traffic.outcomes.append(Outcome(kind, status, latency_ms, sent - start, retry_after, problem))
            if idempotency_key is not None:
                if status in (200, 201):
                    traffic.acknowledged[idempotency_key] = json.loads(body)["code"]
                else:
                    traffic.unacknowledged[idempotency_key] = payload
        if writer is not None:
            writer.close()

    if on_start is not None:
        on_start(start)
    await asyncio.gather(*(worker() for _ in range(connections)))
    traffic.seconds = time.perf_counter() - start
    return traffic


async def retry_unacknowledged(host: str, port: int, traffic: Traffic) -> Counter[int]:
    """Send every unacknowledged report again with its Idempotency-Key, as a client does after a 503; count statuses."""
    statuses: Counter[int] = Counter()
    reader, writer = await asyncio.open_connection(host, port)
    for key, payload in sorted(traffic.unacknowledged.items()):
        status, _, body = await asyncio.wait_for(_exchange(reader, writer, payload), TIMEOUT_S)
        statuses[status] += 1
        if status in (200, 201):
            traffic.acknowledged[key] = json.loads(body)["code"]
    writer.close()
    traffic.unacknowledged = {k: v for k, v in traffic.unacknowledged.items() if k not in traffic.acknowledged}
    return statuses


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end in a thread of its own: the caller's may already run a loop (pytest-playwright)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def percentile(values: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``values``, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def is_error(outcome: Outcome) -> bool:
    """Return True for an answer that is not a success: no answer, or a status of 400 or more."""
    return outcome.status == 0 or outcome.status >= 400


def report(traffic: Traffic, *, title: str) -> dict[str, dict[str, float]]:
    """Print and return rate, errors and p50/p95/p99 per kind and overall."""
    rows: dict[str, dict[str, float]] = {}
    for kind in (*KINDS, "all"):
        picked = [o for o in traffic.outcomes if kind in ("all", o.kind)]
        if not picked:
            continue
        latencies = [o.latency_ms for o in picked]
        rows[kind] = {
            "requests": len(picked),
            "rate": len(picked) / traffic.seconds,
            "errors": sum(is_error(o) for o in picked),
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
        }
    print(f"{title} ({traffic.seconds:.1f} s)")
    print(f"  {'kind':<9}{'requests':>9}{'req/s':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for kind, row in rows.items():
        print(f"  {kind:<9}{row['requests']:>9.0f}{row['rate']:>9.1f}{row['errors']:>8.0f}"
              f"{row['p50']:>9.2f}{row['p95']:>9.2f}{row['p99']:>9.2f}")  # fmt: skip
    statuses = Counter(o.status for o in traffic.outcomes)
    print("  statuses: " + ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(statuses.items())))
    problems = Counter(o.problem for o in traffic.outcomes if o.problem)
    if problems:
        print("  no answer: " + ", ".join(f"{p}: {n}" for p, n in sorted(problems.items())))
    return rows


def load_key(url: str, name: str) -> str:
    """Create a dispatcher key in the database at ``url``; return its secret."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        _, secret = create_key(conn, name=name, role="dispatcher")
    engine.dispose()
    return secret


@contextmanager
def api_server(url: str, *, workers: int = int(WORKERS)) -> Iterator[tuple[str, int]]:
    """Serve the API over ``url`` on a free loopback port; yield (host, port)."""
    command = [python(), "-m", "uvicorn", "api.main:create_app", "--factory", "--port", "{port}",
               "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    with server(command, {"DATABASE_URL": url}, "/health") as running:
        host, port = running.base.removeprefix("http://").split(":")
        yield host, int(port)


def main() -> None:
    print("== load: 80 % owner lookups, 10 % reports, 10 % layer reads ==")
    url = bench_database("load")
    try:
        secret = load_key(url, "load run")
        with api_server(url) as (host, port):
            run(drive(host, port, Mix(secret, run_id="warm").request, rate=RATE, seconds=3))  # warm pools
            baseline = run(drive(host, port, OwnerOnly(secret, run_id="base").request, rate=RATE, seconds=15))
            mixed = run(drive(host, port, Mix(secret, run_id="load").request, rate=RATE, seconds=SECONDS))
        base = report(baseline, title=f"baseline: owner lookups only at {RATE}/s")
        rows = report(mixed, title=f"mix at {RATE}/s over {CONNECTIONS} connections")
        overall = rows["all"]
        print(f"  mix p99 / owner-only p99: {overall['p99'] / base['all']['p99']:.1f}x")
        verdict = overall["rate"] >= 500 and overall["errors"] == 0 and overall["p99"] <= 50
        print(f"  targets (≥ 500 req/s, 0 errors, p99 ≤ 50 ms): {'met' if verdict else 'NOT met'}")
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
