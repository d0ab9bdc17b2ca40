"""Importing real boundaries: new generations, CRS handling, topology problems located and measured, the diff."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from spatial import migrate
from spatial.boundaries import BoundaryProblems, ImportReport, check_topology, import_boundaries, read_boundary_file
from spatial.cli import app
from spatial.crs import wgs84_to_gcj02
from spatial.errors import InvalidInput
from spatial.layers import grids
from spatial.loading import load_directory
from spatial.settings import clear_settings_cache
from tests.support import FIXTURES, fresh_database

TO_4544 = Transformer.from_crs(4326, 4544, always_xy=True)


def in_4544(geometry: Any) -> Any:
    return shapely.transform(geometry, lambda xy: np.column_stack(TO_4544.transform(xy[:, 0], xy[:, 1])))


def area_m2(geometry: Any) -> float:
    return float(in_4544(geometry).area)


def write_shapefile(frame: gpd.GeoDataFrame, path: Path, *, encoding: str = "UTF-8", cpg: bool = True) -> None:
    """Write a Shapefile as the surveying bureau would: field names cut to 10 characters (community_).

    ``cpg`` False deletes the .cpg, as Chinese ArcGIS Shapefiles often come: nothing then says the encoding.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Column names longer than 10 characters", UserWarning)
        warnings.filterwarnings("ignore", "Normalized/laundered field name", RuntimeWarning)
        frame.to_file(path, encoding=encoding)
    if not cpg:
        path.with_suffix(".cpg").unlink()


def fixture_grids() -> gpd.GeoDataFrame:
    return gpd.read_file(FIXTURES / "grids.geojson")


def imported(conn: Connection, *args: Any, **kwargs: Any) -> ImportReport:
    """Import inside a savepoint that is rolled back afterwards, leaving the test's transaction as it was."""
    savepoint = conn.begin_nested()
    try:
        return import_boundaries(conn, *args, **kwargs)
    finally:
        savepoint.rollback()


def scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar_one()


def test_the_fixture_generation_has_no_topology_problems(conn: Connection) -> None:
    assert check_topology(conn, 1) == []


