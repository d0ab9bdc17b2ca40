"""The API while its database is down: 503 with Retry-After (never a hang or a 500), then recovery."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from spatial.cluster import LocalCluster
from spatial.settings import DatabaseSettings, Settings


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    root = Path(tempfile.mkdtemp(prefix="citygrid-outage-", dir="/tmp"))
    root.chmod(0o755)
    cluster = LocalCluster(root / "state", database="outage")
    cluster.start()
    with psycopg2.connect(cluster.url().replace("postgresql+psycopg2", "postgresql")) as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION postgis")
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def test_503_with_retry_after_while_down_and_recovery_without_restart(cluster: LocalCluster) -> None:
    settings = Settings(database=DatabaseSettings(DATABASE_URL=cluster.url()))
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200

        cluster.stop("immediate")  # as in a crash: pooled connections are now dead
        for _ in range(3):
            started = time.monotonic()
            down = client.get("/health")
            assert time.monotonic() - started < 5  # refused at once, never a hang
            assert down.status_code == 503
            assert down.headers["retry-after"] == "5"
            assert down.json()["code"] == "database_unavailable"

        cluster.start()
        back_at = time.monotonic()
        while client.get("/health").status_code != 200:
            assert time.monotonic() - back_at < 5, "the API did not recover within 5 s of the database"
            time.sleep(0.1)
