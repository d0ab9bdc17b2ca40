"""Coordinates as people have them: parse the CRS they name and bring their points to WGS-84.

Phones and web maps in China report GCJ-02 (AMap/高德, Tencent, WeChat) or BD-09 (Baidu); GIS staff send
CGCS2000 (EPSG:4490) or projected EPSG codes such as EPSG:4544. We store WGS-84 (EPSG:4326).

GCJ-02 is WGS-84 pushed through a published, deliberately non-linear offset on the Krasovsky 1940
ellipsoid; BD-09 is GCJ-02 rotated and scaled a little more. Neither has a closed-form inverse: the
usual one-step inverse ``p - (f(p) - p)`` errs by 0.06-0.72 m across Wenshan and up to ≈4 m elsewhere in
China, so both inverses here iterate to a fixed point (stop below 1e-9 degrees, ≈0.1 mm).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from spatial.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
# A coordinate is a float or a numpy array of floats; the converters return the same kind they were given.
Coord = TypeVar("Coord", float, FloatArray)

# GCJ-02 is defined on the Krasovsky 1940 ellipsoid.
KRASOVSKY_A = 6378245.0
KRASOVSKY_EE = 0.00669342162296594323  # first eccentricity squared
# BD-09 constants, as published by Baidu's converters.
BD09_X_PI = math.pi * 3000.0 / 180.0
BD09_LON_SHIFT = 0.0065
BD09_LAT_SHIFT = 0.006

# The rough box inside which the GCJ-02 (and BD-09) offset applies; outside it GCJ-02 == BD-09 == WGS-84.
# It is the box the widely used converters share, so our points agree with theirs near the borders too.
CHINA_LON_MIN, CHINA_LON_MAX = 72.004, 137.8347
CHINA_LAT_MIN, CHINA_LAT_MAX = 0.8293, 55.8271

# Fixed-point inversion: each step shrinks the error ≈150-fold (both offsets' slopes are below 1e-2), so
# 5-6 steps reach 1e-9 degrees (measured over China); the cap only guards against oscillation on the box edge.
INVERSE_TOLERANCE_DEG = 1e-9
INVERSE_MAX_ITERATIONS = 30

# Names people write, with hyphens, underscores and spaces dropped and case folded.
_NAMED_CRS = {"wgs84": "wgs84", "cgcs2000": "cgcs2000", "gcj02": "gcj02", "bd09": "bd09"}
# EPSG codes that mean one of the named systems; they take the named, pyproj-free path.
_EPSG_NAMED = {4326: "wgs84", 4490: "cgcs2000"}
_ACCEPTED = "use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code> (e.g. EPSG:4544)"


@dataclass(frozen=True)
class InputCrs:
    """The coordinate system a caller's points are in, by canonical name."""

    name: str  # "wgs84" | "cgcs2000" | "gcj02" | "bd09" | "EPSG:<code>"
    projected: bool  # True when x/y are projected units (metres for EPSG:4544), not lon/lat degrees


WGS84 = InputCrs("wgs84", projected=False)


def parse_crs(text: str | None) -> InputCrs:
    """Return the InputCrs a caller named; None or "" means wgs84, spelling and case are forgiven.

    Accepts wgs84/WGS-84/EPSG:4326, cgcs2000/EPSG:4490, gcj02/GCJ-02, bd09/BD-09 and EPSG:<code> for any
    geographic or projected CRS pyproj knows; anything else raises InvalidInput listing the accepted forms.
    """
    if text is None or not text.strip():
        return WGS84
    key = text.strip().lower()
    named = _NAMED_CRS.get(re.sub(r"[-_\s]", "", key))
    if named is not None:
        return InputCrs(named, projected=False)
    epsg = re.fullmatch(r"epsg:\s*(\d{1,9})", key)
    if epsg is not None:
        code = int(epsg.group(1))
        if code in _EPSG_NAMED:
            return InputCrs(_EPSG_NAMED[code], projected=False)
        crs = _epsg_crs(code)
        if crs is None:
            raise InvalidInput(f"unknown crs {text!r}: pyproj has no EPSG:{code}; {_ACCEPTED}", detail={"crs": text})
        if not (crs.is_geographic or crs.is_projected):
            raise InvalidInput(
                f"crs {text!r} ({crs.name}) has no longitude/latitude or easting/northing; {_ACCEPTED}",
                detail={"crs": text},
            )
        return InputCrs(f"EPSG:{code}", projected=crs.is_projected)
    raise InvalidInput(f"unknown crs {text!r}: {_ACCEPTED}", detail={"crs": text})


