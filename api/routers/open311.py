"""``/open311/v2``: Open311 GeoReport v2 — services, service definitions, requests and tokens, JSON or XML.

Errors take the spec's form, ``[{code, description}]`` (``<errors><error>…`` in XML), not the API's own.
POST requests needs an ``api_key`` (any role; see ``citygrid keys create``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.access import ROLES_EXTENSION, allow
from api.errors import STATUS, error_response
from spatial import keys, open311
from spatial.errors import CitygridError, Forbidden, InvalidInput, NotFound, Unauthorized

# The spec's status codes: 400 for a bad request, 403 for a bad api_key, 404 for an unknown thing.
OPEN311_STATUS = {InvalidInput: 400, Unauthorized: 403, Forbidden: 403, NotFound: 404}
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}


def _format_of(request: Request) -> str:
    suffix = request.url.path.rsplit(".", 1)[-1].lower()
    return suffix if suffix in FORMATS else "json"


def render(request: Request, root: str, value: Any, status: int = 200) -> Response:
    """Return ``value`` in the format the path asks for (.json or .xml)."""
    if _format_of(request) == "xml":
        return Response(open311.to_xml(root, value), status_code=status, media_type=FORMATS["xml"])
    return JSONResponse(value, status_code=status, media_type=FORMATS["json"])


def _status(exc: CitygridError) -> int:
    for cls, code in OPEN311_STATUS.items():
        if isinstance(exc, cls):
            return code
    return next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)


class Open311Route(APIRoute):
    """A route whose errors come out in the Open311 form, in the format the path asks for."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so that domain and validation errors become ``[{code, description}]``."""
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except CitygridError as exc:
                status = _status(exc)
                return render(request, "errors", open311.errors(status, exc.message), status)
            except RequestValidationError as exc:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                return render(request, "errors", open311.errors(400, f"bad request: {problems}"), 400)
            except Exception as exc:  # a value the database refuses (a NUL, a number out of range): a 4xx too
                answer = error_response(exc)  # re-raises what the application does not answer itself
                if answer.status_code >= 500:
                    return answer  # the database is down: the 503 with Retry-After
                status = 400 if answer.status_code == 422 else answer.status_code  # the spec's "bad request"
                message = orjson.loads(answer.body)["message"]
                return render(request, "errors", open311.errors(status, message), status)

        return wrapped


class Open311Error(BaseModel):
    """One error in the spec's form."""

    code: int
    description: str


def _errors(description: str) -> dict[str, Any]:
    return {"model": list[Open311Error], "description": description, "content": {"text/xml": {}}}


router = APIRouter(
    prefix="/open311/v2",
    tags=["open311"],
    route_class=Open311Route,
    responses={
        200: {"content": {"application/json": {}, "text/xml": {}}},
        400: _errors("bad request: the description says what was wrong"),
        403: _errors("no api_key, or an unknown or revoked one"),
        404: _errors("an unknown service, request, token, jurisdiction or format"),
    },
)
# Documented as json or xml; any other suffix is a 404 in the spec's error form.
Format = Annotated[str, Path(description="json or xml", json_schema_extra={"enum": ["json", "xml"]})]


def _check_format(format: str) -> None:  # noqa: A002
    if format.lower() not in FORMATS:
        raise NotFound(f"format {format!r} is not served: use .json or .xml")


@router.get(
    "/services.{format}",
    summary="Open311: every service (the 147 catalogue items)",
    **allow("public", doing="list services"),
)
def list_services(request: Request, format: Format, jurisdiction_id: str | None = None) -> Response:  # noqa: A002
    """Return the service list."""
    _check_format(format)
    open311.check_jurisdiction(jurisdiction_id)
    return render(request, "services", open311.services())


@router.get(
    "/services/{service_code}.{format}",
    summary="Open311: one service's definition (its attributes)",
    **allow("public", doing="read a service definition"),
)
def service_definition(
    request: Request,
    service_code: str,
    format: Format,
    jurisdiction_id: str | None = None,  # noqa: A002
) -> Response:
    """Return a service definition."""
    _check_format(format)
    open311.check_jurisdiction(jurisdiction_id)
    return render(request, "service_definition", open311.service_definition(service_code))


