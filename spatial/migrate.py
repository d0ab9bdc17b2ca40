"""Run the Alembic migrations in ``spatial/migrations`` against a database URL."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for ``url`` built in code (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def revision_module(revision_file: str) -> ModuleType:
    """Return the module of revision ``revision_file`` (its file name without .py): its SQL, its constants."""
    path = MIGRATIONS / "versions" / f"{revision_file}.py"
    spec = importlib.util.spec_from_file_location(f"citygrid_revision_{revision_file}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def earlier_function(revision_file: str, name: str) -> str:
    """Return the ``CREATE OR REPLACE FUNCTION name(…) … $$;`` statement of an earlier revision's UPGRADE.

    For a downgrade that puts back the definition a later revision replaced, read from the revision that wrote
    it rather than copied into the later one.
    """
    sql: str = revision_module(revision_file).UPGRADE
    found = re.search(rf"CREATE (OR REPLACE )?FUNCTION {re.escape(name)}\(.*?\$\$.*?\$\$;", sql, flags=re.S)
    if found is None:
        raise LookupError(f"{revision_file} does not create function {name}")
    return "CREATE OR REPLACE FUNCTION " + found.group(0).split("FUNCTION ", 1)[1] + "\n"


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (default: empty)."""
    command.downgrade(alembic_config(url), revision)


def sync_catalogue(url: str) -> int:
    """Upsert the 10-category / 147-item catalogue from ``spatial.catalogue``; return the item count."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from spatial.catalogue import CATEGORIES, ITEMS

    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO catalogue_categories (code, name_zh, name_en, pk_theme) "
                "VALUES (:code, :name_zh, :name_en, :pk_theme) ON CONFLICT (code) DO UPDATE SET "
                "name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en, pk_theme = EXCLUDED.pk_theme"
            ),
            [{"code": c.code, "name_zh": c.name_zh, "name_en": c.name_en, "pk_theme": c.pk_theme} for c in CATEGORIES],
        )
        conn.execute(
            text(
                "INSERT INTO catalogue_items (code, category_code, name_zh, name_en, time_limit, time_unit, "
                "responsible_role, national) VALUES (:code, :category_code, :name_zh, :name_en, :time_limit, "
                ":time_unit, :responsible_role, :national) ON CONFLICT (code) DO UPDATE SET "
                "category_code = EXCLUDED.category_code, name_zh = EXCLUDED.name_zh, "
                "name_en = EXCLUDED.name_en, "
                "time_limit = EXCLUDED.time_limit, time_unit = EXCLUDED.time_unit, "
                "responsible_role = EXCLUDED.responsible_role, national = EXCLUDED.national"
            ),
            [
                {
                    "code": i.code,
                    "category_code": i.category_code,
                    "name_zh": i.name_zh,
                    "name_en": i.name_en,
                    "time_limit": i.time_limit,
                    "time_unit": i.time_unit,
                    "responsible_role": i.responsible_role,
                    "national": i.national,
                }
                for i in ITEMS
            ],  # fmt: skip
        )
    engine.dispose()
    return len(ITEMS)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema, with the catalogue in place and the map counted.

    The map's counts (0013) start as one change per stored incident; they are folded here, once, rather than
    by the first map that asks for them.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from spatial import map_counts

    upgrade(url)
    sync_catalogue(url)
    engine = create_engine(url, poolclass=NullPool)
    map_counts.fold(engine)
    engine.dispose()
