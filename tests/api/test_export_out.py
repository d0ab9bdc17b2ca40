"""``citygrid export --out``: a file, or a folder the export writes its own name in."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from spatial import exports
from spatial.cli import app

DEMOLISHED_IN_WOLONG = ["illegal-buildings", "--status", "demolished", "--subdistrict", "卧龙街道"]


def test_an_out_ending_in_a_slash_is_a_folder_created_for_the_export(tmp_path: Path, cli: CliRunner) -> None:
    folder = tmp_path / "lists"
    result = cli.invoke(app, ["export", *DEMOLISHED_IN_WOLONG, "--format", "shp.zip", "--out", f"{folder}/"])
    assert result.exit_code == 0, result.output
    today = datetime.now(exports.CST).date().isoformat()
    name = f"违法建筑_卧龙街道_已拆除_{today}.shp.zip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lists"]
    assert sorted(p.name for p in folder.iterdir()) == [name, f"{name}.totals.json"]
    assert json.loads((folder / f"{name}.totals.json").read_text(encoding="utf-8"))["file"] == name
    nested = cli.invoke(app, ["export", *DEMOLISHED_IN_WOLONG, "--format", "csv", "--out", f"{folder}/2017/"])
    assert nested.exit_code == 0, nested.output
    assert sorted(p.name for p in (folder / "2017").iterdir()) == [
        f"违法建筑_卧龙街道_已拆除_{today}.csv",
        f"违法建筑_卧龙街道_已拆除_{today}.csv.totals.json",
    ]


def test_an_out_without_a_slash_that_is_no_folder_is_the_file(tmp_path: Path, cli: CliRunner) -> None:
    result = cli.invoke(app, ["export", *DEMOLISHED_IN_WOLONG, "--format", "csv", "--out", str(tmp_path / "wl.csv")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wl.csv", "wl.csv.totals.json"]