def to_wgs84(x: float, y: float, crs: InputCrs) -> tuple[float, float]:
    """Return (lon, lat) in WGS-84 for one point given in ``crs``; bad or out-of-range input raises InvalidInput."""
    if crs.name in ("wgs84", "cgcs2000") and math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90:
        return float(x), float(y)  # the common case of every owner lookup, without numpy's overhead
    lon, lat = to_wgs84_arrays(np.array([x], dtype=np.float64), np.array([y], dtype=np.float64), crs)
    return float(lon[0]), float(lat[0])


def to_wgs84_arrays(x: FloatArray, y: FloatArray, crs: InputCrs) -> tuple[FloatArray, FloatArray]:
    """Return (lon, lat) arrays in WGS-84 for points given in ``crs``.

    Rule: inputs must be finite; lon/lat inputs must lie in -180..180, -90..90 (x is longitude); any result
    that is not a finite lon/lat raises InvalidInput naming the crs and the first bad point.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise InvalidInput(f"x and y differ in shape: {x.shape} and {y.shape}", detail={"crs": crs.name})
    _check_finite(x, y, crs, "is not a finite number")
    if not crs.projected:
        _check_lon_lat(x, y, crs, "is not a longitude, latitude (x is longitude, -180..180; y latitude, -90..90)")
    if crs.name in ("wgs84", "cgcs2000"):
        # CGCS2000 and WGS-84 agree to centimetres (their frames differ by a few cm), far below a phone's
        # accuracy, so CGCS2000 lon/lat are stored as given.
        lon, lat = x.copy(), y.copy()
    elif crs.name == "gcj02":
        lon, lat = gcj02_to_wgs84(x, y)
    elif crs.name == "bd09":
        lon, lat = bd09_to_wgs84(x, y)
    else:
        lon, lat = _epsg_transformer(_epsg_code(crs)).transform(x, y)
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    _check_finite(lon, lat, crs, "has no WGS-84 position (outside the crs's area of use?)", source=(x, y))
    _check_lon_lat(lon, lat, crs, "lands outside the earth's lon/lat range", source=(x, y))
    return lon, lat


def in_china(lon: Coord, lat: Coord) -> bool | npt.NDArray[np.bool_]:
    """Return True where (lon, lat) lies in the rough China box (72.004–137.8347 E, 0.8293–55.8271 N).

    The common converters share this box: outside it GCJ-02 == BD-09 == WGS-84. Arrays give a bool array.
    """
    lon_a, lat_a = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    inside = (lon_a >= CHINA_LON_MIN) & (lon_a <= CHINA_LON_MAX) & (lat_a >= CHINA_LAT_MIN) & (lat_a <= CHINA_LAT_MAX)
    return bool(inside) if inside.ndim == 0 else inside


def wgs84_to_gcj02(lon: Coord, lat: Coord) -> tuple[Coord, Coord]:
    """Return GCJ-02 (lon, lat) for WGS-84 points by the published forward formula; identity outside China."""
    out_lon, out_lat = _wgs84_to_gcj02(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return _like(lon, out_lon), _like(lat, out_lat)


def gcj02_to_wgs84(lon: Coord, lat: Coord) -> tuple[Coord, Coord]:
    """Return WGS-84 (lon, lat) for GCJ-02 points, inverting the forward formula iteratively to < 1e-9 degrees."""
    target_lon, target_lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    out_lon, out_lat = _invert(_wgs84_to_gcj02, target_lon, target_lat, target_lon, target_lat)
    return _like(lon, out_lon), _like(lat, out_lat)


def gcj02_to_bd09(lon: Coord, lat: Coord) -> tuple[Coord, Coord]:
    """Return BD-09 (lon, lat) for GCJ-02 points by Baidu's published offset; identity outside China.

    Baidu's maps use plain WGS-84 outside China (lbsyun.baidu.com, "坐标转换"), so the offset stops at the
    same box as GCJ-02's.
    """
    out_lon, out_lat = _gcj02_to_bd09(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return _like(lon, out_lon), _like(lat, out_lat)


def bd09_to_gcj02(lon: Coord, lat: Coord) -> tuple[Coord, Coord]:
    """Return GCJ-02 (lon, lat) for BD-09 points: Baidu's approximate inverse, refined iteratively to < 1e-9 degrees."""
    target_lon, target_lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    approx_lon, approx_lat = _bd09_to_gcj02_approx(target_lon, target_lat)
    inside = np.asarray(in_china(target_lon, target_lat))
    start_lon, start_lat = np.where(inside, approx_lon, target_lon), np.where(inside, approx_lat, target_lat)
    out_lon, out_lat = _invert(_gcj02_to_bd09, target_lon, target_lat, start_lon, start_lat)
    return _like(lon, out_lon), _like(lat, out_lat)


