"""spatial.crs: published reference pairs, round trips over China, Wenshan's offset, parse_crs, to_wgs84."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Geod, Transformer

from spatial.crs import (
    InputCrs,
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    in_china,
    parse_crs,
    to_wgs84,
    to_wgs84_arrays,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from spatial.errors import InvalidInput
from spatial.fixtures import CENTRE_LONLAT

GEOD = Geod(ellps="WGS84")
ROUND_TRIP_TOLERANCE_M = 0.01
SAMPLE_SIZE = 10_000
WENSHAN = CENTRE_LONLAT  # (104.244, 23.371)
TOKYO = (139.69, 35.69)
LONDON = (-0.1276, 51.5072)


def metres(lon_a, lat_a, lon_b, lat_b):  # type: ignore[no-untyped-def]
    """Geodesic distance in metres between two points or two arrays of points."""
    return GEOD.inv(lon_a, lat_a, lon_b, lat_b)[2]


@pytest.fixture(scope="module")
def china_sample() -> tuple[np.ndarray, np.ndarray]:
    """10,000 deterministic points over China's land box (73–135 E, 18–53 N), inside the in_china box."""
    rng = np.random.default_rng(7)
    lon = rng.uniform(73.0, 135.0, SAMPLE_SIZE)
    lat = rng.uniform(18.0, 53.0, SAMPLE_SIZE)
    assert np.all(in_china(lon, lat))
    return lon, lat


# --- published reference pairs -------------------------------------------------------------------------

# WGS-84 -> GCJ-02. Each pair: (source, wgs84, gcj02, tolerance in degrees).
WGS84_TO_GCJ02_PAIRS = [
    # wandergis/coordtransform README.md ("wgs84togcj02: [ 116.41024449916938, 39.91640428150164 ]"), the
    # converter most Chinese projects copy; also asserted exactly in dromara/hutool CoordinateUtilTest.java.
    ("wandergis/coordtransform README", (116.404, 39.915), (116.41024449916938, 39.91640428150164), 1e-12),
    # Glatzel/pyxis python/tests/test_crypto.py: wgs84 = (121.0917077, 30.6107779), gcj02 = (121.09626935575027,
    # 30.608604331756705). The WGS-84 side is published to 7 decimals, so the pair holds to 1e-7.
    ("Glatzel/pyxis test_crypto.py", (121.0917077, 30.6107779), (121.09626935575027, 30.608604331756705), 1e-7),
    # AMap's own documentation of its coordinate service (lbs.amap.com/api/webservice/guide/api/convert, the
    # example response for locations=116.481499,39.990475&coordsys=gps): AMap's server agrees with the
    # published formula to 4e-7 degrees (≈4 cm), inside the 1e-6 this test allows.
    ("AMap web service docs", (116.481499, 39.990475), (116.487585177952, 39.991754014757), 1e-6),
]

# GCJ-02 -> BD-09.
GCJ02_TO_BD09_PAIRS = [
    # wandergis/coordtransform README.md ("gcj02tobd09: [ 116.41036949371029, 39.92133699351021 ]").
    ("wandergis/coordtransform README", (116.404, 39.915), (116.41036949371029, 39.92133699351021), 1e-12),
    # Glatzel/pyxis python/tests/test_crypto.py: gcj02 -> bd09 = (121.10271732371203, 30.61484572185035).
    (
        "Glatzel/pyxis test_crypto.py",
        (121.09626935575027, 30.608604331756705),
        (121.10271732371203, 30.61484572185035),
        1e-12,
    ),
    # hujiulong/gcoord test/fixtures/china-cities.json, 楚雄彝族自治州 (Yunnan, Wenshan's province): GCJ02
    # [101.5280737, 25.0455363], BD09 [101.5344863, 25.0518094], 7 decimals. (Its WGS84 column comes from
    # another source and agrees with the formula only to 5e-6, so we use the BD-09 column alone.)
    ("hujiulong/gcoord china-cities.json", (101.5280737, 25.0455363), (101.5344863, 25.0518094), 1e-7),
    # hujiulong/gcoord test/unit/crs/GCJ02.spec.js: GCJ02 [123, 45] -> BD09 [123.00636499, 45.00636899].
    ("hujiulong/gcoord GCJ02.spec.js", (123.0, 45.0), (123.00636499, 45.00636899), 1e-8),
]


