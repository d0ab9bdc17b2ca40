"""The ``citygrid`` command line: the local database, migrations, the fixture, loading, serving."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Connection

from spatial import audit, db, migrate
from spatial.errors import CitygridError, InvalidInput
from spatial.keys import CLI_KEY
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


@contextmanager
def _writing() -> Iterator[Connection]:
    """Open a write transaction whose changes the audit log puts down to the command line and its user."""
    with db.engine_for(database_settings()).begin() as conn:
        audit.act_as(conn, CLI_KEY)
        yield conn


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
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise InvalidInput(f"cannot read {file}: {exc.strerror}") from exc
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
                    progress.advance(task, piece.count(b"\n"))
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
        if out is None:
            Console().print_json(json.dumps(answer, ensure_ascii=False))
            return
        try:
            text_sink = _opened(out, "w", encoding="utf-8")
        except InvalidInput as exc:
            raise _fail(exc) from exc
        with text_sink:
            Console(file=text_sink).print_json(json.dumps(answer, ensure_ascii=False))
        return
    _print_chain(answer)


@contextmanager
def _output(path: Path | None) -> Iterator[IO[bytes]]:
    """Yield stdout's bytes, or the file at ``path`` opened for writing; refuse a path that cannot be written."""
    if path is None:
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with _opened(path, "wb") as handle:
        yield handle


def _opened(path: Path, mode: str, **options: Any) -> IO[Any]:
    """Return ``path`` opened for writing; raise InvalidInput naming it when it cannot be."""
    try:
        return path.open(mode, **options)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from exc


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


WORKER_STARTUP_S = 60  # how long a starting worker may take to answer the supervisor


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default: CITYGRID_API_WORKERS, or two per core)")
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    settings = api_settings()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.worker_count(),
        log_level="info",
        # A worker answers the supervisor's health checks only once it has imported this command's modules,
        # which took over uvicorn's default 5 s when several started at once on a busy 2-core machine: the
        # supervisor killed them as hung ("Child process … died") and started them again.
        timeout_worker_healthcheck=WORKER_STARTUP_S,
    )


# --- cases: bulk import, re-assignment to a boundary generation, API keys (issue 4) ---
incidents_app = typer.Typer(help="Cases (案件): bulk import and re-assignment.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, revoke, list (only a hash of each key is stored).", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(keys_app, name="keys")


@incidents_app.command("import")
def incidents_import(
    file: Annotated[Path, typer.Argument(help="CSV (lon, lat, item_code, source, reported_at…), GeoJSON, GeoPackage")],
    crs: Annotated[str | None, typer.Option(help="wgs84 (default), cgcs2000, gcj02, bd09 or EPSG:<code>")] = None,
    source: Annotated[str | None, typer.Option(help="source of rows that have no source column")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="import the good rows; without it one bad row refuses the file")
    ] = False,
    report: Annotated[Path | None, typer.Option("--report", help="CSV of bad rows (default: FILE.errors.csv)")] = None,
    no_duplicates: Annotated[
        bool, typer.Option("--no-duplicates", help="do not look for possible duplicates among open cases")
    ] = False,
) -> None:
    """Import a file of cases, each with its whole responsibility chain, in one transaction."""
    from spatial.intake import ImportRefused, import_file
    from spatial.settings import owner_settings

    errors_path = report or file.with_name(file.name + ".errors.csv")
    folder = errors_path.parent
    if (
        errors_path.is_dir()
        or not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK))
        or (errors_path.exists() and not os.access(errors_path, os.W_OK))
    ):
        # checked before the import: written after it, a failure would come with the rows already committed
        raise _fail(InvalidInput(f"cannot write the list of bad rows to {errors_path}: give --report a file in a "
                                 "folder you may write to; nothing was imported"))  # fmt: skip
    try:
        engine = db.engine_for(database_settings())
        with (
            Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console,
            ) as progress,
            engine.begin() as conn,
        ):  # fmt: skip
            tasks: dict[str, TaskID] = {}

            def advance(stage: str, done: int, total: int) -> None:
                label = {"copy": "copy (bytes)", "check": "check + assign rows", "insert": "insert"}[stage]
                if stage not in tasks:
                    tasks[stage] = progress.add_task(label, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            result = import_file(
                conn, file, key=CLI_KEY, rules=owner_settings(), crs=crs, source=source, skip_invalid=skip_invalid,
                flag_duplicates=not no_duplicates, progress=advance,
            )  # fmt: skip
    except ImportRefused as exc:
        with errors_path.open("w", encoding="utf-8-sig", newline="") as sink:  # a BOM for Excel, as the KPI CSV
            exc.report.write_errors(sink)
        console.print(f"[red]refused:[/red] {exc.message}")
        console.print(f"every bad row is listed in {errors_path}")
        raise typer.Exit(code=2) from exc
    except CitygridError as exc:
        raise _fail(exc) from exc
    if result.errors:
        with errors_path.open("w", encoding="utf-8-sig", newline="") as sink:  # a BOM for Excel, as the KPI CSV
            result.write_errors(sink)
        console.print(f"[yellow]skipped {result.invalid} bad rows[/yellow]: listed in {errors_path}")
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.seconds.items() if name != "total")
    out.print(
        f"{result.rows} rows: {result.inserted} cases imported, {result.invalid} refused, "
        f"{result.duplicates} flagged as possible duplicates ({result.seconds.get('total', 0):.1f} s: {phases})"
    )