def wgs84_to_bd09(lon: Coord, lat: Coord) -> tuple[Coord, Coord]:
    """Return BD-09 (lon, lat) for WGS-84 points (through GCJ-02)."""
    gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
    return gcj02_to_bd09(gcj_lon, gcj_lat)


def bd09_to_wgs84(lon: Coord, lat: Coord) -> tuple[Coord, Coord]:
    """Return WGS-84 (lon, lat) for BD-09 points (through GCJ-02, both inverses iterative)."""
    gcj_lon, gcj_lat = bd09_to_gcj02(lon, lat)
    return gcj02_to_wgs84(gcj_lon, gcj_lat)


def _gcj02_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the GCJ-02 offset (dlon, dlat) in degrees at WGS-84 points, ignoring the China box."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    # Both axes share the short-period ripple in x; the rest is a polynomial plus slower sinusoids. The
    # formula yields metres-like quantities that are then turned into degrees on the Krasovsky ellipsoid.
    ripple = (20.0 * np.sin(6.0 * pi * x) + 20.0 * np.sin(2.0 * pi * x)) * 2.0 / 3.0
    north = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * np.sqrt(np.abs(x))
        + ripple
        + (20.0 * np.sin(pi * y) + 40.0 * np.sin(pi * y / 3.0)) * 2.0 / 3.0
        + (160.0 * np.sin(pi * y / 12.0) + 320.0 * np.sin(pi * y / 30.0)) * 2.0 / 3.0
    )
    east = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * np.sqrt(np.abs(x))
        + ripple
        + (20.0 * np.sin(pi * x) + 40.0 * np.sin(pi * x / 3.0)) * 2.0 / 3.0
        + (150.0 * np.sin(pi * x / 12.0) + 300.0 * np.sin(pi * x / 30.0)) * 2.0 / 3.0
    )
    phi = np.radians(lat)
    w = 1.0 - KRASOVSKY_EE * np.sin(phi) ** 2
    meridian_radius = KRASOVSKY_A * (1.0 - KRASOVSKY_EE) / (w * np.sqrt(w))
    parallel_radius = KRASOVSKY_A / np.sqrt(w) * np.cos(phi)
    return np.degrees(east / parallel_radius), np.degrees(north / meridian_radius)


def _wgs84_to_gcj02(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return GCJ-02 arrays for WGS-84 arrays: the offset inside the China box, identity outside it."""
    inside = np.asarray(in_china(lon, lat))
    dlon, dlat = _gcj02_offset(lon, lat)
    return lon + np.where(inside, dlon, 0.0), lat + np.where(inside, dlat, 0.0)


def _gcj02_to_bd09(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return BD-09 arrays for GCJ-02 arrays: a slight scale and rotation about the origin, then a shift.

    Inside the China box only; outside it the points come back unchanged.
    """
    radius = np.hypot(lon, lat) + 0.00002 * np.sin(lat * BD09_X_PI)
    angle = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * BD09_X_PI)
    inside = np.asarray(in_china(lon, lat))
    bd_lon = radius * np.cos(angle) + BD09_LON_SHIFT
    bd_lat = radius * np.sin(angle) + BD09_LAT_SHIFT
    return np.where(inside, bd_lon, lon), np.where(inside, bd_lat, lat)


