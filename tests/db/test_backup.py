"""``citygrid db dump`` / ``restore``: a round trip keeps every row; a bad file changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from spatial import backup
from spatial.errors import InvalidInput
from spatial.settings import DatabaseSettings
from tests.support import fresh_database


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        tables = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars().all()
        )
        counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}
    engine.dispose()
    return counts


def test_dump_and_restore_keep_every_row(database_url: str, tmp_path: Path) -> None:
    settings = DatabaseSettings()
    path = tmp_path / "citygrid.dump"
    size = backup.dump(settings, database_url, path)
    assert size == path.stat().st_size and size > 100_000
    target = fresh_database("citygrid_restore_test")
    backup.restore(settings, target, path)
    original, restored = row_counts(database_url), row_counts(target)
    assert restored == original
    assert (restored["grids"], restored["incidents"], restored["people"]) == (193, original["incidents"], 604)


def test_restoring_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    target = fresh_database("citygrid_restore_bad_test")
    engine = create_engine(target, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE keep (n int)"))
        conn.execute(text("INSERT INTO keep VALUES (1)"))
    engine.dispose()
    bad = tmp_path / "not-a-dump"
    bad.write_bytes(b"PGDMP but not really")
    with pytest.raises(InvalidInput, match="could not be restored"):
        backup.restore(DatabaseSettings(), target, bad)
    assert row_counts(target) == {"keep": 1}
    with pytest.raises(InvalidInput, match="does not exist"):
        backup.restore(DatabaseSettings(), target, tmp_path / "missing.dump")
