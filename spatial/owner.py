"""Who owns this point: the whole responsibility chain, for one point or a million.

The chain itself (grid, community, subdistrict, squad, and every duty holder) comes from the database
function ``citygrid_owner_points``, the same one incident intake uses; this module converts coordinates,
applies the rules of DESIGN.md "Responsibility" to the answer, and adds names and phone numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.pool import PoolProxiedConnection

from spatial.crs import InputCrs, parse_crs, to_wgs84
from spatial.db import run_prepared
from spatial.errors import InvalidInput, NotFound
from spatial.settings import OwnerSettings

# A lookup runs on SQLAlchemy's Connection (the CLI, the tests) or on a pooled one straight from the pool (the API).
AnyConnection = Connection | PoolProxiedConnection

PEOPLE_ROLES = (
    "grid_member",
    "street_chief",
    "subdistrict_chief",
    "general_street_chief",
    "squad_leader",
    "river_chief",
)

# The lookup runs as a prepared statement on each connection: planning the inlined chain function costs
# ≈1.5 ms, executing its cached generic plan ≈0.2 ms (measured on the fixture).
_PREPARED = "citygrid_owner_lookup"
# Names by scalar sub-selects, one primary-key probe each, rather than LEFT JOINs: the generic plan of
# fourteen joins on the function's result took merge joins and sorts, and starting up a plan's nodes is a
# third of a lookup's time in PostgreSQL (perf on pgbench: lookups/s +10–15 %). A person arrives as
# ARRAY[name, phone, title]: one jsonb object built from an IN over the six ids scanned every person.
_LOOKUP_SQL = """
    SELECT o.*,
           (SELECT bg.label FROM boundary_generations bg WHERE bg.generation = o.generation) AS generation_label,
           (SELECT g.name FROM grids g WHERE g.generation = o.generation AND g.code = o.grid_code) AS grid_name,
           (SELECT c.name FROM communities c
            WHERE c.generation = o.generation AND c.code = o.community_code) AS community_name,
           (SELECT ARRAY[sd.name, sd.name_en] FROM subdistricts sd
            WHERE sd.generation = o.generation AND sd.code = o.subdistrict_code) AS subdistrict_names,
           (SELECT ARRAY[sq.name, sq.headcount::text, sq.assistants::text] FROM squads sq
            WHERE sq.code = o.squad_code) AS squad_facts,
           (SELECT st.name FROM streets st WHERE st.code = o.street_code) AS street_name,
           (SELECT rv.name FROM rivers rv WHERE rv.code = o.river_code) AS river_name,
           (SELECT ng.name FROM grids ng
            WHERE ng.generation = o.generation AND ng.code = o.nearest_grid_code) AS nearest_grid_name,
           (SELECT ARRAY[p.name, p.phone, p.title] FROM people p WHERE p.id = o.grid_member_id) AS grid_member,
           (SELECT ARRAY[p.name, p.phone, p.title] FROM people p WHERE p.id = o.street_chief_id) AS street_chief,
           (SELECT ARRAY[p.name, p.phone, p.title] FROM people p
            WHERE p.id = o.subdistrict_chief_id) AS subdistrict_chief,
           (SELECT ARRAY[p.name, p.phone, p.title] FROM people p
            WHERE p.id = o.general_street_chief_id) AS general_street_chief,
           (SELECT ARRAY[p.name, p.phone, p.title] FROM people p WHERE p.id = o.squad_leader_id) AS squad_leader,
           (SELECT ARRAY[p.name, p.phone, p.title] FROM people p WHERE p.id = o.river_chief_id) AS river_chief
    FROM citygrid_owner(ST_SetSRID(ST_MakePoint($1, $2), 4326), $3, $4, $5, $6, $7) o
