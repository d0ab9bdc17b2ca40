"""What the benchmarks share: the database URL, servers started on free ports, wrk runs, timing."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from spatial import db
from spatial.loading import database_is_empty, load_directory
from spatial.settings import ApiSettings, DatabaseSettings

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """Return the database URL, with the Wenshan fixture loaded if the database is empty."""
    settings = DatabaseSettings()
    url = db.database_url(settings)
    engine = db.engine_for(settings)
    if database_is_empty(engine):
        load_directory(engine, ROOT / "fixtures" / "geojson")
    return url


# Worker processes for every server a benchmark starts, ours and the baselines alike: what 'citygrid serve'
# uses by default (two per core).
WORKERS = str(ApiSettings().worker_count())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running server: where it answers, and its process (for memory readings)."""

    base: str
    pid: int


@contextmanager
def server(args: list[str], env: dict[str, str], ready_path: str) -> Iterator[Server]:
    """Start an HTTP server on a free port, wait until ``ready_path`` answers, yield it."""
    port = free_port()
    command = [a.replace("{port}", str(port)) for a in args]
    log = tempfile.NamedTemporaryFile("w+", prefix="bench-server-", suffix=".log", delete=False)
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + ready_path, timeout=5).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start; see {log.name}")
            time.sleep(0.3)
        yield Server(base, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class WrkResult:
    """Throughput and latency percentiles of one wrk run."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def wrk(base: str, lua: str, *, connections: int, seconds: int, threads: int = 2) -> WrkResult:
    """Run wrk against ``base`` with a Lua request generator; refuse to guess when wrk is missing."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run 'apt-get install wrk' (make bench does it as root)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, base],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        errors=errors,
    )


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def python() -> str:
    return sys.executable


class CpuSampler:
    """CPU seconds spent by the PostgreSQL backends of one database, and by a child process, while it runs.

    Reads /proc, so it counts only a server on this machine (the project's own cluster); elsewhere it reports
    nothing. Backends are found in pg_stat_activity every ``every_s`` and their CPU read until they end, so
    a helper connection that closes early is counted too.
    """

    def __init__(self, url: str, every_s: float = 0.2) -> None:
        import psycopg2

        self._conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
        self._conn.autocommit = True
        self._every_s = every_s
        self._backends: dict[int, float] = {}
        self._child_pid: int | None = None
        self._child: float | None = None
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self, child_pid: int | None = None) -> None:
        """Start sampling, the backends and the process ``child_pid`` (if given)."""
        self._child_pid = child_pid
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[list[float], float | None]:
        """Stop; return the CPU seconds of each backend seen (largest first) and of the child, if local."""
        self._stop = True
        if self._thread is not None:
            self._thread.join()
        self._conn.close()
        return sorted(self._backends.values(), reverse=True), self._child

    def _run(self) -> None:
        with self._conn.cursor() as cur:
            while not self._stop:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                for (pid,) in cur.fetchall():
                    seconds = _cpu_seconds(pid)
                    if seconds is not None:
                        self._backends[pid] = seconds
                if self._child_pid is not None:
                    self._child = _cpu_seconds(self._child_pid) or self._child
                time.sleep(self._every_s)


def _cpu_seconds(pid: int) -> float | None:
    """Return user + system CPU seconds of a process on this machine, or None if it is not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
