"""``/v1/incidents``: report a case, import a file of them, list and read them, and move them through the loop.

Writes need an API key (``X-API-Key`` or ``Authorization: Bearer``); its role decides which steps it may take.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from api.access import KeyDep, allow, key_holder_on
from api.deps import ConnectionDep, EngineDep, ReadEngineDep, SettingsDep
from api.errors import documented, error_response
from api.shortcut import Shortcut, send_json
from api.uploads import uploaded
from spatial import access, intake, workflow
from spatial.errors import CitygridError, InvalidInput
from spatial.keys import ApiKey
from spatial.layers.incidents import SOURCES, STATUSES
from spatial.settings import Settings

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])

CRS_HELP = "wgs84 (default), cgcs2000, gcj02 (AMap, Tencent, WeChat), bd09 (Baidu) or EPSG:<code> (e.g. EPSG:4544)"


class ReporterIn(BaseModel):
    """Who reported it, for calling back: shown only to the roles that handle the case."""

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40, description="a phone number to call back on")


class IncidentIn(BaseModel):
    """A report: where (any CRS the owner lookup takes), what (a catalogue item), from whom, with what."""

    lon: float = Field(description="longitude, or x (metres) for a projected EPSG crs")
    lat: float = Field(description="latitude, or y (metres) for a projected EPSG crs")
    crs: str | None = Field(default=None, description=CRS_HELP)
    item_code: str = Field(description="one of the 147 catalogue items, e.g. 0508 (占道经营)")
    source: Literal["hotline", "letter", "patrol", "grid_member", "media", "open311"]
    description: str = ""
    photos: list[str] = Field(default_factory=list, description="photo URLs (http or https)")
    reported_at: datetime | None = Field(default=None, description="when it was reported (default: now)")
    address: str = ""
    reporter: ReporterIn | None = Field(default=None, description="the caller or citizen, if they gave their name")


class StepIn(BaseModel):
    """One step of the closed loop: a note (reject, rework and defer need one), and when (default now)."""

    note: str = Field(default="", max_length=2000)
    at: datetime | None = Field(default=None, description="when the step happened (default: now)")


class EvaluationIn(StepIn):
    """The reporter's satisfaction with a closed case (评价)."""

    satisfaction: Literal["satisfied", "basically_satisfied", "dissatisfied"]


class MoveIn(BaseModel):
    """A corrected point for an open case, and why it was wrong."""

    lon: float
    lat: float
    crs: str | None = Field(default=None, description=CRS_HELP)
    reason: str = Field(description="why the point moves, e.g. 'the caller's phone gave GCJ-02'", max_length=2000)
    at: datetime | None = None


def _feature(case: dict[str, Any]) -> dict[str, Any]:
    point = case["point"]
    properties = {k: v for k, v in case.items() if k != "point"}
    return {
        "type": "Feature",
        "id": case["code"],
        "geometry": {"type": "Point", "coordinates": [point["lon"], point["lat"]]},
        "properties": properties,
    }


@router.post(
    "",
    status_code=201,
    summary="Report an incident: stored with its whole responsibility chain, due time and duplicate check",
    **allow(
        "public",
        doing="report an incident",
        needs_key=True,
        responses={
            200: {"description": "a retry with the same Idempotency-Key: the first result"},
            **documented(403, 422, s422="unknown item or source, bad point or crs, a point no grid covers"),
        },
    ),  # fmt: skip
)
async def report_incident(
    body: IncidentIn,
    key: KeyDep,
    read_engine: ReadEngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None, Header(description="a client-chosen key (e.g. a UUID): a retry returns the first result")
    ] = None,
) -> Response:
    """Store the report as a case in the collected (信息收集) state and return it with its chain.

    Requests normally reach ``store_report`` through ``IntakeShortcut``; this route documents the endpoint and
    answers every request the shortcut leaves to it: a body it does not read (not JSON, or not a valid report,
    for this route's 422), or under a root path.
    """
    # In the event loop, like the owner lookup: one prepared statement of ≈1 ms; a thread hand-off and FastAPI's
    # generic encoder cost more than they save (measured with benchmarks/intake.py). That one statement stores
    # the case and its first event, so on the autocommit engine it is a transaction of its own, without the
    # round trips of BEGIN and COMMIT around it; everything else the intake runs only reads.
    with read_engine.connect() as conn:
        status, headers, payload = store_report(conn, body, key, idempotency_key, settings)
    return Response(payload, status_code=status, media_type="application/json", headers=headers)


