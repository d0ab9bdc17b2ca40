"""The fault run of issue 7: PostgreSQL stopped (``pg_ctl stop -m immediate``) and started during the load run.

The load run's mix (``benchmarks/load.py``) goes to an API whose database is a PostgreSQL cluster of its own,
made for the run in a temporary folder (the project's cluster is left alone). After a while the cluster is
stopped as in a crash, left down, and started again; the API is never restarted. Afterwards every report that
did not get an answer is sent again with its Idempotency-Key, as a client does after a 503 with Retry-After.

What must hold: while the database is down every answer is a 503 with Retry-After (never a hang, never a 500);
within 5 s of the database being back every answer is a success again; and every report that got a 201 is
in the database exactly once (counted there by Idempotency-Key and case code).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from benchmarks.harness import ROOT, WORKERS
from benchmarks.load import (
    KINDS,
    Mix,
    Traffic,
    api_server,
    drive,
    is_error,
    load_key,
    report,
    retry_unacknowledged,
    run,
)
from spatial import migrate
from spatial.cluster import LocalCluster
from spatial.loading import load_directory

RECOVERY_LIMIT_S = 5.0


@dataclass
class FaultRun:
    """What happened: the traffic, when the database went down and came back, and what the database holds."""

    traffic: Traffic
    stopped_s: float  # when pg_ctl stop returned (seconds since the load started)
    restarting_s: float  # when pg_ctl start was called
    back_s: float  # when the database answered again
    retried: Counter[int]
    stored: dict[str, list[str]]  # Idempotency-Key → case codes stored with it

    def during_outage(self) -> list[int]:
        """Return the statuses of requests sent while the database was down."""
        return [o.status for o in self.traffic.outcomes if self.stopped_s <= o.sent_s < self.restarting_s]

    def outage_answers_without_retry_after(self) -> int:
        """Return how many 503s lacked a Retry-After header."""
        return sum(1 for o in self.traffic.outcomes if o.status == 503 and not o.retry_after)

    def recovery_s(self) -> float:
        """Return how long after the database was back the last failed request was sent (0 when none failed)."""
        late = [o.sent_s for o in self.traffic.outcomes if o.sent_s >= self.back_s and is_error(o)]
        return max(late) - self.back_s if late else 0.0

    def duplicates(self) -> int:
        """Return how many Idempotency-Keys have more than one stored case."""
        return sum(1 for codes in self.stored.values() if len(codes) > 1)

    def acknowledged_and_stored_once(self) -> int:
        """Return how many acknowledged reports are stored exactly once, with the code they were acknowledged with."""
        return sum(1 for key, code in self.traffic.acknowledged.items() if self.stored.get(key) == [code])


def outage_cluster(root: Path) -> tuple[LocalCluster, str]:
    """Start a cluster of its own under ``root``, migrated and loaded with the fixture; return it and its URL."""
    root.chmod(0o755)  # the postgres OS user (when run as root) must reach the data folder
    cluster = LocalCluster(root / "state", database="fault")
    cluster.start()
    with psycopg2.connect(cluster.url().replace("postgresql+psycopg2", "postgresql")) as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    url = cluster.url()
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    load_directory(engine, ROOT / "fixtures" / "geojson")
    engine.dispose()
    return cluster, url


def stored_reports(url: str, key_name: str, run_id: str) -> dict[str, list[str]]:
    """Return Idempotency-Key → codes of the cases run ``run_id`` reported with the key named ``key_name``."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.idempotency_key, array_agg(i.code ORDER BY i.code) AS codes FROM incidents i "
                "JOIN api_keys k ON k.id = i.api_key_id WHERE k.name = :name AND i.idempotency_key LIKE :run "
                "GROUP BY i.idempotency_key"
            ),
            {"name": key_name, "run": f"{run_id}-%"},
        ).all()
    engine.dispose()
    return {row.idempotency_key: list(row.codes) for row in rows}


