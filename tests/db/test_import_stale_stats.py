"""An import's per-row probes of incidents (code taken? possible duplicate?) are index probes, whatever the
statistics of incidents say.

The bad state: a table of a page or so, ANALYZEd (with one case, or with none alive on its page), now holding a
case the file's gates see. Planned against it, the duplicate probe was a sequential scan and a sort per row,
and the code probe a sequential scan; while a helper runs such a chunk, the importing transaction fills the
table with the chunks before it, and each of those per-row scans reads them all (one 50,000-row chunk took 70 s
instead of 1.8). The plans are read as the import runs its chunk statement (``intake._chunk_sql``), with those
of the statements it calls (auto_explain, JSON, with the number of times each probe ran).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial import intake
from spatial.intake import import_file
from spatial.keys import CLI_KEY
from tests.db.test_import import G1, G2, RULES, write_csv

HEADER = ["code", "source", "item_code", "lon", "lat", "reported_at", "status", "closed_at"]
STORED = ["IMP-S-0020", "patrol", "0508", *G1, "2017-03-15T10:00:00+08:00", "handling", ""]


def _rows() -> list[list[str]]:
    """40 rows, codes IMP-S-0001..0040 (row 20's is the stored case's); rows 1-5 open beside it, 3 m and a few
    hours apart, same item: possible duplicates; rows 6-40 by another grid, the odd ones open."""
    rows = []
    for n in range(1, 41):
        if n <= 5:
            rows.append([f"IMP-S-{n:04d}", "patrol", "0508", *G1, f"2017-03-15T{10 + n}:00:00+08:00", "", ""])
        elif n % 2:
            rows.append([f"IMP-S-{n:04d}", "hotline", "0101", *G2, "2017-03-15T12:00:00+08:00", "handling", ""])
        else:
            rows.append([f"IMP-S-{n:04d}", "hotline", "0101", *G2, "2017-03-15T12:00:00+08:00", "closed",
                         "2017-03-16T12:00:00+08:00"])  # fmt: skip
    return rows


OPEN_ROWS = 5 + 17  # rows 1-5 and the odd rows 7-39: each asks for its possible duplicate
Node = dict[str, Any]  # a plan node, as EXPLAIN (FORMAT JSON) writes it


class _Plans:
    """auto_explain's plans (JSON), taken from the connection's notices as they arrive (not a list: SQLAlchemy
    logs and empties a list of notices after each of its statements)."""

    def __init__(self) -> None:
        self.plans: list[Node] = []

    def append(self, notice: str) -> None:
        if "plan:" in notice:
            self.plans.append(json.loads(notice.split("plan:", 1)[1]))


def _scans_of_incidents(node: Node, within: tuple[str, ...] = ()) -> Iterator[tuple[Node, tuple[str, ...]]]:
    """Yield every node of a plan that reads incidents, with the names of the subplans it lies in."""
    within = (*within, node.get("Subplan Name", ""))
    if node.get("Relation Name") == "incidents" and node["Node Type"].endswith("Scan"):
        yield node, within
    for child in node.get("Plans", []):
        yield from _scans_of_incidents(child, within)


@pytest.mark.parametrize("analyzed", ["with the case", "with no case alive"])
def test_the_probes_of_a_chunk_use_the_indexes_on_a_table_analyzed_as_tiny(
    conn: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, analyzed: str
) -> None:
    # the bad state, in this test's transaction (rolled back): a page of incidents, ANALYZEd as holding one case
    # or none, and a stored open case whose code and time the file spans (both gates open)
    conn.execute(text("TRUNCATE incidents CASCADE"))
    stored = write_csv(tmp_path / "stored.csv", [STORED], HEADER)
    if analyzed == "with no case alive":
        import_file(conn, stored, key=CLI_KEY, rules=RULES, workers=1)
        conn.execute(text("DELETE FROM incidents"))
        conn.execute(text("ANALYZE incidents"))  # its page holds no live row: "empty"
        import_file(conn, stored, key=CLI_KEY, rules=RULES, workers=1)
    else:
        import_file(conn, stored, key=CLI_KEY, rules=RULES, workers=1)
        conn.execute(text("ANALYZE incidents"))
    stats = conn.execute(
        text("SELECT relpages, reltuples, pg_relation_size(oid) / 8192 FROM pg_class WHERE oid = 'incidents'::regclass")
    ).one()
    assert tuple(stats) == ((1, 1.0, 1) if analyzed == "with the case" else (1, 0.0, 1))
    stored_id = conn.execute(text("SELECT id FROM incidents WHERE code = 'IMP-S-0020'")).scalar_one()

    raw = conn.connection.driver_connection
    assert raw is not None
    chunks: list[str] = []
    chunk_sql = intake._chunk_sql

    def recorded(*args: Any) -> Any:
        statement = chunk_sql(*args)
        chunks.append(statement.as_string(raw))
        return statement

    monkeypatch.setattr(intake, "_chunk_sql", recorded)
    notices = _Plans()
    monkeypatch.setattr(raw, "notices", notices)  # the pooled connection gets its list back after the test
    conn.execute(
        text(
            "LOAD 'auto_explain'; SET LOCAL auto_explain.log_min_duration = 0;"
            " SET LOCAL auto_explain.log_level = notice; SET LOCAL auto_explain.log_format = json;"
            " SET LOCAL auto_explain.log_nested_statements = on; SET LOCAL auto_explain.log_analyze = on;"
            " SET LOCAL auto_explain.log_timing = off"
        )
    )
    path = write_csv(tmp_path / "cases.csv", _rows(), HEADER)
    # one connection, so that its plans are all read here (helpers plan the same statement alike)
    report = import_file(conn, path, key=CLI_KEY, rules=RULES, skip_invalid=True, workers=1)
    conn.execute(text("SET LOCAL auto_explain.log_min_duration = -1"))

    assert (report.rows, report.inserted, report.invalid, report.duplicates) == (40, 39, 1, 5)
    assert [(e.row, e.error) for e in report.errors] == [(20, "code IMP-S-0020 already exists")]
    flagged = conn.execute(
        text("SELECT code, duplicate_of FROM incidents WHERE duplicate_of IS NOT NULL ORDER BY code")
    ).all()
    assert [tuple(r) for r in flagged] == [(f"IMP-S-{n:04d}", stored_id) for n in range(1, 6)]

    # the chunk statement ran once, and its plan (with those it called) is among the plans read
    assert len(chunks) == 1
    plans = notices.plans
    ran = [p for p in plans if p["Query Text"].startswith(chunks[0].split("%(", 1)[0])]
    assert len(ran) == 1
    probes = [
        (scan["Node Type"], scan.get("Index Name"), scan["Actual Loops"])
        for plan in plans
        for scan, within in _scans_of_incidents(plan["Plan"])
        if "CTE gates" not in within  # the gates ask once per chunk, whatever the way
    ]
    # every good row's code, and every open good row's possible duplicate, by an index probe
    assert all(node in ("Index Scan", "Index Only Scan") for node, _, _ in probes), probes
    assert sorted((str(index), loops) for _, index, loops in probes) == [
        ("incidents_code_key", 40), ("incidents_open_near_idx", OPEN_ROWS),
    ]  # fmt: skip
