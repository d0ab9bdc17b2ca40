"""GET /v1/owner: each rule of DESIGN.md "Responsibility", with exact owners from the fixture."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pyproj import Transformer

from spatial import crs

CENTRE = (104.244, 23.371)
NEAR_CHIEF_STREET = (104.217011, 23.363428)  # 10 m north of 光明路西段 (ST001), which has a street chief
EDGE = (104.21851915, 23.38809565)  # midpoint of the edge shared by 532601001001001 and …002
CORNER = (104.2225204, 23.3780799)  # a lattice corner shared by four grids in four communities
BY_THE_RIVER = (104.236331172, 23.373565976)  # on the 盘龙河
WEST_VERTEX_LAT = 23.3625449  # the city's westernmost grid corner is at lon 104.2053751


def owner(client: TestClient, lon: float, lat: float, **params: str) -> dict:  # type: ignore[type-arg]
    response = client.get("/v1/owner", params={"lon": lon, "lat": lat, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_interior_point_has_the_whole_chain(client: TestClient) -> None:
    a = owner(client, *CENTRE)
    assert a["grid"] == {"code": "532601001008006", "name": "文笔社区第6网格"}
    assert a["community"] == {"code": "532601001008", "name": "文笔社区"}
    assert a["subdistrict"] == {"code": "532601001", "name": "开化街道", "name_en": "Kaihua"}
    assert {k: a["squad"][k] for k in ("code", "name", "headcount", "assistants")} == {
        "code": "532601001-ZD",
        "name": "开化街道城管执法中队",
        "headcount": 119,
        "assistants": 71,
    }
    assert a["squad"]["leader"]["id"] == "P0004"
    assert a["grid_member"] == {"id": "P0456", "name": "董凯", "title": "网格员"}  # no phone without a staff key
    # 团结路西段 has no street chief: the subdistrict chief (街道办主任) answers for it.
    assert a["street_chief"]["basis"] == "subdistrict"
    assert a["street_chief"]["person"]["id"] == "P0003"
    assert a["street_chief"]["street"] == {"code": "ST004", "name": "团结路西段", "distance_m": 32.29}
    assert a["subdistrict_chief"]["id"] == "P0003"
    assert a["general_street_chief"]["id"] == "P0001"
    assert a["river_chief"] is None
    assert a["generation"]["generation"] == 1
    assert (a["ambiguous"], a["outside"], a["candidates"]) == (False, False, ["532601001008006"])
    assert a["distance_to_boundary_m"] == 32.29


def test_street_chief_of_a_street_with_a_responsibility_letter(client: TestClient) -> None:
    a = owner(client, *NEAR_CHIEF_STREET)
    assert a["grid"]["code"] == "532601001006007"
    assert a["street_chief"]["basis"] == "street"
    assert a["street_chief"]["street"] == {"code": "ST001", "name": "光明路西段", "distance_m": 9.94}
    assert a["street_chief"]["person"]["id"] == "P0604"
    assert a["street_chief"]["person"]["title"] == "光明路西段街长"


def test_river_chief_near_the_river(client: TestClient) -> None:
    a = owner(client, *BY_THE_RIVER)
    assert a["grid"]["code"] == "532601001008002"
    assert a["river_chief"]["river"] == {"code": "RV01", "name": "盘龙河", "distance_m": 0.0}
    assert a["river_chief"]["person"]["id"] == "P0002"


def test_point_on_a_shared_edge_is_ambiguous_and_the_lowest_code_owns_it(client: TestClient) -> None:
    a = owner(client, *EDGE)
    assert a["ambiguous"] is True
    assert a["candidates"] == ["532601001001001", "532601001001002"]
    assert a["grid"]["code"] == "532601001001001"
    assert a["distance_to_boundary_m"] == 0.0


def test_point_within_half_a_metre_of_an_edge_is_ambiguous(client: TestClient) -> None:
    metre = 1 / 102_170  # degrees of longitude per metre at this latitude; the edge runs north-south
    a = owner(client, EDGE[0] + 0.3 * metre, EDGE[1])  # 0.3 m east of the edge
    assert a["candidates"] == ["532601001001001", "532601001001002"]
    b = owner(client, EDGE[0] + 2.0 * metre, EDGE[1])  # 2 m: no longer ambiguous
    assert b["ambiguous"] is False and len(b["candidates"]) == 1


def test_corner_shared_by_four_grids(client: TestClient) -> None:
    a = owner(client, *CORNER)
    assert a["candidates"] == ["532601001001008", "532601001002007", "532601001004004", "532601001005003"]
    assert a["grid"]["code"] == "532601001001008"
    assert a["ambiguous"] is True


def test_outside_but_within_tolerance_returns_the_nearest_grid(client: TestClient) -> None:
    a = owner(client, 104.2043970, WEST_VERTEX_LAT)  # 100 m west of the westernmost corner
    assert a["outside"] is True
    assert a["grid"]["code"] == "532601001006005"
    assert a["distance_to_grid_m"] == 100.02
    assert a["grid_member"]["id"] == "P0439"


def test_beyond_the_tolerance_is_404_not_covered_with_the_nearest_grid(client: TestClient) -> None:
    response = client.get("/v1/owner", params={"lon": 104.1953751, "lat": WEST_VERTEX_LAT})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_covered"
    assert body["message"].startswith("not covered")
    assert body["detail"]["nearest_grid"] == {"code": "532601001006005", "name": "学府社区第5网格"}
    assert body["detail"]["distance_m"] == 1022.55


def test_gcj02_bd09_and_epsg4544_input_find_the_same_owner(client: TestClient) -> None:
    expected = "532601001006007"
    gcj = crs.wgs84_to_gcj02(*NEAR_CHIEF_STREET)
    bd = crs.wgs84_to_bd09(*NEAR_CHIEF_STREET)
    x, y = Transformer.from_crs(4326, 4544, always_xy=True).transform(*NEAR_CHIEF_STREET)
    assert owner(client, *gcj, crs="gcj02")["grid"]["code"] == expected
    assert owner(client, *bd, crs="bd09")["grid"]["code"] == expected
    via_4544 = owner(client, x, y, crs="EPSG:4544")
    assert via_4544["grid"]["code"] == expected
    assert abs(via_4544["point"]["lon"] - NEAR_CHIEF_STREET[0]) < 1e-8
    # The same phone report read as WGS-84 lands ≈365 m away, in another grid.
    assert owner(client, *gcj)["grid"]["code"] != expected


def test_swapped_coordinates_are_a_422_that_says_so(client: TestClient) -> None:
    response = client.get("/v1/owner", params={"lon": CENTRE[1], "lat": CENTRE[0]})
    assert response.status_code == 422
    assert "swapped" in response.json()["message"]


def test_unknown_crs_and_nan_are_422(client: TestClient) -> None:
    bad_crs = client.get("/v1/owner", params={"lon": CENTRE[0], "lat": CENTRE[1], "crs": "wgs85"})
    assert bad_crs.status_code == 422
    assert "use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>" in bad_crs.json()["message"]
    nan = client.get("/v1/owner", params={"lon": "nan", "lat": CENTRE[1]})
    assert nan.status_code == 422
    missing = client.get("/v1/owner", params={"lon": CENTRE[0]})
    assert missing.status_code == 422
    assert "lat" in missing.json()["message"]


def test_at_before_and_after_the_grid_member_rotation(client: TestClient) -> None:
    before = owner(client, *EDGE, at="2017-03-01T10:00:00+08:00")
    after = owner(client, *EDGE, at="2017-05-01T10:00:00+08:00")
    assert (before["grid_member"]["id"], after["grid_member"]["id"]) == ("P0395", "P0396")
    naive = client.get("/v1/owner", params={"lon": EDGE[0], "lat": EDGE[1], "at": "2017-05-01T10:00:00"})
    assert naive.status_code == 422
    assert "time zone" in naive.json()["message"]


def test_before_any_boundary_generation_is_404(client: TestClient) -> None:
    response = client.get("/v1/owner", params={"lon": CENTRE[0], "lat": CENTRE[1], "at": "2010-01-01T00:00:00Z"})
    assert response.status_code == 404
    assert "no boundary generation" in response.json()["message"]
