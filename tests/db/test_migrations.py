"""The schema is built by Alembic: up from empty, down back to empty, and up again."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from spatial import migrate
from tests.support import fresh_database

TABLES = {
    "boundary_generations", "subdistricts", "communities", "grids", "grid_parts", "streets", "rivers", "squads",
    "people", "duties", "catalogue_categories", "catalogue_items", "illegal_buildings", "markets", "stalls",
    "operations", "incidents", "incident_events", "alembic_version", "api_keys", "working_calendar", "audit_log",
    "grid_cells", "street_cells", "river_cells", "grid_chain_periods", "incident_map_counts", "incident_map_changes",
}  # fmt: skip


def _objects(url: str) -> tuple[set[str], set[str], set[str]]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()) - {
            "spatial_ref_sys"
        }
        functions = set(conn.execute(text("SELECT proname FROM pg_proc WHERE proname LIKE 'citygrid%'")).scalars())
        extensions = set(conn.execute(text("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")).scalars())
    engine.dispose()
    return tables, functions, extensions


def _schemas(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'citygrid%'")).scalars())
    engine.dispose()
    return names


def test_upgrade_from_empty_downgrade_to_empty_and_up_again() -> None:
    url = fresh_database("citygrid_migrations_test")
    assert _objects(url) == (set(), set(), set())

    migrate.upgrade(url)
    tables, functions, extensions = _objects(url)
    assert tables == TABLES
    assert functions == {
        "citygrid_owner", "citygrid_owner_points", "citygrid_duty_holder", "citygrid_generation_at",
        "citygrid_refresh_grid_parts", "citygrid_default_demolished_m2", "citygrid_due_times", "citygrid_due_at",
        "citygrid_import_time", "citygrid_count_change", "citygrid_audit_refuse", "citygrid_audit_actor",
        "citygrid_audit_row", "citygrid_cell_m", "citygrid_cell_reach_m", "citygrid_cells_near", "citygrid_cell_ring",
        "citygrid_file_grid_cells", "citygrid_refresh_grid_cells", "citygrid_refresh_line_cells",
        "citygrid_grid_chain_rows", "citygrid_refresh_grid_chains", "citygrid_cell_offsets", "citygrid_nearest_grid",
        "citygrid_import_column_times", "citygrid_import_column_numbers", "citygrid_import_time_shaped",
        "citygrid_map_inserted", "citygrid_map_updated", "citygrid_map_deleted", "citygrid_map_truncated",
        "citygrid_import_chain", "citygrid_import_joined_times", "citygrid_import_joined_numbers",
        "citygrid_import_probes",
    }  # fmt: skip
    assert extensions == {"postgis", "btree_gist"}
    assert _schemas(url) == {"citygrid_import", "citygrid_cache"}  # import scratch tables (0005), map results (0006)

    migrate.downgrade(url)
    assert _schemas(url) == set()
    assert _objects(url) == ({"alembic_version"}, set(), set())

    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM catalogue_items")).scalar_one() == 147
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0018"
    engine.dispose()
