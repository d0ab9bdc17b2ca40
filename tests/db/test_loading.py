"""Loading validates every feature, runs in one transaction, is idempotent, and can repair geometry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from spatial import migrate
from spatial.errors import InvalidInput
from spatial.loading import load_directory, table_counts
from tests.support import FIXTURES, fresh_database

EXPECTED = {
    "boundary_generations": 1, "subdistricts": 3, "communities": 26, "grids": 193, "streets": 62, "rivers": 1,
    "squads": 3, "people": 604, "duties": 334, "markets": 21, "stalls": 1620, "illegal_buildings": 823,
    "operations": 64, "incidents": 4746,
}  # fmt: skip


@pytest.fixture(scope="module")
def scratch() -> Engine:
    """A migrated, empty database of its own: these tests load into it and count."""
    url = fresh_database("citygrid_loading_test")
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    return engine


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return table_counts(conn)


def test_load_twice_gives_the_same_counts(scratch: Engine) -> None:
    first = load_directory(scratch, FIXTURES)
    assert first.table_counts == EXPECTED
    assert first.read == EXPECTED
    second = load_directory(scratch, FIXTURES)
    assert second.table_counts == EXPECTED
    with scratch.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM grid_parts")).scalar_one() == 193


def _copy_with(tmp_path: Path, layer: str, change) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "layers"
    folder.mkdir()
    for name in ("boundary_generations", "subdistricts", "communities", "grids", "illegal_buildings"):
        shutil.copy(FIXTURES / f"{name}.geojson", folder)
    path = folder / f"{layer}.geojson"
    collection = json.loads(path.read_text())
    change(collection["features"])
    path.write_text(json.dumps(collection, ensure_ascii=False))
    return folder


def _bow_tie(features: list[dict]) -> None:  # type: ignore[type-arg]
    ring = features[4]["geometry"]["coordinates"][0]
    a, b, c, d = ring[0], ring[1], ring[2], ring[3]
    features[4]["geometry"]["coordinates"] = [[a, c, b, d, a]]  # self-intersecting
    features[4]["properties"]["address"] = "测试：自相交"


def test_invalid_geometry_names_file_and_feature_and_writes_nothing(scratch: Engine, tmp_path: Path) -> None:
    with scratch.begin() as conn:  # make a visible change that a failed load must not undo or add to
        conn.execute(text("DELETE FROM illegal_buildings WHERE code = 'WJ0001'"))
    before = counts(scratch)
    folder = _copy_with(tmp_path, "illegal_buildings", _bow_tie)
    with pytest.raises(InvalidInput) as caught:
        load_directory(scratch, folder)
    message = caught.value.message
    assert "illegal_buildings.geojson, feature 5 (code=WJ0005)" in message
    assert "Self-intersection" in message and "--make-valid" in message
    assert counts(scratch) == before


def _spike(features: list[dict]) -> None:  # type: ignore[type-arg]
    ring = features[6]["geometry"]["coordinates"][0]
    corner = ring[2]
    spike = [corner[0] + 0.0005, corner[1] + 0.0005]
    features[6]["geometry"]["coordinates"] = [ring[:3] + [spike, corner] + ring[3:]]  # a zero-width spike


def test_make_valid_repairs_and_reports(scratch: Engine, tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, "illegal_buildings", _spike)
    report = load_directory(scratch, folder, make_valid=True)
    assert len(report.repaired) == 1
    assert report.repaired[0].startswith("illegal_buildings.geojson, feature 7 (code=WJ0007): ")
    assert report.repaired[0].endswith("repaired")
    with scratch.connect() as conn:
        row = conn.execute(
            text("SELECT ST_IsValid(geom), ST_NPoints(geom) FROM illegal_buildings WHERE code = 'WJ0007'")
        ).one()
    assert tuple(row) == (True, 5)


def test_make_valid_refuses_a_repair_that_splits_a_footprint(scratch: Engine, tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, "illegal_buildings", _bow_tie)
    with pytest.raises(InvalidInput, match="feature 5 .*make_valid cannot turn into a Polygon"):
        load_directory(scratch, folder, make_valid=True)


def test_a_database_error_midway_rolls_back_every_layer(scratch: Engine, tmp_path: Path) -> None:
    """Grids load, then a building with an unknown status fails: the grids' change is undone too."""
    load_directory(scratch, FIXTURES)
    before = counts(scratch)

    def rename_grid_and_break_a_building(features: list[dict]) -> None:  # type: ignore[type-arg]
        features[0]["properties"]["status"] = "bulldozed"

    folder = _copy_with(tmp_path, "illegal_buildings", rename_grid_and_break_a_building)
    grids = json.loads((folder / "grids.geojson").read_text())
    grids["features"][0]["properties"]["name"] = "改名测试网格"
    (folder / "grids.geojson").write_text(json.dumps(grids, ensure_ascii=False))
    with pytest.raises(InvalidInput) as caught:
        load_directory(scratch, folder)
    assert "illegal_buildings.geojson" in caught.value.message
    assert "illegal_buildings_status_check" in caught.value.message
    assert counts(scratch) == before
    with scratch.connect() as conn:
        names = conn.execute(text("SELECT count(*) FROM grids WHERE name = '改名测试网格'")).scalar_one()
    assert names == 0


def test_missing_property_and_unknown_file_are_refused(scratch: Engine, tmp_path: Path) -> None:
    def drop_status(features: list[dict]) -> None:  # type: ignore[type-arg]
        del features[2]["properties"]["status"]

    folder = _copy_with(tmp_path, "illegal_buildings", drop_status)
    with pytest.raises(InvalidInput, match=r"feature 3 \(code=WJ0003\): property 'status' is empty"):
        load_directory(scratch, folder)
    (folder / "buildings.geojson").write_text('{"type":"FeatureCollection","features":[]}')
    with pytest.raises(InvalidInput, match="buildings.geojson in .* match no layer"):
        load_directory(scratch, folder)


def test_swapped_coordinates_are_refused_with_a_hint(scratch: Engine, tmp_path: Path) -> None:
    def swap(features: list[dict]) -> None:  # type: ignore[type-arg]
        ring = features[0]["geometry"]["coordinates"][0]
        features[0]["geometry"]["coordinates"] = [[[lat, lon] for lon, lat in ring]]
        # a swapped Wenshan point has latitude 104: out of range

    folder = _copy_with(tmp_path, "illegal_buildings", swap)
    with pytest.raises(InvalidInput, match="latitude and longitude swapped"):
        load_directory(scratch, folder)


def test_incidents_get_their_chain_when_loaded(engine: Engine) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), count(grid_code), count(grid_member_id), count(squad_code), count(street_chief_id)"
                " FROM incidents"
            )
        ).one()
        assert tuple(row) == (4746, 4746, 4746, 4746, 4746)
        mismatched = conn.execute(
            text(
                "SELECT count(*) FROM incidents i, citygrid_owner(i.geom, i.reported_at) o"
                " WHERE (i.grid_code, i.grid_member_id, i.squad_code, i.street_chief_id)"
                " IS DISTINCT FROM (o.grid_code, o.grid_member_id, o.squad_code, o.street_chief_id)"
            )
        ).scalar_one()
        assert mismatched == 0
