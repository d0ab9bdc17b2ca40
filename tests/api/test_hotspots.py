"""/v1/hotspots: Getis-Ord Gi* with FDR bins; the planted hotspots are 99 % hot; equal to esda run directly."""

from __future__ import annotations

from collections import Counter

import esda
import h3
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from spatial import hotspots
from spatial.fixtures import planted_hotspots


@pytest.fixture(scope="module")
def planted() -> dict[str, tuple[float, float]]:
    return planted_hotspots()


def test_planted_hotspots_are_99_percent_hot_spots(client: TestClient, planted: dict[str, tuple[float, float]]) -> None:
    response = client.get("/v1/hotspots", params={"source": "hotline", "cell": "h3:9"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    cells = {f["id"]: f["properties"] for f in response.json()["features"]}
    assert len(cells) == 390
    assert sum(p["count"] for p in cells.values()) == 3694
    found = {key: cells[h3.latlng_to_cell(lat, lon, 9)] for key, (lon, lat) in planted.items()}
    assert {key: (p["gi_bin"], p["confidence"]) for key, p in found.items()} == {
        "market": (3, 99), "barbecue": (3, 99), "river": (3, 99), "site": (3, 99),
    }  # fmt: skip
    assert all(p["z"] > 4 for p in found.values())


def test_gi_star_equals_esda_on_the_same_aggregation(engine: Engine) -> None:
    with engine.connect() as conn:
        cells = hotspots.aggregate_h3(conn, hotspots.Filters(source="hotline"), 9, 1)
    ours = hotspots.gi_star(cells, permutations=999, seed=7)
    direct = esda.G_Local(cells.counts, cells.weights(), transform="B", permutations=999, star=True, seed=7, n_jobs=1)
    np.testing.assert_allclose([h.z for h in ours], direct.Zs, rtol=0, atol=1e-12)
    np.testing.assert_allclose([h.p_sim for h in ours], direct.p_sim, rtol=0, atol=0)
    p_two = np.minimum(1, 2 * direct.p_norm)
    expected_bins = np.zeros(len(p_two), dtype=int)
    for level, alpha in ((1, 0.10), (2, 0.05), (3, 0.01)):
        significant = p_two <= esda.fdr(p_two, alpha)
        expected_bins[significant] = level * np.sign(direct.Zs[significant]).astype(int)
    assert [h.gi_bin for h in ours] == expected_bins.tolist()


def test_grid_cells_count_what_the_filters_select(client: TestClient, engine: Engine) -> None:
    body = client.get("/v1/hotspots", params={"cell": "grid", "item": "0701"}).json()
    assert len(body["features"]) == 193
    with engine.connect() as conn:
        expected = conn.execute(text("SELECT count(*) FROM incidents WHERE item_code = '0701'")).scalar_one()
    assert sum(f["properties"]["count"] for f in body["features"]) == expected


def test_bad_parameters_say_what_to_send(client: TestClient) -> None:
    bad_cell = client.get("/v1/hotspots", params={"cell": "h3:20"})
    assert bad_cell.status_code == 422
    assert "h3:<5..11>" in bad_cell.json()["message"]
    bad_item = client.get("/v1/hotspots", params={"item": "9999"})
    assert bad_item.status_code == 422
    assert "9999" in bad_item.json()["message"]


def test_filters_are_read_as_the_exports_read_them(client: TestClient) -> None:
    def counted(path: str, **params: str) -> int:
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        return body["total"] if "total" in body else sum(f["properties"]["count"] for f in body["features"])

    view = {"bbox": "104.20,23.33,104.29,23.41", "zoom": "14"}
    # A subdistrict by code, by Chinese name with or without 街道, or by English name: 2,138 incidents in 开化.
    for subdistrict in ("532601001", "开化", "开化街道", "kaihua"):
        assert counted("/v1/hotspots", subdistrict=subdistrict) == 2138, subdistrict
        assert counted("/v1/heat", subdistrict=subdistrict, **view) == 2138, subdistrict
    unknown = {
        "subdistrict": "subdistrict 'nowhere' matches no subdistrict in the current boundaries; give a code or a "
        "name, e.g. 开化街道 (532601001), 卧龙街道 (532601002), 新平街道 (532601003)",
        "source": "source 'bogus' is not one of: hotline, letter, patrol, grid_member, media, open311",
        "status": "status 'bogus' is not one of: collected, registered, dispatched, handling, feedback, verified, "
        "closed, rejected",
    }
    for name, message in unknown.items():
        value = "nowhere" if name == "subdistrict" else "bogus"
        for path, params in (("/v1/hotspots", {}), ("/v1/heat", view), ("/v1/map/incidents", view)):
            response = client.get(path, params={**params, name: value})
            assert response.status_code == 422, (path, name)
            assert response.json()["message"] == message


def per_point(lat: np.ndarray, lon: np.ndarray, resolution: int) -> list[int]:
    return [h3.api.basic_int.latlng_to_cell(y, x, resolution) for y, x in zip(lat.tolist(), lon.tolist(), strict=True)]


def test_cells_of_points_equal_h3_point_by_point(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = np.array(conn.execute(text("SELECT ST_Y(geom), ST_X(geom) FROM incidents")).all())
    lat, lon = rows[:, 0], rows[:, 1]
    assert len(lat) == 4746  # the fixture's incidents
    assert hotspots.cells_of_points(lat, lon, 9).tolist() == per_point(lat, lon, 9)
    # Corners and edge midpoints of the cells around the centre: the points the lattice leaves to h3 itself.
    rng = np.random.default_rng(20170630)
    for resolution in range(5, 12):
        centre = h3.latlng_to_cell(23.371, 104.244, resolution)
        edges = []
        for cell in h3.grid_disk(centre, 2):
            ring = list(h3.cell_to_boundary(cell))
            edges += ring + [
                ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in zip(ring, ring[1:] + ring[:1], strict=True)
            ]
        lat = np.concatenate([[p[0] for p in edges], 23.343 + 0.058 * rng.random(20_000)])
        lon = np.concatenate([[p[1] for p in edges], 104.208 + 0.075 * rng.random(20_000)])
        assert hotspots.cells_of_points(lat, lon, resolution).tolist() == per_point(lat, lon, resolution), resolution


def test_points_per_cell_are_the_cells_of_points_counted(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = np.array(conn.execute(text("SELECT ST_Y(geom), ST_X(geom) FROM incidents")).all())
    assert hotspots.count_points_per_cell(rows[:, 0], rows[:, 1], 9) == Counter(per_point(rows[:, 0], rows[:, 1], 9))
    # More points than one projected chunk, with cell corners among them.
    rng = np.random.default_rng(7)
    corners = [p for cell in h3.grid_disk(h3.latlng_to_cell(23.371, 104.244, 9), 3) for p in h3.cell_to_boundary(cell)]
    lat = np.concatenate([23.343 + 0.058 * rng.random(150_000), [p[0] for p in corners]])
    lon = np.concatenate([104.208 + 0.075 * rng.random(150_000), [p[1] for p in corners]])
    counted = hotspots.count_points_per_cell(lat, lon, 9)
    assert counted == Counter(per_point(lat, lon, 9))
    assert sum(counted.values()) == 150_000 + len(corners)
    assert hotspots.count_points_per_cell(lat[:0], lon[:0], 9) == {}


def test_points_read_in_parts_are_the_points_read_at_once(engine: Engine) -> None:
    view = (104.235, 23.355, 104.262, 23.383)
    with engine.connect() as conn:
        pages = conn.execute(text("SELECT pg_relation_size('incidents') / 8192")).scalar_one()
        for filters in (hotspots.Filters(), hotspots.Filters(source="hotline", category="05")):
            whole = hotspots.read_points(conn, filters, view=view)
            halves = hotspots.read_points(conn, filters, view=view, split_pages=pages - 1)  # in parts
            assert len(halves.lon) == len(whole.lon) > 0
            order, split_order = np.lexsort((whole.lat, whole.lon)), np.lexsort((halves.lat, halves.lon))
            assert halves.lon[split_order].tolist() == whole.lon[order].tolist()
            assert halves.lat[split_order].tolist() == whole.lat[order].tolist()
            assert halves.in_view is not None and whole.in_view is not None
            assert halves.in_view[split_order].tolist() == whole.in_view[order].tolist()