def test_a_4544_shapefile_of_the_fixture_round_trips_to_the_same_grids(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "grids.shp"
    write_shapefile(fixture_grids().to_crs(4544), path)
    savepoint = conn.begin_nested()
    report = import_boundaries(conn, "grids", path, crs="EPSG:4544")
    assert (report.generation, report.previous_generation, report.features) == (2, 1, 193)
    assert report.problems == [] and report.warnings == []
    assert report.counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": 193}
    counts = conn.execute(
        text(
            "SELECT (SELECT count(*) FROM subdistricts WHERE generation = 2), (SELECT count(*) FROM communities"
            " WHERE generation = 2), (SELECT count(*) FROM grids WHERE generation = 2),"
            " (SELECT count(DISTINCT grid_code) FROM grid_parts WHERE generation = 2)"
        )
    ).one()
    assert tuple(counts) == (3, 26, 193, 193)
    same = conn.execute(
        text(
            "SELECT count(*), max(ST_Area(ST_Transform(ST_SymDifference(a.geom, b.geom), 4544))) FROM grids a"
            " JOIN grids b ON b.code = a.code AND b.name = a.name AND b.community_code = a.community_code"
            " WHERE a.generation = 1 AND b.generation = 2"
        )
    ).one()
    assert same[0] == 193 and same[1] < 0.01
    ends, starts = conn.execute(
        text("SELECT (SELECT valid_to FROM boundary_generations WHERE generation = 1), valid_from"
             " FROM boundary_generations WHERE generation = 2")
    ).one()  # fmt: skip
    assert ends == starts == report.valid_from
    owner = conn.execute(
        text("SELECT generation, grid_code FROM citygrid_owner(ST_SetSRID(ST_Point(104.244, 23.371), 4326))")
    ).one()
    assert tuple(owner) == (2, "532601001008006")
    savepoint.rollback()


@pytest.mark.parametrize(("layer", "count"), [("communities", 26), ("subdistricts", 3)])
def test_cgcs2000_geopackages_of_communities_and_subdistricts_round_trip(
    conn: Connection, tmp_path: Path, layer: str, count: int
) -> None:
    path = tmp_path / f"{layer}.gpkg"
    gpd.read_file(FIXTURES / f"{layer}.geojson").set_crs(4490, allow_override=True).to_file(path)
    report = imported(conn, layer, path)  # the GeoPackage says EPSG:4490 (CGCS2000): no --crs needed
    assert report.problems == [] and report.warnings == []
    assert report.counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": count}


def test_gcj02_coordinates_are_brought_back_to_wgs84(conn: Connection, tmp_path: Path) -> None:
    frame = fixture_grids()
    frame["geometry"] = shapely.transform(frame.geometry.values, _gcj)
    path = tmp_path / "grids_amap.geojson"
    frame.to_file(path)  # GeoJSON says WGS-84; the coordinates are AMap's GCJ-02
    report = imported(conn, "grids", path, crs="gcj02")
    assert report.counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": 193}
    assert report.warnings == ["grids_amap.geojson says EPSG:4326; its coordinates were read as gcj02 (--crs)"]


def _gcj(xy: Any) -> Any:
    lon, lat = wgs84_to_gcj02(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def test_a_gbk_shapefile_without_a_cpg_is_read_as_gbk(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "wg.shp"
    write_shapefile(fixture_grids().to_crs(4544), path, encoding="GBK", cpg=False)
    report = imported(conn, "grids", path, crs="EPSG:4544")
    assert report.counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": 193}
    frame, _ = read_boundary_file(path, grids.layer, crs="EPSG:4544")
    assert frame["name"].iloc[0] == "东风社区第1网格"
    assert list(frame["name"]) == list(fixture_grids()["name"])


def test_a_utf8_shapefile_without_a_cpg_is_read_as_utf8(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "wg.shp"
    write_shapefile(fixture_grids().to_crs(4544), path, encoding="UTF-8", cpg=False)
    frame, _ = read_boundary_file(path, grids.layer, crs="EPSG:4544")
    assert list(frame["name"]) == list(fixture_grids()["name"])
    report = imported(conn, "grids", path, crs="EPSG:4544")
    assert report.counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": 193}


def test_a_shapefile_neither_utf8_nor_gbk_is_refused_unless_its_encoding_is_given(tmp_path: Path) -> None:
    frame = fixture_grids().to_crs(4544)
    frame["name"] = "\xff\xff"  # two bytes 0xFF in Latin-1: neither UTF-8 nor GB18030
    path = tmp_path / "wg.shp"
    write_shapefile(frame, path, encoding="ISO-8859-1", cpg=False)
    with pytest.raises(InvalidInput) as caught:
        read_boundary_file(path, grids.layer, crs="EPSG:4544")
    assert caught.value.message == (
        f"{path}: the Shapefile declares no encoding (no .cpg) and its text is neither UTF-8 nor GBK; "
        "say which encoding it is in with --encoding (e.g. --encoding big5)"
    )
    forced, _ = read_boundary_file(path, grids.layer, crs="EPSG:4544", encoding="latin-1")
    assert forced["name"].iloc[0] == "\xff\xff"
    with pytest.raises(InvalidInput) as wrong:
        read_boundary_file(path, grids.layer, crs="EPSG:4544", encoding="utf-8")
    assert wrong.value.message == (
        f"{path}: its text is not utf-8 (invalid start byte at byte 0); give its real encoding"
    )
    with pytest.raises(InvalidInput) as unknown:
        read_boundary_file(path, grids.layer, crs="EPSG:4544", encoding="klingon")
    assert unknown.value.message == "'klingon' is not a known text encoding: give e.g. gbk, gb18030 or utf-8"


def test_a_file_without_a_crs_needs_one(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "grids.shp"
    write_shapefile(fixture_grids().to_crs(4544), path)
    path.with_suffix(".prj").unlink()
    with pytest.raises(InvalidInput) as caught:
        imported(conn, "grids", path)
    assert "no coordinate reference system; say which with --crs" in caught.value.message


def _damaged(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Write the fixture grids with a gap, an overlap and a self-intersection; return what to expect."""
    frame = fixture_grids().set_index("code", drop=False)
    # A gap: grid A's first corner pulled 30 % of the way to its centre.
    a = "532601001001001"
    polygon = frame.at[a, "geometry"]
    corners = list(polygon.exterior.coords)[:-1]
    centre = polygon.centroid
    moved = (corners[0][0] + 0.3 * (centre.x - corners[0][0]), corners[0][1] + 0.3 * (centre.y - corners[0][1]))
    shrunk = shapely.Polygon([moved, *corners[1:]])
    frame.at[a, "geometry"] = shrunk
    gap = polygon.difference(shrunk)
    # An overlap: grid B grows a 20 m square over the middle of the edge it shares with grid C.
    b, c = _neighbours(frame, "532601002003")
    edge = frame.at[b, "geometry"].intersection(frame.at[c, "geometry"])
    middle = edge.interpolate(0.5, normalized=True)
    square = shapely.box(middle.x - 0.0001, middle.y - 0.0001, middle.x + 0.0001, middle.y + 0.0001)
    frame.at[b, "geometry"] = frame.at[b, "geometry"].union(square)
    overlap = frame.at[b, "geometry"].intersection(frame.at[c, "geometry"])
    # A self-intersection: grid D's ring as a bow tie (corners 0, 2, 1, 3).
    d = "532601003002004"
    original = frame.at[d, "geometry"]
    k = list(original.exterior.coords)[:-1]
    bow_tie = shapely.Polygon([k[0], k[2], k[1], k[3]])
    frame.at[d, "geometry"] = bow_tie
    crossing = shapely.LineString([k[0], k[2]]).intersection(shapely.LineString([k[1], k[3]]))
    path = tmp_path / "grids_damaged.geojson"
    frame.reset_index(drop=True).to_file(path)
    expected = {
        "a": a, "gap": gap, "b": b, "c": c, "overlap": overlap, "d": d, "crossing": crossing,
        "bow_tie_gap_m2": area_m2(original) - area_m2(shapely.make_valid(bow_tie)),
    }  # fmt: skip
    return path, expected


def _neighbours(frame: gpd.GeoDataFrame, community: str) -> tuple[str, str]:
    codes = sorted(code for code in frame.index if code.startswith(community))
    for first in codes:
        for second in codes:
            shared = frame.at[first, "geometry"].intersection(frame.at[second, "geometry"])
            if first < second and shared.geom_type == "LineString":
                if in_4544(shared).length > 300:
                    return first, second
    raise AssertionError(f"no two grids of {community} share a long edge")


def test_a_gap_an_overlap_and_a_self_intersection_are_refused_and_located(conn: Connection, tmp_path: Path) -> None:
    path, expected = _damaged(tmp_path)
    with pytest.raises(BoundaryProblems) as caught:
        imported(conn, "grids", path)
    problems = caught.value.report.problems
    community_a, community_d = expected["a"][:12], expected["d"][:12]
    assert sorted((p.kind, p.codes) for p in problems) == sorted(
        [
            ("invalid_geometry", (expected["d"],)),
            ("overlap", (expected["b"], expected["c"])),
            ("gap", (community_a,)),
            ("gap", (community_d,)),
            ("gap", (community_d,)),
        ]
    )
    by_kind = {(p.kind, p.codes[0]): p for p in problems}
    invalid = by_kind["invalid_geometry", expected["d"]]
    assert "Self-intersection" in invalid.message
    assert shapely.Point(invalid.lon, invalid.lat).distance(expected["crossing"]) < 1e-7
    overlap = by_kind["overlap", expected["b"]]
    assert abs(overlap.area_m2 - area_m2(expected["overlap"])) < 0.01
    assert expected["overlap"].buffer(1e-9).contains(shapely.Point(overlap.lon, overlap.lat))
    gap = by_kind["gap", community_a]
    assert abs(gap.area_m2 - area_m2(expected["gap"])) < 0.01
    assert expected["gap"].buffer(1e-9).contains(shapely.Point(gap.lon, gap.lat))
    bow_tie_gaps = sum(p.area_m2 for p in problems if p.kind == "gap" and p.codes == (community_d,))
    assert abs(bow_tie_gaps - expected["bow_tie_gap_m2"]) < 0.01
    message = caught.value.message
    assert "grids_damaged.geojson: 5 problem(s), nothing imported" in message and "--force" in message
    assert scalar(conn, "SELECT count(*) FROM boundary_generations") == 1


def test_force_creates_the_generation_and_records_its_problems(conn: Connection, tmp_path: Path) -> None:
    path, expected = _damaged(tmp_path)
    savepoint = conn.begin_nested()
    report = import_boundaries(conn, "grids", path, force=True, label="测试 forced")
    assert report.generation == 2 and len(report.problems) == 5
    label, recorded = conn.execute(text("SELECT label, problems FROM boundary_generations WHERE generation = 2")).one()
    assert label == "测试 forced"
    assert sorted(p["kind"] for p in recorded) == ["gap", "gap", "gap", "invalid_geometry", "overlap"]
    assert json.loads(json.dumps(recorded))[0]["lon"] is not None
    changed = {c.code: c for c in report.changes}
    assert set(changed) == {expected["a"], expected["b"], expected["d"]}
    assert abs(changed[expected["a"]].moved_m2 - area_m2(expected["gap"])) < 0.01
    savepoint.rollback()


def test_the_diff_names_added_removed_and_changed_codes(conn: Connection, tmp_path: Path) -> None:
    frame = fixture_grids().set_index("code", drop=False)
    # Split grid X in two along a line through its centre; the new half gets a new code.
    x = "532601001002001"
    whole = frame.at[x, "geometry"]
    west, south, east, north = whole.bounds
    middle = (west + east) / 2
    left = whole.intersection(shapely.box(west - 1, south - 1, middle, north + 1))
    right = whole.intersection(shapely.box(middle, south - 1, east + 1, north + 1))
    frame.at[x, "geometry"] = left
    frame.loc["532601001002099"] = {"code": "532601001002099", "community_code": "532601001002",
                                    "name": "新网格", "generation": 1, "geometry": right}  # fmt: skip
    # Merge grid Y into grid Z.
    y, z = _neighbours(frame, "532601001004")
    frame.at[z, "geometry"] = shapely.union(frame.at[y, "geometry"], frame.at[z, "geometry"]).normalize()
    frame = frame.drop(index=y)
    old_name = frame.at["532601001005001", "name"]
    frame.at["532601001005001", "name"] = "改名网格"
    path = tmp_path / "grids_edited.gpkg"
    frame.reset_index(drop=True).to_file(path)
    report = imported(conn, "grids", path)
    assert report.problems == []
    assert report.counts() == {"added": 1, "removed": 1, "changed": 3, "unchanged": 189}
    changes = {c.code: c for c in report.changes}
    assert (changes["532601001002099"].kind, changes[y].kind) == ("added", "removed")
    assert abs(changes["532601001002099"].area_after_m2 - area_m2(right)) < 0.01
    assert abs(changes[x].area_before_m2 - area_m2(whole)) < 0.01
    assert abs(changes[x].area_after_m2 - area_m2(left)) < 0.01
    assert changes["532601001005001"].note == f"renamed from {old_name}"
    assert report.warnings == ["1 grid(s) have no grid member on duty: 532601001002099; add their duties"]


def test_codes_that_cannot_be_stored_are_refused_even_with_force(conn: Connection, tmp_path: Path) -> None:
    frame = fixture_grids()
    frame.loc[1, "code"] = frame.loc[0, "code"]
    frame.loc[2, ["code", "community_code"]] = ["532601009009001", "532601009009"]
    path = tmp_path / "grids.geojson"
    frame.to_file(path)
    with pytest.raises(InvalidInput) as caught:
        imported(conn, "grids", path, force=True)
    message = caught.value.message
    assert "codes appear twice: 532601001001001" in message
    assert "community_code not among the current communities: 532601009009" in message


def test_communities_cannot_leave_grids_without_their_community(conn: Connection, tmp_path: Path) -> None:
    frame = gpd.read_file(FIXTURES / "communities.geojson")
    frame = frame[frame["code"] != "532601003007"]
    path = tmp_path / "communities.geojson"
    frame.to_file(path)
    with pytest.raises(InvalidInput) as caught:
        imported(conn, "communities", path)
    assert "current grids would lose their community: 532601003007001" in caught.value.message


def test_streets_are_upserted_and_replaced_in_place(conn: Connection, tmp_path: Path) -> None:
    frame = gpd.read_file(FIXTURES / "streets.geojson").sort_values("code").reset_index(drop=True)
    renamed = frame.loc[0, "code"]
    frame.loc[0, "name"] = "新命名大道"
    dropped = list(frame.loc[1:2, "code"])
    path = tmp_path / "streets.gpkg"
    frame.drop(index=[1, 2]).to_file(path)
    report = imported(conn, "streets", path, replace=True)
    assert report.counts() == {"added": 0, "removed": 2, "changed": 1, "unchanged": 59}
    assert {c.code: c.kind for c in report.changes} == {
        renamed: "changed",
        dropped[0]: "removed",
        dropped[1]: "removed",
    }
    assert report.generation is None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database with the fixture's boundaries and people only: the CLI commits to it."""
    url = fresh_database("citygrid_import_cli_test")
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    folder = tmp_path_factory.mktemp("layers")
    for name in ("boundary_generations", "subdistricts", "communities", "grids", "streets", "squads", "people",
                 "duties"):  # fmt: skip
        shutil.copy(FIXTURES / f"{name}.geojson", folder)
    load_directory(engine, folder)
    yield engine
    engine.dispose()


@pytest.fixture
def uncached_settings() -> Iterator[None]:
    """The CLI reads DATABASE_URL through cached settings: start from, and leave, an empty cache."""
    clear_settings_cache()
    yield
    clear_settings_cache()


def test_cli_import_dry_run_then_commit_then_refuse(scratch: Engine, uncached_settings: None, tmp_path: Path) -> None:
    env = {"DATABASE_URL": scratch.url.render_as_string(hide_password=False)}
    path = tmp_path / "grids.shp"
    write_shapefile(fixture_grids().to_crs(4544), path)
    dry = CliRunner().invoke(app, ["import", "grids", str(path), "--crs", "EPSG:4544", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would create boundary generation 2" in dry.output and "nothing written" in dry.output
    assert "193 features; 0 added, 0 removed, 0 changed, 193 unchanged" in dry.output
    with scratch.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM boundary_generations") == 1
    done = CliRunner().invoke(app, ["import", "grids", str(path), "--crs", "EPSG:4544"], env=env)
    assert done.exit_code == 0, done.output
    assert "created boundary generation 2" in done.output
    with scratch.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM grids WHERE generation = 2") == 193
        assert scalar(conn, "SELECT citygrid_generation_at(now())") == 2
    damaged, _ = _damaged(tmp_path)
    refused = CliRunner().invoke(app, ["import", "grids", str(damaged)], env=env)
    assert refused.exit_code == 2
    assert "5 problem(s)" in refused.output and "overlap" in refused.output and "invalid geometry" in refused.output
    with scratch.connect() as conn:
        assert scalar(conn, "SELECT max(generation) FROM boundary_generations") == 2


def test_cli_import_reads_a_gbk_shapefile_without_a_cpg_and_takes_encoding(
    scratch: Engine, uncached_settings: None, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": scratch.url.render_as_string(hide_password=False), "COLUMNS": "200"}
    path = tmp_path / "wg.shp"
    write_shapefile(fixture_grids().to_crs(4544), path, encoding="GBK", cpg=False)
    path.with_suffix(".prj").unlink()
    dry = CliRunner().invoke(app, ["import", "grids", str(path), "--crs", "EPSG:4544", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "193 features; 0 added, 0 removed, 0 changed, 193 unchanged" in dry.output
    forced = ["import", "grids", str(path), "--crs", "EPSG:4544", "--dry-run", "--encoding", "gbk"]
    assert "193 unchanged" in CliRunner().invoke(app, forced, env=env).output
    wrong = CliRunner().invoke(app, [*forced[:-1], "utf-8"], env=env)
    assert wrong.exit_code == 2
    assert f"error: {path}: its text is not utf-8 (invalid start byte at byte 0); give its real encoding" in " ".join(
        wrong.output.split()
    )
