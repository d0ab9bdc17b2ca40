"""Test set-up: a fresh PostGIS test database, migrated and loaded once per session from the fixture.

The database is the project's own cluster (started by ``make test``) or the server in DATABASE_URL;
the tests use a separate database named ``<name>_test`` in it. Each db test runs in a transaction
that is rolled back. A skipped test fails the run: a skipped PostGIS test hides a broken database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from spatial import migrate
from spatial.loading import load_directory
from spatial.settings import DatabaseSettings, Settings, clear_settings_cache
from tests.api.casekit import Keys, made_keys
from tests.support import FIXTURES, ROOT, fresh_database, server_url

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:  # type: ignore[no-untyped-def]
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) were skipped; no test may be skipped: " + ", ".join(_skipped),
            red=True,
        )


@pytest.fixture(scope="session")
def database_url() -> str:
    """Return the URL of the session's test database: migrated, catalogue synced, fixture loaded."""
    name = (make_url(server_url()).database or "citygrid") + "_test"
    url = fresh_database(name)
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    load_directory(engine, FIXTURES)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database=DatabaseSettings(DATABASE_URL=database_url))


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A command-line runner whose commands use the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width
    clear_settings_cache()
    yield CliRunner()
    monkeypatch.delenv("DATABASE_URL")
    clear_settings_cache()


@pytest.fixture(scope="session")
def role_keys(engine: Engine) -> Iterator[Keys]:
    """One API key per role for the whole session (squad and grid member scoped to 开化), removed after."""
    with made_keys(engine) as keys:
        yield keys


@pytest.fixture(scope="session")
def planner_client(settings: Settings, role_keys: Keys) -> Iterator[TestClient]:
    """A client that sends the planner's key (exports, scores)."""
    from api.main import create_app

    with TestClient(create_app(settings), headers=role_keys.header("planner")) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[str]:
    """A live API on a free port over the test database, for clients that speak HTTP (browsers, GDAL, OWSLib)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (ROOT / "test-output").joinpath("live-server.log")
    log.parent.mkdir(exist_ok=True)
    env = {**os.environ, "DATABASE_URL": database_url, "CITYGRID_MAP_BASEMAP": "none"}
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--port", str(port)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, f"server did not start: see {log}"
            time.sleep(0.3)
        yield base
        process.terminate()
        process.wait(timeout=20)