@incidents_app.command("reassign")
def incidents_reassign(
    generation: Annotated[int, typer.Option("--generation", help="the boundary generation to assign open cases to")],
) -> None:
    """Re-assign every open case to a boundary generation in one statement; report how many moved."""
    from spatial.settings import owner_settings
    from spatial.workflow import reassign_generation

    try:
        with _writing() as conn:
            result = reassign_generation(conn, generation=generation, rules=owner_settings(), actor=CLI_KEY.actor)
    except CitygridError as exc:
        raise _fail(exc) from exc
    out.print(
        f"generation {result.generation}: {result.open_cases} open cases, {result.updated} re-assigned, "
        f"{result.moved} moved to another grid, {result.uncovered} not covered (kept as they were)"
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who holds the key, e.g. 'hotline desk 3'")],
    role: Annotated[str, typer.Option(help="public, grid_member, squad, dispatcher, planner or admin")],
    subdistrict: Annotated[str | None, typer.Option(help="limit the key to one subdistrict (9-digit code)")] = None,
    person: Annotated[str | None, typer.Option(help="the person the key belongs to (people id)")] = None,
) -> None:
    """Create an API key and print it once (only its hash is kept)."""
    from spatial.keys import create_key

    try:
        with _writing() as conn:
            key, secret = create_key(conn, name=name, role=role, subdistrict_code=subdistrict, person_id=person)
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(f"key {key.id} ({key.role}) created; it is shown this once:")
    out.print(secret, highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="the key's id (see 'citygrid keys list')")]) -> None:
    """Revoke an API key now."""
    from spatial.keys import revoke_key

    try:
        with _writing() as conn:
            revoke_key(conn, key_id)
    except CitygridError as exc:
        raise _fail(exc) from exc
    console.print(f"key {key_id} revoked")


@keys_app.command("list")
def keys_list() -> None:
    """List the API keys (never their secrets)."""
    from spatial.keys import list_keys

    with db.engine_for(database_settings()).connect() as conn:
        rows = list_keys(conn)
    table = Table("id", "name", "role", "subdistrict", "person", "prefix", "created", "revoked")
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], r["role"], r["subdistrict_code"] or "all", r["person_id"] or "", r["prefix"],
            r["created_at"].isoformat(timespec="seconds"),
            r["revoked_at"].isoformat(timespec="seconds") if r["revoked_at"] else "",
        )  # fmt: skip
    out.print(table)


# --- exports and boundary import (issue 6) ---
Values = Annotated[list[str] | None, typer.Option(help="repeat for several values")]
Day = Annotated[str | None, typer.Option(help="YYYY-MM-DD, inclusive")]


