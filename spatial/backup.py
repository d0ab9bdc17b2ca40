"""Backups: ``citygrid db dump FILE`` and ``citygrid db restore FILE`` (pg_dump / pg_restore, custom format).

The client programs come from the same PostgreSQL installation as the project's cluster; with DATABASE_URL
they are taken from PATH (or CITYGRID_DB_PG_BINDIR), and must not be older than the server.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from spatial.cluster import find_bindir
from spatial.errors import InvalidInput, SetupError
from spatial.settings import DatabaseSettings


def _program(settings: DatabaseSettings, name: str) -> str:
    try:
        return str(find_bindir(settings.pg_bindir) / name)
    except SetupError:
        found = shutil.which(name)
        if found is None:
            raise SetupError(f"{name} is not installed: apt-get install postgresql-client") from None
        return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """Return a libpq connection string without the password, and the environment that carries it."""
    parsed = make_url(url)
    env = {"PGPASSWORD": parsed.password or ""}
    dsn = (
        f"host={parsed.host or '127.0.0.1'} port={parsed.port or 5432} user={parsed.username} dbname={parsed.database}"
    )
    return dsn, env


def dump(settings: DatabaseSettings, url: str, path: Path) -> int:
    """Write the whole database to ``path`` (pg_dump custom format); return the file's size in bytes."""
    dsn, env = _libpq(url)
    proc = subprocess.run(
        [_program(settings, "pg_dump"), "--format=custom", "--no-owner", "--file", str(path), dsn],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SetupError(f"pg_dump failed: {proc.stderr.strip()}")
    return path.stat().st_size


def restore(settings: DatabaseSettings, url: str, path: Path) -> None:
    """Replace the database's contents with the dump in ``path``, in one transaction (all or nothing)."""
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist: give a file written by 'citygrid db dump'")
    dsn, env = _libpq(url)
    proc = subprocess.run(
        [_program(settings, "pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
         "--exit-on-error", "--dbname", dsn, str(path)],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error"
        raise InvalidInput(f"{path} could not be restored (nothing was changed): {message}")