def store_report(
    conn: Connection, body: IncidentIn, key: ApiKey, idempotency_key: str | None, settings: Settings
) -> tuple[int, dict[str, str], bytes]:
    """Store a report (see ``report_incident``); return the status, the headers and the JSON body to answer with.

    The one place the answer is shaped, for the route and for the shortcut alike.
    """
    report = intake.Report(
        x=body.lon, y=body.lat, crs=body.crs, item_code=body.item_code, source=body.source,
        description=body.description, photos=tuple(body.photos), reported_at=body.reported_at, address=body.address,
        reporter=body.reporter.model_dump(exclude_none=True) if body.reporter else {},
    )  # fmt: skip
    result = intake.create_incident(conn, report, key=key, rules=settings.owner, idempotency_key=idempotency_key)
    headers = {"Location": f"/v1/incidents/{result.case['code']}"}
    if not result.created:
        headers["Idempotent-Replayed"] = "true"
    # orjson: compact UTF-8 JSON, as json.dumps(ensure_ascii=False) writes it, several times faster
    return 201 if result.created else 200, headers, orjson.dumps(access.case_for_caller(key, result.case))


class IntakeShortcut(Shortcut):
    """A JSON report to POST /v1/incidents stored past FastAPI's routing and request machinery (``api.shortcut``).

    The intake is the system's busiest write (the hotline, grid members, citizens' apps); FastAPI's routing,
    dependency solving and body handling cost a worker about as much Python time as the rest of the request
    (measured with benchmarks/intake.py). The body is read and
    checked as the route reads it (``json.loads``, then ``IncidentIn``); one that is not a valid report, or is
    not sent as JSON, goes on to the route unchanged, so every refusal of a body is the route's own. The key is
    checked on the connection that then stores the case (the route checks it on a connection of its own).
    """

    method, path = "POST", router.prefix

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Store a report; pass a body this does not take to the application."""
        headers = Headers(scope=scope)
        content_type = headers.get("content-type")
        if content_type is not None and content_type.partition(";")[0].strip().lower() != "application/json":
            await self.app(scope, receive, send)
            return
        chunks = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away: nobody to answer
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except CitygridError as exc:  # over the body limit (api.limits, outside this)
            await error_response(exc)(scope, receive, send)
            return
        body = b"".join(chunks)
        try:
            report = IncidentIn.model_validate(json.loads(body))
        except ValueError:  # not JSON, not UTF-8 or not a valid report (pydantic's ValidationError is one too)
            await self.app(scope, _replaying(body, receive), send)
            return
        state = scope["app"].state
        try:
            with state.read_engine.connect() as conn:
                key = key_holder_on(headers, conn)
                status, extra, payload = store_report(conn, report, key, headers.get("idempotency-key"), state.settings)
        except Exception as exc:  # answered as the application's handlers answer it, or raised on
            await error_response(exc)(scope, receive, send)
            return
        await send_json(send, payload, status=status, headers=extra)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that gives ``body`` (already read) once, then whatever the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


CASE_FILES = {
    "text/csv": ".csv",
    "application/csv": ".csv",
    "application/geo+json": ".geojson",
    "application/json": ".geojson",
    "application/geopackage+sqlite3": ".gpkg",
}


@router.post(
    "/bulk",
    status_code=201,
    summary="Import a file of cases (CSV, GeoJSON or GeoPackage): all rows or none, unless skip_invalid",
    description=(
        "Send `text/csv` (UTF-8, header row; columns lon, lat, item_code, source, reported_at, and optionally code, "
        "description, address, status, due_at, closed_at, satisfaction, deferred, reworks, photos), "
        "`application/geo+json` or `application/geopackage+sqlite3`. Every row is checked; a file with bad rows "
        "is refused whole (422, each bad row listed) unless `skip_invalid=true`."
    ),
    **allow(
        *intake.IMPORTING_ROLES,
        doing="import case files",
        responses=documented(415, 422, s422="bad rows: nothing imported; `detail.errors` lists them"),
    ),  # fmt: skip
)
async def import_incidents(
    request: Request,
    key: KeyDep,
    engine: EngineDep,
    settings: SettingsDep,
    skip_invalid: Annotated[bool, Query(description="import the good rows and report the bad ones")] = False,
    crs: Annotated[str | None, Query(description=CRS_HELP)] = None,
    source: Annotated[str | None, Query(description="the source of rows without a source column")] = None,
    flag_duplicates: Annotated[bool, Query(description="flag open cases near an open one of the same item")] = True,
) -> dict[str, Any]:
    """Import the body's cases in one transaction and return the import report."""
    async with uploaded(request, CASE_FILES, name="upload", what="a file of cases") as path:

        def run() -> intake.ImportReport:
            with engine.begin() as conn:
                return intake.import_file(
                    conn, path, key=key, rules=settings.owner, crs=crs, source=source, skip_invalid=skip_invalid,
                    flag_duplicates=flag_duplicates, max_rows=settings.api.max_features,
                )  # fmt: skip

        report = await run_in_threadpool(run)
    return report.as_dict()


