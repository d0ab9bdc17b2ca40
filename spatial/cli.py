"""The ``citygrid`` command line: the local database, migrations, the fixture, loading, serving."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from spatial import db, migrate
from spatial.errors import CitygridError, InvalidInput
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
CST = timezone(timedelta(hours=8))  # a moment typed without a zone is Beijing time
ISO_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"]


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


@db_app.command("dump")
def db_dump(path: Annotated[Path, typer.Argument(help="file to write (pg_dump custom format)")]) -> None:
    """Back the database up to FILE."""
    from spatial import backup

    try:
        size = backup.dump(database_settings(), _url(), path)
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(f"wrote {path} ({size:,} bytes)")


@db_app.command("restore")
def db_restore(path: Annotated[Path, typer.Argument(help="a file written by 'citygrid db dump'")]) -> None:
    """Replace the database's contents with FILE, all or nothing."""
    from spatial import backup

    try:
        backup.restore(database_settings(), _url(), path)
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(f"restored {path}")


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


@app.command("owner")
def owner_command(
    lon: Annotated[float | None, typer.Argument(help="longitude (or x in metres for a projected crs)")] = None,
    lat: Annotated[float | None, typer.Argument(help="latitude (or y)")] = None,
    crs: Annotated[str | None, typer.Option(help="wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>")] = None,
    at: Annotated[datetime | None, typer.Option(help="ISO 8601 moment (default: now)", formats=ISO_FORMATS)] = None,
    file: Annotated[Path | None, typer.Option("--file", help="CSV (lon/lat columns) or GeoJSON of points")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="where to write the answers (default: stdout)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the chain as JSON")] = False,
) -> None:
    """Who owns this point: grid, community, subdistrict, squad, grid member, street and river chiefs."""
    from spatial import owner, owner_batch
    from spatial.settings import owner_settings

    moment = at.replace(tzinfo=CST) if at is not None and at.tzinfo is None else at
    try:
        engine = db.engine_for(database_settings())
        if file is not None:
            data = file.read_bytes()
            is_json = file.suffix.lower() in (".geojson", ".json")
            reader = owner_batch.read_geojson if is_json else owner_batch.read_csv
            batch = reader(data, crs=crs)
            pieces = owner_batch.stream(engine, batch, at=moment, rules=owner_settings())
            with (
                _output(out) as sink,
                Progress(
                    TextColumn("owners"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
                ) as progress,
            ):
                task = progress.add_task("owners", total=len(batch.errors))
                for piece in pieces:
                    sink.write(piece)
                    progress.advance(task, piece.count("\n"))
                progress.update(task, completed=len(batch.errors))
            failed = sum(e is not None for e in batch.errors)
            console.print(f"{len(batch.errors)} rows, {failed} with bad coordinates")
            return
        if lon is None or lat is None:
            raise InvalidInput("give LON LAT, or --file points.csv")
        with engine.connect() as conn:
            answer = owner.lookup(conn, lon, lat, crs=crs, at=moment, rules=owner_settings()).as_dict()
    except CitygridError as exc:
        raise _fail(exc) from exc
    if as_json:
        out_console = Console(file=None if out is None else out.open("w", encoding="utf-8"))
        out_console.print_json(json.dumps(answer, ensure_ascii=False))
        return
    _print_chain(answer)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        yield handle


def _print_chain(answer: dict[str, Any]) -> None:
    def who(person: dict[str, Any] | None) -> str:
        return f"{person['name']} {person['phone']}" if person else "—"

    table = Table("", "", show_header=False)
    table.add_row("网格 grid", f"{answer['grid']['code']} {answer['grid']['name']}")
    table.add_row("社区 community", f"{answer['community']['code']} {answer['community']['name']}")
    table.add_row("街道 subdistrict", f"{answer['subdistrict']['code']} {answer['subdistrict']['name']}")
    squad = answer["squad"]
    table.add_row("执法中队 squad", f"{squad['name']} ({squad['headcount']}人) 队长 {who(squad['leader'])}")
    table.add_row("网格员 grid member", who(answer["grid_member"]))
    chief = answer["street_chief"]
    street = chief["street"]
    where = f" — {street['name']} {street['distance_m']} m" if street else ""
    table.add_row("街长 street chief", f"{who(chief['person'])} ({chief['basis']}){where}")
    table.add_row("总街长 general street chief", who(answer["general_street_chief"]))
    river = answer["river_chief"]
    table.add_row("河长 river chief", f"{who(river['person'])} — {river['river']['name']}" if river else "—")
    flags = [name for name in ("ambiguous", "outside") if answer[name]]
    table.add_row("flags", ", ".join(flags) or "—")
    table.add_row("candidates", " ".join(answer["candidates"]))
    table.add_row("to boundary", f"{answer['distance_to_boundary_m']} m")
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