@app.command("audit")
def audit_command(
    table: Annotated[str | None, typer.Option(help="only this table, e.g. incidents, grids, api_keys")] = None,
    row: Annotated[str | None, typer.Option(help="only this row's key, e.g. a case code")] = None,
    limit: Annotated[int, typer.Option(help="how many entries, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines with before and after")] = False,
) -> None:
    """Show the audit log: who wrote what and when (it is append-only; nothing here changes it)."""
    if limit < 1:
        raise _fail(InvalidInput(f"--limit {limit} is not a count: give 1 or more"))
    with db.engine_for(database_settings()).connect() as conn:
        found, matched = audit.entries(conn, table=table, row_key=row, limit=limit)
    if as_json:
        for entry in found:
            out.print(json.dumps(entry, ensure_ascii=False, default=str), highlight=False, soft_wrap=True)
        return
    listing = Table("id", "at", "actor", "role", "action", "table", "row", "rows", title=f"{matched} entries")
    for e in found:
        listing.add_row(
            str(e["id"]), e["at"][:19], e["actor"], e["role"] or "", e["action"], e["table_name"], e["row_key"] or "",
            str(e["rows"]),
        )  # fmt: skip
    out.print(listing)


@app.command("export")
def export_command(
    dataset: Annotated[str, typer.Argument(help="illegal-buildings, incidents, stalls or markets")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="geojson, gpkg, shp.zip, csv or kml")] = "geojson",
    out_path: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="file, or folder (existing, or ending in '/': created) to write its own name in"
        ),
    ] = None,
    header: Annotated[str, typer.Option(help="CSV header: zh (Chinese labels) or en (field names)")] = "zh",
    status: Values = None,
    subdistrict: Annotated[list[str] | None, typer.Option(help="code or name, e.g. 开化街道; repeatable")] = None,
    community: Annotated[list[str] | None, typer.Option(help="code or name; repeatable")] = None,
    grid: Annotated[list[str] | None, typer.Option(help="code or name; repeatable")] = None,
    campaign: Values = None,
    source: Values = None,
    item: Values = None,
    kind: Values = None,
    licensed: Annotated[str | None, typer.Option(help="true or false (stalls)")] = None,
    market: Values = None,
    discovered_from: Day = None,
    discovered_to: Day = None,
    demolished_from: Day = None,
    demolished_to: Day = None,
    reported_from: Day = None,
    reported_to: Day = None,
    closed_from: Day = None,
    closed_to: Day = None,
    rectified_from: Day = None,
    rectified_to: Day = None,
) -> None:
    """Write an export (as GET /v1/exports/DATASET.FORMAT) and its totals sidecar FILE.totals.json."""
    import shutil
    import tempfile

    from spatial import exports

    chosen: dict[str, str | list[str] | None] = {
        "status": status, "subdistrict": subdistrict, "community": community, "grid": grid, "campaign": campaign,
        "source": source, "item": item, "kind": kind, "licensed": licensed, "market": market,
        "discovered_from": discovered_from, "discovered_to": discovered_to, "demolished_from": demolished_from,
        "demolished_to": demolished_to, "reported_from": reported_from, "reported_to": reported_to,
        "closed_from": closed_from, "closed_to": closed_to, "rectified_from": rectified_from,
        "rectified_to": rectified_to,
    }  # fmt: skip
    filters = {name: [v] if isinstance(v, str) else list(v) for name, v in chosen.items() if v}
    try:
        engine = db.engine_for(database_settings())
        with engine.connect() as conn:
            export = exports.prepare(conn, dataset, fmt, filters)
        target = _export_target(out_path, export.file_name())
        snapshot = exports.Snapshot(engine, export)
        if export.format.streamed:
            with target.open("wb") as sink:
                for chunk in snapshot.stream(header=header):
                    sink.write(chunk)
        else:
            with tempfile.TemporaryDirectory(prefix="citygrid-export-") as folder:
                try:
                    shutil.move(snapshot.write_file(Path(folder)), target)
                finally:
                    snapshot.close()
    except CitygridError as exc:
        raise _fail(exc) from exc
    sidecar = target.with_name(target.name + ".totals.json")
    summary = {"dataset": export.dataset.name, "file": target.name, "filters": export.applied}
    sidecar.write_text(json.dumps(summary | snapshot.totals.as_dict(), ensure_ascii=False, indent=2) + "\n")
    measures = snapshot.totals.measures
    table = Table("街道 subdistrict", "count", *(f"{m}" for m in measures), title=f"{target} ({sidecar.name})")
    for row in [*snapshot.totals.subdistricts, {"name": "合计 total", **snapshot.totals.total}]:
        table.add_row(row.get("name") or "—", str(row["count"]), *(f"{row[m]:,.2f}" for m in measures))
    out.print(table)