"""
_PREPARE = f"PREPARE {_PREPARED} (float8, float8, timestamptz, float8, float8, float8, float8) AS {_LOOKUP_SQL}"
_EXECUTE = f"EXECUTE {_PREPARED} (%s, %s, %s, %s, %s, %s, %s)"


class NotCovered(NotFound):
    """The point is farther from every grid than the tolerance allows."""

    code = "not_covered"


# Distances are measured in EPSG:4544 (Gauss-Krüger, central meridian 105° E). Far from that meridian PROJ
# refuses the point ("outside of projection domain", from ≈85° away at the equator) and long before it the
# metres are meaningless; a point this far from the meridian is not covered, whatever the nearest grid.
CENTRAL_MERIDIAN = 105.0
FAR_FROM_MERIDIAN_DEG = 60.0


@dataclass(frozen=True)
class Point:
    """A point as given and as stored (WGS-84)."""

    lon: float
    lat: float
    crs: str
    given: tuple[float, float]


@dataclass
class OwnerAnswer:
    """The responsibility chain of one point as of one moment, with names and phone numbers."""

    point: Point
    at: datetime
    row: dict[str, Any]
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    def person(self, person_id: str | None, *, phones: bool = True) -> dict[str, Any] | None:
        """Return id, name, phone (unless ``phones`` is False) and title of a person in the chain, or None."""
        found = self.people.get(person_id) if person_id else None
        if found is None or phones:
            return found
        return {k: v for k, v in found.items() if k != "phone"}

    def as_dict(self, *, phones: bool = True) -> dict[str, Any]:
        """Return the answer as the JSON the API and the CLI print (``phones`` False: for the public)."""
        r = self.row

        def person(person_id: str | None) -> dict[str, Any] | None:
            return self.person(person_id, phones=phones)

        street = (
            {"code": r["street_code"], "name": r["street_name"], "distance_m": _m(r["street_distance_m"])}
            if r["street_code"]
            else None
        )
        river = (
            {
                "river": {"code": r["river_code"], "name": r["river_name"], "distance_m": _m(r["river_distance_m"])},
                "person": person(r["river_chief_id"]),
            }
            if r["river_code"]
            else None
        )
        return {
            "point": {"lon": self.point.lon, "lat": self.point.lat, "crs": self.point.crs, "given": self.point.given},
            "at": self.at.isoformat(),
            "generation": {"generation": r["generation"], "label": r["generation_label"]},
            "grid": {"code": r["grid_code"], "name": r["grid_name"]},
            "community": {"code": r["community_code"], "name": r["community_name"]},
            "subdistrict": {
                "code": r["subdistrict_code"],
                "name": r["subdistrict_name"],
                "name_en": r["subdistrict_name_en"],
            },
            "squad": {
                "code": r["squad_code"],
                "name": r["squad_name"],
                "headcount": r["squad_headcount"],
                "assistants": r["squad_assistants"],
                "leader": person(r["squad_leader_id"]),
            },
            "grid_member": person(r["grid_member_id"]),
            "street_chief": {
                "person": person(r["street_chief_id"]),
                "basis": r["street_chief_basis"],
                "street": street,
            },
            "subdistrict_chief": person(r["subdistrict_chief_id"]),
            "general_street_chief": person(r["general_street_chief_id"]),
            "river_chief": river,
            "ambiguous": len(r["candidates"] or []) > 1,
            "candidates": list(r["candidates"] or []),
            "outside": bool(r["outside"]),
            "distance_to_grid_m": _m(r["distance_to_grid_m"]),
            "distance_to_boundary_m": _m(r["distance_to_boundary_m"]),
        }


def _m(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def locate(x: float, y: float, crs_name: str | None) -> Point:
    """Return the WGS-84 point for coordinates given in ``crs_name``; refuse NaN and impossible values."""
    crs = parse_crs(crs_name)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InvalidInput(f"coordinates ({x}, {y}) are not finite numbers: give lon and lat as decimal degrees")
    if not crs.projected:
        check_range(x, y)
    lon, lat = to_wgs84(x, y, crs)
    return Point(lon=round(lon, 8), lat=round(lat, 8), crs=crs.name, given=(x, y))


def outside_zone(point: Point) -> bool:
    """Return True for a point too far from the city's projection zone to be measured, let alone covered."""
    return abs(point.lon - CENTRAL_MERIDIAN) > FAR_FROM_MERIDIAN_DEG


def check_range(lon: float, lat: float) -> None:
    """Refuse a longitude outside -180..180 or a latitude outside -90..90, saying when they look swapped."""
    if -180 <= lon <= 180 and -90 <= lat <= 90:
        return
    hint = " — they look swapped: give lon first, then lat" if -90 <= lon <= 90 and -180 <= lat <= 180 else ""
    raise InvalidInput(f"lon {lon} / lat {lat} are out of range (lon -180..180, lat -90..90){hint}")