@pytest.mark.parametrize(("source", "wgs84", "gcj02", "tolerance"), WGS84_TO_GCJ02_PAIRS)
def test_wgs84_to_gcj02_matches_published_pairs(
    source: str, wgs84: tuple[float, float], gcj02: tuple[float, float], tolerance: float
) -> None:
    assert wgs84_to_gcj02(*wgs84) == pytest.approx(gcj02, abs=tolerance), source


@pytest.mark.parametrize(("source", "gcj02", "bd09", "tolerance"), GCJ02_TO_BD09_PAIRS)
def test_gcj02_to_bd09_matches_published_pairs(
    source: str, gcj02: tuple[float, float], bd09: tuple[float, float], tolerance: float
) -> None:
    assert gcj02_to_bd09(*gcj02) == pytest.approx(bd09, abs=tolerance), source


def test_wgs84_to_bd09_matches_published_pair() -> None:
    # dromara/hutool hutool-core/src/test/java/org/dromara/hutool/core/util/CoordinateUtilTest.java, wgs84toBd09Test.
    assert wgs84_to_bd09(116.404, 39.915) == pytest.approx((116.41662724378733, 39.922699552216216), abs=1e-12)


def test_published_one_step_inverses_are_what_we_improve_on() -> None:
    # wandergis/coordtransform README publishes one-step inverses for (116.404, 39.915): gcj02towgs84 and
    # bd09togcj02. Pushed back through the exact forward formulas they miss (116.404, 39.915); ours do not.
    target = (116.404, 39.915)
    published_gcj02_to_wgs84 = (116.39775550083061, 39.91359571849836)
    published_bd09_to_gcj02 = (116.39762729119315, 39.90865673957631)
    assert metres(*target, *wgs84_to_gcj02(*published_gcj02_to_wgs84)) == pytest.approx(0.0614, abs=1e-4)
    assert metres(*target, *gcj02_to_bd09(*published_bd09_to_gcj02)) == pytest.approx(0.0477, abs=1e-4)
    assert metres(*target, *wgs84_to_gcj02(*gcj02_to_wgs84(*target))) < 1e-6
    assert metres(*target, *gcj02_to_bd09(*bd09_to_gcj02(*target))) < 1e-6


# --- round trips over China -----------------------------------------------------------------------------


