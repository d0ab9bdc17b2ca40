"""The command line for cases: incidents import (refused whole, or with --skip-invalid), reassign, keys."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import Engine, text
from typer.testing import CliRunner

from spatial.cli import app
from tests.api.casekit import GRID_1, GRID_2


def write(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["code", "lon", "lat", "item_code", "source", "reported_at"])
        writer.writerows(rows)
    return path


def count(engine: Engine, like: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM incidents WHERE code LIKE :l"), {"l": like}).scalar_one())


def test_import_refuses_a_file_with_bad_rows_then_takes_the_good_ones(
    cli: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "cases.csv",
        [
            ["CLI-1", *GRID_1, "0508", "patrol", "2025-09-01T09:00:00+08:00"],
            ["CLI-2", *GRID_2, "0508", "patrol", "2025-09-01T09:00:00+08:00"],
            ["CLI-3", *GRID_2, "0508", "patrol", "2025-13-01T09:00:00+08:00"],
        ],
    )
    try:
        refused = cli.invoke(app, ["incidents", "import", str(path)])
        assert refused.exit_code == 2, refused.output
        assert "1 of 3 rows are invalid" in refused.output
        assert "insert" not in refused.output  # nothing was inserted: no bar for it
        report = tmp_path / "cases.csv.errors.csv"
        assert report.read_text(encoding="utf-8").splitlines() == [
            "\ufeffrow,error",  # a BOM: Excel on a Chinese Windows reads the file as UTF-8
            '3,"reported_at 2025-13-01T09:00:00+08:00 is not an ISO 8601 time such as 2017-05-01T09:30:00+08:00, '
            'or no such day"',
        ]
        assert count(engine, "CLI-%") == 0

        taken = cli.invoke(
            app, ["incidents", "import", str(path), "--skip-invalid", "--report", str(tmp_path / "r.csv")]
        )
        assert taken.exit_code == 0, taken.output
        assert "3 rows: 2 cases imported, 1 refused, 0 flagged as possible duplicates" in taken.output
        assert (tmp_path / "r.csv").read_bytes().startswith(b"\xef\xbb\xbfrow,error\r\n3,")
        assert count(engine, "CLI-%") == 2
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM incidents WHERE code LIKE 'CLI-%'"))


def test_reassign_reports_what_moved(cli: CliRunner) -> None:
    unchanged = cli.invoke(app, ["incidents", "reassign", "--generation", "1"])
    assert unchanged.exit_code == 0, unchanged.output
    assert "generation 1: 985 open cases, 0 re-assigned, 0 moved to another grid, 0 not covered" in unchanged.output
    unknown = cli.invoke(app, ["incidents", "reassign", "--generation", "9"])
    assert unknown.exit_code == 2 and "no boundary generation 9" in unknown.output


def test_keys_are_created_listed_and_revoked(cli: CliRunner, engine: Engine) -> None:
    try:
        created = cli.invoke(app, ["keys", "create", "--name", "cli hotline desk", "--role", "dispatcher"])
        assert created.exit_code == 0, created.output
        secret = next(line for line in created.output.splitlines() if line.startswith("cg_"))
        assert len(secret) == 46
        with engine.connect() as conn:
            key_id = conn.execute(text("SELECT id FROM api_keys WHERE name = 'cli hotline desk'")).scalar_one()
        listed = cli.invoke(app, ["keys", "list"])
        assert "cli hotline desk" in listed.output and secret not in listed.output
        assert cli.invoke(app, ["keys", "revoke", str(key_id)]).exit_code == 0
        again = cli.invoke(app, ["keys", "revoke", str(key_id)])
        assert again.exit_code == 2 and f"no active key {key_id}" in again.output
        bad_role = cli.invoke(app, ["keys", "create", "--name", "x", "--role", "mayor"])
        assert bad_role.exit_code == 2 and "unknown role 'mayor'" in bad_role.output
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM api_keys WHERE name = 'cli hotline desk'"))


def test_import_of_a_file_that_is_not_csv_says_which_row_in_one_line(
    cli: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(
        f"lon,lat,item_code,source,reported_at\n{GRID_1[0]},{GRID_1[1]},0508,hotline,2017-04-01T08:00:00+08:00,extra\n"
    )
    refused = cli.invoke(app, ["incidents", "import", str(path), "--skip-invalid"])
    assert refused.exit_code == 2, refused.output
    assert refused.output.splitlines()[-1] == (
        "error: row 1 (line 2 counting the header) has more values than the header's 5 columns: quote a value that "
        'has a comma in it ("a, b") or name every column in the header; nothing was imported'
    )
    assert not (tmp_path / "ragged.csv.errors.csv").exists()


def test_import_refuses_a_report_path_it_cannot_write_before_importing(
    cli: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "cases.csv",
        [
            ["CLI-R1", *GRID_1, "0508", "patrol", "2025-09-01T09:00:00+08:00"],
            ["CLI-R2", *GRID_2, "0508", "patrol", "2025-13-01T09:00:00+08:00"],
        ],
    )
    nowhere = tmp_path / "no such folder" / "err.csv"
    refused = cli.invoke(app, ["incidents", "import", str(path), "--skip-invalid", "--report", str(nowhere)])
    assert refused.exit_code == 2, refused.output
    assert " ".join(refused.output.split()) == (
        f"error: cannot write the list of bad rows to {nowhere}: give --report a file in a folder you may write to; "
        "nothing was imported"
    )
    assert count(engine, "CLI-R%") == 0