def _query(conn: AnyConnection, lon: float, lat: float, at: datetime, rules: OwnerSettings) -> dict[str, Any] | None:
    return run_prepared(
        conn,
        _PREPARED,
        _PREPARE,
        _EXECUTE,
        (lon, lat, at, rules.edge_tolerance_m, rules.outside_tolerance_m, rules.street_radius_m, rules.river_radius_m),
    )


def no_generation(moment: datetime) -> NotFound:
    """Return the refusal of a lookup at a moment when no boundary generation was in force."""
    return NotFound(f"no boundary generation was in force at {moment.isoformat()}; ask about a later moment")


def lookup(
    conn: AnyConnection,
    x: float,
    y: float,
    *,
    crs: str | None = None,
    at: datetime | None = None,
    rules: OwnerSettings,
) -> OwnerAnswer:
    """Return the chain of the point (x, y) in ``crs`` as of ``at`` (default now).

    Raises NotCovered (with the nearest grid and its distance) when the point is beyond the tolerance,
    InvalidInput when it would be covered with longitude and latitude swapped, NotFound when no boundary
    generation was in force at ``at``.
    """
    moment = at or datetime.now(UTC)
    if moment.tzinfo is None:
        raise InvalidInput(f"at={moment.isoformat()} has no time zone: add one, e.g. 2017-05-01T09:00:00+08:00")
    point = locate(x, y, crs)
    if outside_zone(point):
        raise NotCovered(
            f"not covered: ({point.lon}, {point.lat}) is {abs(point.lon - CENTRAL_MERIDIAN):.1f}° of longitude from "
            f"this city's projection zone (central meridian {CENTRAL_MERIDIAN:g}° E); give a point in the city",
            detail={"nearest_grid": None, "distance_m": None, "tolerance_m": rules.outside_tolerance_m},
        )
    row = _query(conn, point.lon, point.lat, moment, rules)
    if row is None or row["generation"] is None:
        raise no_generation(moment)
    if row["grid_code"] is None:
        _refuse_uncovered(conn, point, moment, row, rules, crs)
    row["subdistrict_name"], row["subdistrict_name_en"] = row.pop("subdistrict_names") or (None, None)
    squad = row.pop("squad_facts")
    row["squad_name"], row["squad_headcount"], row["squad_assistants"] = (
        (squad[0], int(squad[1]), int(squad[2])) if squad else (None, None, None)
    )
    return OwnerAnswer(point=point, at=moment, row=row, people=_people(row))


def _people(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the chain's people by id, as {id, name, phone, title}, from the lookup's per-role arrays."""
    people = {}
    for role in PEOPLE_ROLES:
        found = row.pop(role)
        if found is not None:
            name, phone, title = found
            people[row[f"{role}_id"]] = {"id": row[f"{role}_id"], "name": name, "phone": phone, "title": title}
    return people


def _refuse_uncovered(
    conn: AnyConnection, point: Point, at: datetime, row: dict[str, Any], rules: OwnerSettings, crs: str | None
) -> None:
    swapped_crs: InputCrs = parse_crs(crs)
    if not swapped_crs.projected and -90 <= point.given[0] <= 90:
        swapped = _query(conn, *to_wgs84(point.given[1], point.given[0], swapped_crs), at, rules)
        if swapped is not None and swapped["grid_code"] is not None and not swapped["outside"]:
            raise InvalidInput(
                f"({point.given[0]}, {point.given[1]}) is outside every grid, but ({point.given[1]}, "
                f"{point.given[0]}) falls in grid {swapped['grid_code']}: longitude and latitude look swapped; "
                "give lon first, then lat",
                detail={"swapped_grid_code": swapped["grid_code"]},
            )
    distance = _m(row["distance_to_grid_m"])
    raise NotCovered(
        f"not covered: the point is {distance} m from the nearest grid {row['nearest_grid_code']} "
        f"({row['nearest_grid_name']}), beyond the {rules.outside_tolerance_m:g} m tolerance",
        detail={
            "nearest_grid": {"code": row["nearest_grid_code"], "name": row["nearest_grid_name"]},
            "distance_m": distance,
            "tolerance_m": rules.outside_tolerance_m,
        },
    )