def _export_target(out_path: str | None, file_name: str) -> Path:
    """Return the file to write: ``out_path``, or ``file_name`` in it when it is a folder.

    A folder is one that exists or a path ending in "/" (created with its parents): as a Path, "lists/" loses
    its slash, and the export was written as a file named "lists".
    """
    if out_path is None:
        return Path(file_name)
    target = Path(out_path)
    if out_path.endswith(("/", os.sep)) or target.is_dir():
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create the folder {out_path}: {exc.strerror}") from exc
        return target / file_name
    return target


@app.command("import")
def import_command(
    layer: Annotated[str, typer.Argument(help="grids, communities, subdistricts or streets")],
    file: Annotated[Path, typer.Argument(help="Shapefile (.shp, .shp.zip), GeoPackage or GeoJSON")],
    crs: Annotated[
        str | None,
        typer.Option(
            help="the coordinates' CRS if the file has none or a wrong one: EPSG:4544, "
            "EPSG:4490, cgcs2000, wgs84, gcj02, bd09 or EPSG:<code>"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="import despite problems, recording them")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and show the difference; change nothing")] = False,
    label: Annotated[str | None, typer.Option(help="the new generation's label")] = None,
    valid_from: Annotated[
        datetime | None, typer.Option(help="when the new generation starts (default: now)", formats=ISO_FORMATS)
    ] = None,
    min_area: Annotated[float, typer.Option(help="report gaps/overlaps larger than this many m²")] = 1.0,
    field: Annotated[list[str] | None, typer.Option(help="OURS=THEIRS field name, e.g. code=WGBM; repeatable")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="streets: remove streets missing from the file")] = False,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="a Shapefile's text encoding, e.g. gbk or utf-8 (default: its .cpg; without one, UTF-8 or else GBK)"
        ),
    ] = None,
) -> None:
    """Import boundaries as a new generation (checked for gaps, overlaps, overhangs), or streets in place."""
    from spatial.boundaries import BoundaryProblems, ImportReport, import_boundaries

    mapping = dict(pair.split("=", 1) for pair in field or [] if "=" in pair)
    moment = valid_from.replace(tzinfo=CST) if valid_from is not None and valid_from.tzinfo is None else valid_from
    report: ImportReport | None = None
    try:
        with db.engine_for(database_settings()).connect() as conn:
            transaction = conn.begin()
            try:
                audit.act_as(conn, CLI_KEY)
                report = import_boundaries(
                    conn, layer, file, crs=crs, fields=mapping, force=force, label=label, valid_from=moment,
                    min_area_m2=min_area, replace=replace, encoding=encoding,
                )  # fmt: skip
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
    except BoundaryProblems as exc:
        _print_boundary_report(exc.report)
        raise _fail(exc) from exc
    except CitygridError as exc:
        raise _fail(exc) from exc
    _print_boundary_report(report)
    done = "would create" if dry_run else "created"
    if report.generation is not None:
        console.print(
            f"{done} boundary generation {report.generation} from {report.valid_from:%Y-%m-%d %H:%M}"
            f" (generation {report.previous_generation} ends then){' — nothing written' if dry_run else ''}"
        )
    elif dry_run:
        console.print("dry run: nothing written")


def _print_boundary_report(report: Any) -> None:
    for line in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {line}")
    if report.problems:
        table = Table("problem", "layer", "codes", "area m²", "lon", "lat", title=f"{len(report.problems)} problem(s)")
        for p in report.problems:
            table.add_row(
                p.kind, p.layer, " ".join(p.codes), "" if p.area_m2 is None else f"{p.area_m2:,.2f}",
                "" if p.lon is None else f"{p.lon:.7f}", "" if p.lat is None else f"{p.lat:.7f}",
            )  # fmt: skip
        out.print(table)
    if report.changes:
        table = Table("change", "code", "name", "m² before", "m² after", "moved", "note", title="difference")
        for c in report.changes:
            table.add_row(
                c.kind, c.code, c.name, *("" if v is None else f"{v:,.2f}" for v in (c.area_before_m2,
                c.area_after_m2, c.moved_m2)), c.note,
            )  # fmt: skip
        out.print(table)
    counts = report.counts()
    out.print(f"{report.source}: {report.features} features; " + ", ".join(f"{v} {k}" for k, v in counts.items()))


if __name__ == "__main__":
    app()
