"""The project-local cluster: initialised, started on a free port, reachable, stopped; errors say what to do."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from spatial.cluster import LocalCluster
from spatial.errors import SetupError


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    # Under /tmp with mode 755, so that the server's OS user can reach it when we run as root.
    root = Path(tempfile.mkdtemp(prefix="citygrid-cluster-", dir="/tmp"))
    root.chmod(0o755)
    yield root / "state"
    shutil.rmtree(root, ignore_errors=True)


def test_start_status_connect_stop(cluster_root: Path) -> None:
    cluster = LocalCluster(cluster_root, database="scratch")
    assert cluster.status().initialised is False
    status = cluster.start()
    try:
        assert status.running and status.port is not None
        assert (cluster_root / "password").stat().st_mode & 0o777 == 0o600
        url = cluster.url().replace("postgresql+psycopg2", "postgresql")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_setting('listen_addresses')")
            assert cur.fetchone() == ("scratch", "127.0.0.1")
        assert cluster.start().port == status.port  # idempotent
    finally:
        cluster.stop()
    assert cluster.running() is False
    assert cluster.status().initialised is True


def test_a_private_parent_folder_is_explained_when_root(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    cluster = LocalCluster(private / "state")
    if os.geteuid() != 0:  # our own folder: the server runs as us and can reach it
        cluster.start()
        cluster.stop()
        return
    with pytest.raises(SetupError, match="cannot enter .* a parent folder is private"):
        cluster.start()