_REQUEST_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["service_code", "lat", "long"],
                "properties": {
                    "api_key": {"type": "string", "description": "or the X-API-Key header"},
                    "service_code": {"type": "string", "description": "a catalogue item, e.g. 0508"},
                    "lat": {"type": "number"},
                    "long": {"type": "number"},
                    **{name: {"type": "string"} for name in (
                        "jurisdiction_id", "description", "media_url", "address_string", "email", "device_id",
                        "account_id", "first_name", "last_name", "phone", "attribute[coordinate_system]",
                    )},
                },
            }
        }
    },
}  # fmt: skip


@router.post(
    "/requests.{format}",
    status_code=201,
    summary="Open311: report a service request (form-encoded, with api_key)",
    openapi_extra={"requestBody": _REQUEST_FORM, ROLES_EXTENSION: ["any key"]},  # api_key checked inside (403)
    responses={201: {"content": {"application/json": {}, "text/xml": {}}}},
)
async def post_request(request: Request, format: Format) -> Response:  # noqa: A002
    """Create a service request from the form (or query) fields the spec names; answer id, token and notice."""
    _check_format(format)
    fields = dict(request.query_params)
    body = await request.body()
    if body and request.headers.get("content-type", "").partition(";")[0].strip().lower().endswith("json"):
        raise InvalidInput(
            "the request is read as a form (application/x-www-form-urlencoded), as GeoReport v2 posts it, not JSON: "
            "send api_key, service_code, lat, long … as form fields"
        )
    if body:
        try:
            fields.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise InvalidInput("the body is not UTF-8 application/x-www-form-urlencoded") from exc
    open311.check_jurisdiction(fields.get("jurisdiction_id"))
    new = open311.NewRequest(
        service_code=fields.get("service_code"),
        lat=_number(fields, "lat"),
        long=_number(fields, "long"),
        description=fields.get("description", ""),
        media_url=fields.get("media_url") or None,
        address_string=fields.get("address_string", ""),
        email=fields.get("email"),
        device_id=fields.get("device_id"),
        account_id=fields.get("account_id"),
        first_name=fields.get("first_name"),
        last_name=fields.get("last_name"),
        phone=fields.get("phone"),
        coordinate_system=fields.get("attribute[coordinate_system]") or None,
    )
    secret = fields.get("api_key") or request.headers.get("x-api-key")
    engine = request.app.state.engine
    settings = request.app.state.settings

    if not secret:
        raise Unauthorized("api_key is required: send the key this city gave your application as the api_key field")

    def create() -> list[dict[str, Any]]:
        with engine.begin() as conn:
            key = keys.authenticate(conn, secret)
            return open311.create_request(conn, new, key=key, rules=settings.owner)

    return render(request, "service_requests", await run_in_threadpool(create), status=201)


def _number(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name)
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a number: give decimal degrees (WGS-84)") from None


@router.get(
    "/requests.{format}",
    summary="Open311: service requests by id, service, dates, status; paged",
    **allow("public", doing="list service requests"),
)
def get_requests(
    request: Request,
    format: Format,  # noqa: A002
    jurisdiction_id: str | None = None,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: str | None = None,
    page: int = 1,
    page_size: int = open311.DEFAULT_PAGE_SIZE,
) -> Response:
    """Return matching requests, newest first (the last 90 days when no dates are given)."""
    _check_format(format)
    open311.check_jurisdiction(jurisdiction_id)
    query = open311.RequestQuery(
        service_request_id=service_request_id, service_code=service_code, start_date=start_date,
        end_date=end_date, status=status, page=page, page_size=page_size,
    )  # fmt: skip
    with request.app.state.engine.connect() as conn:
        return render(request, "service_requests", open311.requests(conn, query))


@router.get(
    "/requests/{service_request_id}.{format}",
    summary="Open311: one service request",
    **allow("public", doing="read a service request"),
)
def get_request(
    request: Request,
    service_request_id: str,
    format: Format,
    jurisdiction_id: str | None = None,  # noqa: A002
) -> Response:
    """Return one request, as a list of one."""
    _check_format(format)
    open311.check_jurisdiction(jurisdiction_id)
    with request.app.state.engine.connect() as conn:
        return render(request, "service_requests", open311.request(conn, service_request_id))


@router.get(
    "/tokens/{token}.{format}",
    summary="Open311: the request a token stands for",
    **allow("public", doing="look up a token"),
)
def get_token(request: Request, token: str, format: Format, jurisdiction_id: str | None = None) -> Response:  # noqa: A002
    """Return the service_request_id of a token."""
    _check_format(format)
    open311.check_jurisdiction(jurisdiction_id)
    with request.app.state.engine.connect() as conn:
        return render(request, "service_requests", open311.token(conn, token))
