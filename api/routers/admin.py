"""Administration over HTTP: duty handovers, people's details, boundary files. Admin keys only (people: staff).

Each write is one transaction and lands in the audit log under the key that made it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.access import CallerDep, KeyDep, allow
from api.deps import ConnectionDep, EngineDep
from api.errors import documented
from api.uploads import uploaded
from spatial import access, audit, people
from spatial.boundaries import import_boundaries

router = APIRouter(tags=["admin"])


class HandoverIn(BaseModel):
    """Who takes over a duty, and from when."""

    role: Literal[
        "grid_member", "street_chief", "river_chief", "squad_leader", "subdistrict_chief", "general_street_chief"
    ]
    target_code: str = Field(description="the grid, street, river, squad, subdistrict or city code", max_length=20)
    person_id: str = Field(description="the new holder, e.g. P0396", max_length=20)
    at: datetime = Field(description="when the handover happens, with time zone")


class PersonIn(BaseModel):
    """A person's details to change (omitted ones stay)."""

    name: str | None = Field(default=None, max_length=50)
    phone: str | None = Field(default=None, max_length=24)
    title: str | None = Field(default=None, max_length=50)


@router.post(
    "/v1/duties/handovers",
    status_code=201,
    summary="Hand a duty over (交接): the current holder's ends and the new holder's begins at one moment",
    **allow(
        doing="hand duties over",
        responses={
            404: {"description": "no such place or person"},
            409: {"description": "it clashes with another duty"},
        },
    ),  # fmt: skip
)
def hand_over(body: HandoverIn, key: KeyDep, engine: EngineDep) -> dict[str, Any]:
    """End the current holder's duty at ``at`` and start the new holder's from then."""
    with engine.begin() as conn:
        return people.hand_over(
            conn, key=key, role=body.role, target_code=body.target_code, person_id=body.person_id, at=body.at
        ).as_dict()


@router.get(
    "/v1/people",
    summary="The people of the chain (grid members, chiefs, squad leaders) with their phone numbers",
    **allow(*access.STAFF_ROLES, doing="read the phone list"),
)
def list_people(
    conn: ConnectionDep,
    role: Annotated[str | None, Query(description="grid_member, street_chief, squad_leader, …")] = None,
    squad_code: str | None = None,
) -> list[dict[str, Any]]:
    """Return every person (optionally of one role or squad), ordered by id."""
    rows = conn.execute(
        text(
            "SELECT id, name, role, phone, squad_code, title FROM people WHERE (:role IS NULL OR role = :role) "
            "AND (:squad IS NULL OR squad_code = :squad) ORDER BY id"
        ),
        {"role": role, "squad": squad_code},
    ).mappings()
    return [dict(r) for r in rows]


@router.patch(
    "/v1/people/{person_id}",
    summary="Change a person's name, phone or title",
    **allow(doing="change people's details", responses={404: {"description": "no such person"}}),
)
def update_person(person_id: str, body: PersonIn, key: KeyDep, engine: EngineDep) -> dict[str, Any]:
    """Change the given fields of a person and return the person."""
    with engine.begin() as conn:
        return people.update_person(
            conn, key=key, person_id=person_id, name=body.name, phone=body.phone, title=body.title
        )


BOUNDARY_FILES = {
    "application/geo+json": ".geojson",
    "application/json": ".geojson",
    "application/geopackage+sqlite3": ".gpkg",
    "application/zip": ".shp.zip",
}


@router.post(
    "/v1/boundaries/{layer}",
    summary="Import a boundary file as a new generation (grids, communities, subdistricts) or update streets",
    description=(
        "Send the file as the body: `application/geo+json`, `application/geopackage+sqlite3` or `application/zip` "
        "(a zipped Shapefile). Gaps, overlaps, overhangs and invalid geometries refuse the file (422, each located) "
        "unless `force`; `dry_run` checks and returns the difference without writing."
    ),
    **allow(
        doing="import boundaries",
        responses={
            415: {"description": "not a GeoJSON, GeoPackage or zipped Shapefile"},
            422: {"description": "problems in the file: each is named and located"},
        },
    ),  # fmt: skip
)
async def import_boundary_file(
    layer: Literal["grids", "communities", "subdistricts", "streets"],
    request: Request,
    key: KeyDep,
    engine: EngineDep,
    crs: Annotated[str | None, Query(description="the file's CRS if it has none, e.g. EPSG:4544")] = None,
    dry_run: bool = False,
    force: bool = False,
    label: Annotated[str | None, Query(max_length=100)] = None,
    valid_from: Annotated[
        datetime | None,
        Query(
            description="when the new generation starts (default: now); without a time zone, e.g. 2024-01-01, "
            "Beijing time (+08:00), as on the command line"
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        Query(
            max_length=40,
            description="a zipped Shapefile's text encoding, e.g. gbk or utf-8 (default: its .cpg; without one, "
            "UTF-8 if the text is valid UTF-8, else GBK)",
        ),
    ] = None,
) -> dict[str, Any]:
    """Import the body as ``layer`` in one transaction (rolled back for a dry run) and return the report."""
    async with uploaded(request, BOUNDARY_FILES, name=layer, what="a boundary file") as path:

        def run() -> dict[str, Any]:
            with engine.connect() as conn, conn.begin() as transaction:
                audit.act_as(conn, key)
                report = import_boundaries(
                    conn, layer, path, crs=crs, force=force, label=label, valid_from=valid_from, encoding=encoding
                )
                if dry_run:
                    transaction.rollback()
            return {
                "layer": report.layer, "features": report.features, "generation": report.generation,
                "previous_generation": report.previous_generation,
                "valid_from": report.valid_from.isoformat() if report.valid_from else None,
                "counts": report.counts(), "problems": [p.as_dict() for p in report.problems],
                "warnings": report.warnings, "dry_run": dry_run, "written": not dry_run,
            }  # fmt: skip

        return await run_in_threadpool(run)


@router.get(
    "/v1/whoami",
    summary="Who the key sent is: its name, role and subdistrict (anonymous callers are public)",
    **allow("public", doing="ask who they are", responses=documented(401, s401="an unknown or revoked key")),
)
def whoami(key: CallerDep) -> dict[str, Any]:
    """Return the caller's name, role, subdistrict scope and what the role may see."""
    return {
        "name": key.name,
        "role": key.role,
        "subdistrict_code": key.subdistrict_code,
        "sees_phones": access.sees_phones(key),
        "reads_scores": key.has_role(*access.SCORE_READERS),
    }
