"""The fixture generator is deterministic and writes what is committed, byte for byte."""

from __future__ import annotations

from pathlib import Path

from spatial.fixtures import generate
from tests.support import FIXTURES


def test_generating_again_reproduces_the_committed_files(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in FIXTURES.glob("*.geojson"))
    changed = [p.name for p in written if p.read_bytes() != (FIXTURES / p.name).read_bytes()]
    assert changed == []