@router.get(
    "",
    summary="List cases: by status, source, item, place, overdue; newest or oldest first",
    **allow(
        "public",
        doing="read cases",
        needs_key=True,
        responses={
            200: {"content": {"application/geo+json": {}}},
            **documented(403, s403="a squad or grid-member key asked for another subdistrict"),
        },
    ),  # fmt: skip
)
def list_incidents(
    conn: ConnectionDep,
    key: KeyDep,
    settings: SettingsDep,
    status: Annotated[list[str] | None, Query(description=f"one or more of {', '.join(STATUSES)}")] = None,
    source: Annotated[list[str] | None, Query(description=f"one or more of {', '.join(SOURCES)}")] = None,
    item_code: Annotated[list[str] | None, Query()] = None,
    subdistrict_code: str | None = None,
    community_code: str | None = None,
    grid_code: str | None = None,
    overdue: Annotated[bool, Query(description="only cases past their due time and still open at `at`")] = False,
    at: Annotated[datetime | None, Query(description="the moment 'overdue' is judged at (default: now)")] = None,
    reported_from: datetime | None = None,
    reported_to: datetime | None = None,
    newest_first: bool = False,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    """Return one page of cases as a GeoJSON FeatureCollection (numberMatched counts them all).

    A squad or grid-member key lists its own subdistrict's cases; a public key, the cases it reported.
    """
    for value, allowed, name in ((status, STATUSES, "status"), (source, SOURCES, "source")):
        bad = [v for v in value or [] if v not in allowed]
        if bad:
            raise InvalidInput(f"{name} {', '.join(bad)} unknown: use {', '.join(allowed)}")
    for moment in (at, reported_from, reported_to):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{moment.isoformat()} has no time zone: add one, e.g. +08:00")
    page_size = min(limit or settings.api.default_page_size, settings.api.max_page_size)
    filters = workflow.CaseFilter(
        status=tuple(status or ()), source=tuple(source or ()), item_code=tuple(item_code or ()),
        subdistrict_code=access.scope_of(key, subdistrict_code), community_code=community_code, grid_code=grid_code,
        overdue_at=(at or datetime.now(UTC)) if overdue else None, reported_from=reported_from,
        reported_to=reported_to, api_key_id=key.id if key.role == "public" else None,
    )  # fmt: skip
    cases, matched = workflow.list_cases(conn, filters, limit=page_size, offset=offset, newest_first=newest_first)
    return JSONResponse(
        {
            "type": "FeatureCollection",
            "numberMatched": matched,
            "numberReturned": len(cases),
            "features": [_feature(access.case_for_caller(key, c)) for c in cases],
        },
        media_type="application/geo+json",
    )


@router.get(
    "/workflow",
    summary="The closed loop: every action, the statuses it starts from and who may take it",
    **allow("public", doing="read the workflow"),
)
def describe_workflow() -> dict[str, Any]:
    """Return the actions of the closed loop with their roles, and the statuses with their Chinese names."""
    return {
        "statuses": [{"status": s, "label_zh": label} for s, label in workflow.STATUS_LABELS.items()],
        "actions": [
            {
                "action": a.name,
                "label_zh": a.label_zh,
                "from_statuses": list(a.from_statuses),
                "to_status": a.to_status,
                "roles": list(a.allowed_roles()),
                "description": a.description,
            }
            for a in workflow.ACTIONS
        ],
    }


@router.get(
    "/{code}",
    summary="One case: its chain, due time, events and the actions it allows next",
    **allow(
        "public",
        doing="read cases",
        needs_key=True,
        responses=documented(
            403, 404, s403="the case is in another subdistrict than the key's, or a public key did not report it"
        ),
    ),  # fmt: skip
)
def read_incident(code: str, conn: ConnectionDep, key: KeyDep) -> dict[str, Any]:
    """Return the case ``code`` with every event of its history."""
    return workflow.read_case(conn, code, key)


@router.post(
    "/{code}/location",
    summary="Move a case's point: re-assigns grid, squad and grid member, and records why",
    **allow(
        "dispatcher",
        "grid_member",
        "squad",
        doing="move a case's point",
        checked_inside=True,
        responses=documented(403, 404, 409, s409="the case is closed or rejected"),
    ),  # fmt: skip
)
def move_incident(code: str, body: MoveIn, key: KeyDep, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    """Move an open case to a corrected point; its whole chain is re-assigned from the new point."""
    with engine.begin() as conn:
        return workflow.move_case(
            conn, code=code, x=body.lon, y=body.lat, crs=body.crs, reason=body.reason, key=key,
            rules=settings.owner, at=body.at,
        )  # fmt: skip


def _step_route(action: workflow.Action) -> None:
    """Add ``POST /v1/incidents/{code}/{action}`` for one step of the loop."""
    model = EvaluationIn if action.name == "evaluate" else StepIn
    roles = ", ".join(action.allowed_roles())
    froms = ", ".join(action.from_statuses)

    def step(code: str, body: StepIn, key: KeyDep, engine: EngineDep) -> dict[str, Any]:
        with engine.begin() as conn:
            return workflow.transition(
                conn, code=code, action=action.name, key=key, at=body.at, note=body.note,
                satisfaction=getattr(body, "satisfaction", None),
            )  # fmt: skip

    step.__annotations__["body"] = model  # the model differs per action: give FastAPI the class itself
    step.__doc__ = f"{action.label_zh}: {action.description}."
    router.add_api_route(
        f"/{{code}}/{action.name}",
        step,
        methods=["POST"],
        name=f"incident_{action.name}",
        summary=f"{action.label_zh} {action.name}: {froms} → {action.to_status or 'same status'} (roles: {roles})",
        **allow(
            *action.roles,
            doing=action.name,
            checked_inside=True,
            responses=documented(
                403,
                404,
                409,
                s403=f"only {roles} keys may {action.name}, within their subdistrict",
                s409="the case's status does not allow it; the allowed actions are named",
            ),
        ),  # fmt: skip
    )


for _action in workflow.ACTIONS:
    _step_route(_action)