def fault_run(
    *, rate: float, seconds: float, down_at_s: float, down_for_s: float, workers: int = int(WORKERS)
) -> FaultRun:
    """Drive the mix for ``seconds``; stop the database at ``down_at_s`` for ``down_for_s``; count what is stored."""
    root = Path(tempfile.mkdtemp(prefix="citygrid-fault-", dir="/tmp"))
    cluster, url = outage_cluster(root)
    key_name = "fault run"
    try:
        secret = load_key(url, key_name)
        marks: dict[str, float] = {}
        with api_server(url, workers=workers) as (host, port):
            run(drive(host, port, Mix(secret, run_id="warm").request, rate=rate, seconds=2))

            def outage(started: float) -> None:
                time.sleep(max(0.0, started + down_at_s - time.perf_counter()))
                cluster.stop("immediate")
                marks["stopped"] = time.perf_counter() - started
                time.sleep(down_for_s)
                marks["restarting"] = time.perf_counter() - started
                cluster.start()
                marks["back"] = time.perf_counter() - started

            def start_outage(started: float) -> None:
                threading.Thread(target=outage, args=(started,), daemon=True).start()

            mix = Mix(secret, run_id="fault").request
            traffic = run(drive(host, port, mix, rate=rate, seconds=seconds, on_start=start_outage))
            deadline = time.monotonic() + 60
            while "back" not in marks and time.monotonic() < deadline:
                time.sleep(0.1)
            retried = run(retry_unacknowledged(host, port, traffic))
        return FaultRun(
            traffic=traffic,
            stopped_s=marks["stopped"],
            restarting_s=marks["restarting"],
            back_s=marks["back"],
            retried=retried,
            stored=stored_reports(url, key_name, "fault"),
        )
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def print_fault_run(run: FaultRun) -> None:
    """Print requests, errors by kind, 503s, recovery time, and reports acknowledged against stored."""
    report(run.traffic, title="fault run: the mix while PostgreSQL is stopped and started")
    outcomes = run.traffic.outcomes
    errors = {kind: sum(1 for o in outcomes if o.kind == kind and is_error(o)) for kind in KINDS}
    print(f"  database stopped at {run.stopped_s:.1f} s, start called at {run.restarting_s:.1f} s, "
          f"back at {run.back_s:.1f} s")  # fmt: skip
    print("  errors by kind: " + ", ".join(f"{k} {n}" for k, n in errors.items()))
    during = Counter(run.during_outage())
    print("  while down: " + ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(during.items())))
    print(f"  503 answers: {sum(1 for o in outcomes if o.status == 503)} "
          f"(without Retry-After: {run.outage_answers_without_retry_after()}); "
          f"500 answers: {sum(1 for o in outcomes if o.status == 500)}; "
          f"no answer: {sum(1 for o in outcomes if o.status == 0)}")  # fmt: skip
    print(f"  recovery: {run.recovery_s():.2f} s after the database was back   (limit {RECOVERY_LIMIT_S:g} s)")
    first = sum(1 for o in outcomes if o.kind == "incident" and o.status == 201)
    print(f"  reports: {len(run.traffic.acknowledged) + len(run.traffic.unacknowledged)} sent, {first} acknowledged "
          f"(201) at once, retried after the outage: {dict(run.retried)} (200 = stored before its 503)")  # fmt: skip
    stored = sum(len(codes) for codes in run.stored.values())
    print(f"  acknowledged {len(run.traffic.acknowledged)}, stored {stored}, stored exactly once with the "
          f"acknowledged code {run.acknowledged_and_stored_once()}, duplicates {run.duplicates()}")  # fmt: skip


def main() -> None:
    print("== fault: PostgreSQL stopped (immediate) and started during the load run ==")
    print_fault_run(fault_run(rate=600, seconds=60, down_at_s=20, down_for_s=10))


if __name__ == "__main__":
    main()