def test_gcj02_round_trip_arrays_within_1_cm(china_sample: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_sample
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert metres(lon, lat, back_lon, back_lat).max() < ROUND_TRIP_TOLERANCE_M
    # And the other way: the sample read as GCJ-02 reports, resolved to WGS-84, maps back onto the reports.
    again_lon, again_lat = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert metres(lon, lat, again_lon, again_lat).max() < ROUND_TRIP_TOLERANCE_M


def test_bd09_round_trip_arrays_within_1_cm(china_sample: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_sample
    assert metres(lon, lat, *bd09_to_gcj02(*gcj02_to_bd09(lon, lat))).max() < ROUND_TRIP_TOLERANCE_M
    assert metres(lon, lat, *gcj02_to_bd09(*bd09_to_gcj02(lon, lat))).max() < ROUND_TRIP_TOLERANCE_M
    assert metres(lon, lat, *bd09_to_wgs84(*wgs84_to_bd09(lon, lat))).max() < ROUND_TRIP_TOLERANCE_M


def test_round_trips_for_scalars_within_1_cm(china_sample: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_sample
    gcj_back = np.array([gcj02_to_wgs84(*wgs84_to_gcj02(float(x), float(y))) for x, y in zip(lon, lat, strict=True)])
    bd_back = np.array([bd09_to_wgs84(*wgs84_to_bd09(float(x), float(y))) for x, y in zip(lon, lat, strict=True)])
    assert metres(lon, lat, gcj_back[:, 0], gcj_back[:, 1]).max() < ROUND_TRIP_TOLERANCE_M
    assert metres(lon, lat, bd_back[:, 0], bd_back[:, 1]).max() < ROUND_TRIP_TOLERANCE_M


def test_scalars_give_floats_and_arrays_keep_their_shape() -> None:
    lon, lat = gcj02_to_wgs84(*WENSHAN)
    assert type(lon) is float and type(lat) is float
    grid_lon, grid_lat = np.meshgrid(np.linspace(104.2, 104.3, 4), np.linspace(23.3, 23.4, 3))
    out_lon, out_lat = bd09_to_wgs84(grid_lon, grid_lat)
    assert out_lon.shape == (3, 4) and out_lat.shape == (3, 4)
    assert in_china(grid_lon, grid_lat).shape == (3, 4)
    assert in_china(*WENSHAN) is True


# --- Wenshan --------------------------------------------------------------------------------------------


def test_gcj02_shift_at_wenshan_is_365_m() -> None:
    shift = metres(*WENSHAN, *wgs84_to_gcj02(*WENSHAN))
    assert 300.0 < shift < 450.0
    assert shift == pytest.approx(365.21, abs=0.01)


def test_iterative_inverse_beats_one_step_at_wenshan() -> None:
    # A phone report at Wenshan's centre in GCJ-02; a candidate WGS-84 point is judged by how far its GCJ-02
    # image lands from the report.
    report_lon, report_lat = WENSHAN
    forward_lon, forward_lat = wgs84_to_gcj02(report_lon, report_lat)
    one_step = (2.0 * report_lon - forward_lon, 2.0 * report_lat - forward_lat)
    one_step_error = metres(*WENSHAN, *wgs84_to_gcj02(*one_step))
    ours_error = metres(*WENSHAN, *wgs84_to_gcj02(*gcj02_to_wgs84(*WENSHAN)))
    assert one_step_error > 0.1
    assert one_step_error == pytest.approx(0.115, abs=0.001)
    assert ours_error < ROUND_TRIP_TOLERANCE_M


def test_one_step_inverse_errs_up_to_0_7_m_across_wenshan_town() -> None:
    # Over the town (104.15–104.35 E, 23.30–23.45 N) the one-step error swings with the formula's 1/3-degree
    # ripple: median ≈0.55 m, worst ≈0.72 m. The iterative inverse stays far inside 1 cm everywhere.
    lon, lat = (a.ravel() for a in np.meshgrid(np.linspace(104.15, 104.35, 41), np.linspace(23.30, 23.45, 31)))
    forward_lon, forward_lat = wgs84_to_gcj02(lon, lat)
    one_step_error = metres(lon, lat, *wgs84_to_gcj02(2.0 * lon - forward_lon, 2.0 * lat - forward_lat))
    ours_error = metres(lon, lat, *wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat)))
    assert one_step_error.max() == pytest.approx(0.72, abs=0.01)
    assert ours_error.max() < ROUND_TRIP_TOLERANCE_M


# --- outside China --------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", [TOKYO, LONDON], ids=["tokyo", "london"])
def test_conversions_are_identity_outside_china(point: tuple[float, float]) -> None:
    assert in_china(*point) is False
    for convert in (wgs84_to_gcj02, gcj02_to_wgs84, gcj02_to_bd09, bd09_to_gcj02, wgs84_to_bd09, bd09_to_wgs84):
        assert convert(*point) == point, convert.__name__
    lon, lat = wgs84_to_gcj02(np.array([point[0], WENSHAN[0]]), np.array([point[1], WENSHAN[1]]))
    assert (lon[0], lat[0]) == point
    assert (lon[1], lat[1]) != WENSHAN


# --- parse_crs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (None, "wgs84"),
        ("", "wgs84"),
        ("wgs84", "wgs84"),
        ("WGS84", "wgs84"),
        ("WGS-84", "wgs84"),
        ("EPSG:4326", "wgs84"),
        ("epsg:4326", "wgs84"),
        ("cgcs2000", "cgcs2000"),
        ("CGCS2000", "cgcs2000"),
        ("EPSG:4490", "cgcs2000"),
        ("gcj02", "gcj02"),
        ("GCJ-02", "gcj02"),
        ("gcj-02", "gcj02"),
        ("bd09", "bd09"),
        ("BD-09", "bd09"),
        ("bd-09", "bd09"),
    ],
)
def test_parse_crs_accepts_each_spelling(text: str | None, name: str) -> None:
    assert parse_crs(text) == InputCrs(name, projected=False)