def _bd09_to_gcj02_approx(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return Baidu's one-step inverse of the BD-09 offset (good to ≈2e-6 degrees): the start for iteration."""
    x = lon - BD09_LON_SHIFT
    y = lat - BD09_LAT_SHIFT
    radius = np.hypot(x, y) - 0.00002 * np.sin(y * BD09_X_PI)
    angle = np.arctan2(y, x) - 0.000003 * np.cos(x * BD09_X_PI)
    return radius * np.cos(angle), radius * np.sin(angle)


def _invert(
    forward: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    target_lon: FloatArray,
    target_lat: FloatArray,
    start_lon: FloatArray,
    start_lat: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Return the points p with forward(p) == target, by fixed-point iteration p <- p - (forward(p) - target).

    Converges because forward is the identity plus an offset whose slope is far below 1. Stops when no point
    moves by INVERSE_TOLERANCE_DEG or more (NaN points count as settled), or after INVERSE_MAX_ITERATIONS.
    """
    lon, lat = start_lon, start_lat
    for _ in range(INVERSE_MAX_ITERATIONS):
        forward_lon, forward_lat = forward(lon, lat)
        step_lon = forward_lon - target_lon
        step_lat = forward_lat - target_lat
        lon, lat = lon - step_lon, lat - step_lat
        if not (np.any(np.abs(step_lon) >= INVERSE_TOLERANCE_DEG) or np.any(np.abs(step_lat) >= INVERSE_TOLERANCE_DEG)):
            break
    return lon, lat


def _like(template: Coord, value: FloatArray) -> Coord:
    """Return ``value`` as a float when ``template`` was a scalar, else as the array it is."""
    if np.ndim(template) == 0:
        return cast(Coord, float(value))
    return cast(Coord, value)


@lru_cache(maxsize=64)
def _epsg_crs(code: int) -> CRS | None:
    """Return pyproj's CRS for an EPSG code, or None when pyproj does not know it (cached per code)."""
    try:
        return CRS.from_epsg(code)
    except (CRSError, ValueError, OverflowError):
        return None


@lru_cache(maxsize=64)
def _epsg_transformer(code: int) -> Transformer:
    """Return the EPSG:<code> -> EPSG:4326 transformer, x/y in easting/northing or lon/lat order (cached per code).

    pyproj Transformers are thread-safe since 3.1, so one per code serves every request.
    """
    return Transformer.from_crs(code, 4326, always_xy=True)


def _epsg_code(crs: InputCrs) -> int:
    """Return the numeric code of an "EPSG:<code>" InputCrs."""
    prefix, _, digits = crs.name.partition(":")
    if prefix != "EPSG" or not digits.isdigit():
        raise InvalidInput(f"unknown crs {crs.name!r}: {_ACCEPTED}", detail={"crs": crs.name})
    return int(digits)


def _check_finite(
    x: FloatArray, y: FloatArray, crs: InputCrs, problem: str, source: tuple[FloatArray, FloatArray] | None = None
) -> None:
    """Raise InvalidInput naming the crs and the first point whose x or y is not finite."""
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        _raise_for_point(int(np.argmax(bad)), crs, problem, source or (x, y))


def _check_lon_lat(
    lon: FloatArray, lat: FloatArray, crs: InputCrs, problem: str, source: tuple[FloatArray, FloatArray] | None = None
) -> None:
    """Raise InvalidInput naming the crs and the first point outside lon -180..180, lat -90..90."""
    bad = (np.abs(lon) > 180.0) | (np.abs(lat) > 90.0)
    if bad.any():
        _raise_for_point(int(np.argmax(bad)), crs, problem, source or (lon, lat))


def _raise_for_point(index: int, crs: InputCrs, problem: str, source: tuple[FloatArray, FloatArray]) -> None:
    """Raise InvalidInput for the point at ``index`` (as the caller gave it) in ``crs``."""
    x, y = float(source[0].flat[index]), float(source[1].flat[index])
    raise InvalidInput(
        f"point ({x}, {y}) in crs {crs.name!r} {problem}",
        detail={"crs": crs.name, "index": index, "x": x, "y": y},
    )
