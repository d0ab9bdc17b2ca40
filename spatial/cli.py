"""The ``citygrid`` command line: the local database, migrations, the fixture, loading, serving."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from spatial import db, migrate
from spatial.errors import CitygridError
from spatial.settings import api_settings, database_settings

app = typer.Typer(
    help="citygrid: urban-management enforcement on PostGIS (城市管理综合行政执法).", no_args_is_help=True
)
db_app = typer.Typer(help="The database: the project-local PostGIS cluster, or DATABASE_URL.", no_args_is_help=True)
fixtures_app = typer.Typer(help="The synthetic Wenshan fixture.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(fixtures_app, name="fixtures")

console = Console(stderr=True)
out = Console()

FIXTURE_DIR = Path("fixtures/geojson")


def _fail(exc: CitygridError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc.message}")
    return typer.Exit(code=2)


def _url() -> str:
    return db.database_url(database_settings())


@db_app.command("start")
def db_start() -> None:
    """Start the project-local PostGIS cluster (initialising it on first use); no-op with DATABASE_URL."""
    settings = database_settings()
    if settings.url:
        console.print("DATABASE_URL is set: using that server, no local cluster started.")
        return
    try:
        status = db.local_cluster(settings).start()
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(f"PostGIS running on 127.0.0.1:{status.port} (data in {status.data_dir})")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the project-local cluster."""
    try:
        db.local_cluster(database_settings()).stop()
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print("stopped")


@db_app.command("status")
def db_status() -> None:
    """Say whether the database is reachable and where."""
    settings = database_settings()
    if settings.url:
        out.print(f"using DATABASE_URL ({settings.url.split('@')[-1]})")
        return
    status = db.local_cluster(settings).status()
    state = "running" if status.running else ("stopped" if status.initialised else "not initialised")
    out.print(f"local cluster: {state}; data {status.data_dir}; port {status.port}")
    if not status.running:
        raise typer.Exit(code=3)


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (for psql, QGIS or DATABASE_URL elsewhere)."""
    try:
        out.print(_url(), soft_wrap=True, highlight=False)
    except CitygridError as exc:
        raise _fail(exc) from exc


@db_app.command("migrate")
def db_migrate() -> None:
    """Migrate the schema to the newest revision and refresh the catalogue."""
    try:
        migrate.migrate(_url())
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print("schema at head; catalogue: 10 categories, 147 items")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "base") -> None:
    """Migrate the schema down (default: to empty)."""
    migrate.downgrade(_url(), revision)


@fixtures_app.command("generate")
def fixtures_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write")] = FIXTURE_DIR,
) -> None:
    """Write the deterministic Wenshan fixture (byte for byte the same every run)."""
    from spatial.fixtures import generate

    for path in generate(out_dir):
        console.print(f"wrote {path}")


@app.command("load")
def load(
    directory: Annotated[Path, typer.Argument(help="folder of layer files named after their layer")] = FIXTURE_DIR,
    make_valid: Annotated[bool, typer.Option("--make-valid", help="repair invalid geometries and report them")] = False,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="load only into a database with no grids")] = False,
) -> None:
    """Validate and load layer files in one transaction (idempotent: loading twice gives the same rows)."""
    from spatial.loading import database_is_empty, load_directory

    try:
        engine = db.engine_for(database_settings())
        if if_empty and not database_is_empty(engine):
            console.print("database already holds grids: nothing loaded")
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def advance(layer: str, done: int, total: int) -> None:
                if layer not in tasks:
                    tasks[layer] = progress.add_task(layer, total=total)
                progress.update(tasks[layer], completed=done)

            report = load_directory(engine, directory, make_valid=make_valid, progress=advance)
    except CitygridError as exc:
        raise _fail(exc) from exc
    for line in report.repaired:
        console.print(f"[yellow]repaired[/yellow] {line}")
    table = Table("layer", "rows in file", "rows in table")
    for name, count in report.table_counts.items():
        table.add_row(name, str(report.read.get(name, "")), str(count))
    out.print(table)


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    settings = api_settings()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


if __name__ == "__main__":
    app()