def test_parse_crs_epsg_codes() -> None:
    assert parse_crs("EPSG:4544") == InputCrs("EPSG:4544", projected=True)
    assert parse_crs("epsg:3857") == InputCrs("EPSG:3857", projected=True)
    assert parse_crs("EPSG:4214") == InputCrs("EPSG:4214", projected=False)  # Beijing 1954, geographic


def test_parse_crs_unknown_name_lists_accepted_forms() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_crs("wgs85")
    assert raised.value.message == (
        "unknown crs 'wgs85': use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code> (e.g. EPSG:4544)"
    )


@pytest.mark.parametrize(
    ("text", "message_start"),
    [
        ("EPSG:999999", "unknown crs 'EPSG:999999': pyproj has no EPSG:999999;"),
        ("EPSG:5773", "crs 'EPSG:5773' (EGM96 height) has no longitude/latitude or easting/northing;"),
        ("4544", "unknown crs '4544': use wgs84"),
    ],
)
def test_parse_crs_rejects_codes_it_cannot_use(text: str, message_start: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_crs(text)
    assert raised.value.message.startswith(message_start)
    assert raised.value.message.endswith("use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code> (e.g. EPSG:4544)")


# --- to_wgs84 -------------------------------------------------------------------------------------------


def test_epsg_4544_fixture_centre_round_trips() -> None:
    crs = parse_crs("EPSG:4544")
    assert crs.projected is True
    easting, northing = Transformer.from_crs(4326, 4544, always_xy=True).transform(*WENSHAN)
    assert to_wgs84(easting, northing, crs) == pytest.approx(WENSHAN, abs=1e-8)


def test_to_wgs84_resolves_each_named_crs_to_wenshan() -> None:
    gcj = wgs84_to_gcj02(*WENSHAN)
    bd = wgs84_to_bd09(*WENSHAN)
    assert to_wgs84(*WENSHAN, parse_crs("wgs84")) == WENSHAN
    assert to_wgs84(*WENSHAN, parse_crs("cgcs2000")) == WENSHAN
    assert to_wgs84(*gcj, parse_crs("gcj02")) == pytest.approx(WENSHAN, abs=1e-9)
    assert to_wgs84(*bd, parse_crs("bd09")) == pytest.approx(WENSHAN, abs=1e-9)


def test_to_wgs84_arrays_matches_scalar_path() -> None:
    gcj_lon, gcj_lat = wgs84_to_gcj02(np.array([104.244, 104.25, 104.26]), np.array([23.371, 23.36, 23.38]))
    lon, lat = to_wgs84_arrays(gcj_lon, gcj_lat, parse_crs("gcj02"))
    assert lon == pytest.approx([104.244, 104.25, 104.26], abs=1e-9)
    assert lat == pytest.approx([23.371, 23.36, 23.38], abs=1e-9)


def test_to_wgs84_rejects_latitude_first_input() -> None:
    with pytest.raises(InvalidInput) as raised:
        to_wgs84(23.371, 104.244, parse_crs("gcj02"))
    assert raised.value.message.startswith("point (23.371, 104.244) in crs 'gcj02' is not a longitude, latitude")
    assert raised.value.detail == {"crs": "gcj02", "index": 0, "x": 23.371, "y": 104.244}


def test_to_wgs84_rejects_non_finite_input() -> None:
    with pytest.raises(InvalidInput) as raised:
        to_wgs84_arrays(np.array([104.244, np.nan]), np.array([23.371, 23.371]), parse_crs("bd09"))
    assert raised.value.message == "point (nan, 23.371) in crs 'bd09' is not a finite number"
    assert raised.value.detail["index"] == 1


def test_to_wgs84_rejects_projected_point_with_no_position() -> None:
    with pytest.raises(InvalidInput) as raised:
        to_wgs84(5e7, 2e6, parse_crs("EPSG:4544"))
    assert raised.value.message == (
        "point (50000000.0, 2000000.0) in crs 'EPSG:4544' has no WGS-84 position (outside the crs's area of use?)"
    )


def test_to_wgs84_arrays_rejects_mismatched_shapes() -> None:
    with pytest.raises(InvalidInput, match="x and y differ in shape"):
        to_wgs84_arrays(np.zeros(3), np.zeros(2), parse_crs("wgs84"))
