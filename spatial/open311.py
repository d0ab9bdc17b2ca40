"""Open311 GeoReport v2: the catalogue as services, cases as service requests, in JSON or XML.

Mapping: a service is a catalogue item (``service_code`` = item code, ``group`` = its category); a service
request is a case (``service_request_id`` = case code; ``status`` open, or closed for closed and rejected
cases; ``expected_datetime`` = the due time; ``agency_responsible`` = the squad; ``address_id`` = the grid).
Requests come in through the same intake as ``POST /v1/incidents`` (source ``open311``), so they carry their
whole chain. Each service has two attributes: ``coordinate_system`` (phones in China report GCJ-02, which
lands ≈365 m off if read as WGS-84) and the item's time limit, shown for information.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.catalogue import ITEMS, category, item
from spatial.errors import InvalidInput, NotFound
from spatial.intake import ITEM_CODES, Report, create_incident
from spatial.keys import ApiKey
from spatial.settings import OwnerSettings
from spatial.workflow import CLOSED_STATUSES, OPEN_STATUSES, CaseFilter, list_cases

JURISDICTION = "532601"  # 文山市, the county-level city's statistical code
CST = timezone(timedelta(hours=8))
MAX_SPAN = timedelta(days=90)  # the spec's limit on a start_date/end_date range
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
UNITS_ZH = {"working_hours": "个工作小时", "working_days": "个工作日"}


def _unit_en(count: int, unit: str) -> str:
    """Return a time limit's unit in English, singular for one: 1 working day, 2 working hours."""
    words = unit.replace("_", " ")
    return words.removesuffix("s") if count == 1 else words


COORDINATE_SYSTEMS = (
    ("wgs84", "WGS-84 (GPS, the Open311 default)"),
    ("gcj02", "GCJ-02 (高德, 腾讯, 微信 maps)"),
    ("bd09", "BD-09 (百度 maps)"),
    ("cgcs2000", "CGCS2000"),
)
# XML element names of list members (the spec's plural → singular).
_MEMBER = {"services": "service", "service_requests": "request", "attributes": "attribute", "values": "value",
           "errors": "error"}  # fmt: skip


def check_jurisdiction(jurisdiction_id: str | None) -> None:
    """Refuse a jurisdiction other than Wenshan (532601); none given means Wenshan."""
    if jurisdiction_id not in (None, "", JURISDICTION):
        raise NotFound(f"jurisdiction_id {jurisdiction_id!r} is not served here: use {JURISDICTION} (文山市)")


def services() -> list[dict[str, Any]]:
    """Return every catalogue item as an Open311 service."""
    out = []
    for it in ITEMS:
        cat = category(it.category_code)
        out.append(
            {
                "service_code": it.code,
                "service_name": it.name_zh,
                "description": f"{it.name_en}. 处置时限 {it.time_limit} {UNITS_ZH[it.time_unit]}",
                "metadata": True,
                "type": "realtime",
                "keywords": f"{cat.name_zh},{cat.name_en},{it.name_en}",
                "group": cat.name_zh,
            }
        )
    return out


def service_definition(service_code: str) -> dict[str, Any]:
    """Return the attributes of one service; raise NotFound for an unknown code."""
    try:
        it = item(service_code)
    except ValueError:
        raise NotFound(f"no service {service_code!r}: GET services.json lists the 147 codes") from None
    return {
        "service_code": it.code,
        "attributes": [
            {
                "variable": True,
                "code": "coordinate_system",
                "datatype": "singlevaluelist",
                "required": False,
                "datatype_description": "lat、long 的坐标系（默认 wgs84）/ "
                "the system lat and long are in (default wgs84)",
                "order": 1,
                "description": "国内手机和网络地图给出的坐标多为 GCJ-02 或 BD-09，请注明，否则位置会偏离数百米 / "
                "Phones and web maps in China give GCJ-02 or BD-09: say which, or the point lands hundreds of "
                "metres away",
                "values": [{"key": key, "name": name} for key, name in COORDINATE_SYSTEMS],
            },
            {
                "variable": False,
                "code": "time_limit",
                "datatype": "text",
                "required": False,
                "datatype_description": None,
                "order": 2,
                "description": f"处置时限 {it.time_limit} {UNITS_ZH[it.time_unit]}（按国家法定工作日历）/ time limit: "
                f"{it.time_limit} {_unit_en(it.time_limit, it.time_unit)} on the official working calendar",
            },
        ],
    }


@dataclass(frozen=True)
class NewRequest:
    """A POST requests body, as the spec names its fields."""

    service_code: str | None
    lat: float | None
    long: float | None
    description: str = ""
    media_url: str | None = None
    address_string: str = ""
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    coordinate_system: str | None = None


def create_request(conn: Connection, request: NewRequest, *, key: ApiKey, rules: OwnerSettings) -> list[dict[str, Any]]:
    """Create a case from an Open311 request; return the spec's answer (id, token, notice)."""
    if not request.service_code:
        raise InvalidInput("service_code is required: GET services.json lists them")
    if request.service_code not in ITEM_CODES:
        raise InvalidInput(
            f"service_code {request.service_code!r} is not one of the 147 catalogue items: GET services.json lists them"
        )
    if request.lat is None or request.long is None:
        raise InvalidInput("lat and long are required: this city locates every request by its point")
    reporter = {
        name: value
        for name, value in (
            ("email", request.email),
            ("device_id", request.device_id),
            ("account_id", request.account_id),
            ("first_name", request.first_name),
            ("last_name", request.last_name),
            ("phone", request.phone),
        )
        if value
    }
    report = Report(
        x=request.long, y=request.lat, crs=request.coordinate_system, item_code=request.service_code,
        source="open311", description=request.description, photos=(request.media_url,) if request.media_url else (),
        address=request.address_string, reporter=reporter,
    )  # fmt: skip
    case = create_incident(conn, report, key=key, rules=rules, note="reported via Open311").case
    due = _local(case["due_at"])
    notice = f"{case['squad']['name']}处理"
    if case["grid_member"]:
        notice += f"，网格员{case['grid_member']['name']}"
    if due:
        notice += f"；处置时限至 {due}"
    answer: dict[str, Any] = {
        "service_request_id": case["code"],
        "token": _token_of(conn, case["code"]),
        "service_notice": notice,
    }
    if request.account_id:
        answer["account_id"] = request.account_id
    return [answer]


def _token_of(conn: Connection, code: str) -> str | None:
    token: str | None = conn.execute(text("SELECT token FROM incidents WHERE code = :code"), {"code": code}).scalar()
    return token


def token(conn: Connection, value: str) -> list[dict[str, Any]]:
    """Return the request a token stands for; raise NotFound for an unknown token."""
    code = conn.execute(text("SELECT code FROM incidents WHERE token = :token"), {"token": value}).scalar()
    if code is None:
        raise NotFound(f"no request has token {value!r}")
    return [{"service_request_id": code, "token": value}]


def _local(iso: str | None) -> str | None:
    """Return an ISO time in Beijing time (the city's own clock), seconds precision."""
    if iso is None:
        return None
    return datetime.fromisoformat(iso).astimezone(CST).replace(microsecond=0).isoformat()


def _place(subdistrict: str | None, community: str | None, grid: str | None) -> str:
    """Return subdistrict, community and grid names as one address, the community once (grids often repeat it)."""
    if community and grid and grid.startswith(community):
        community = None
    return "".join(name for name in (subdistrict, community, grid) if name)


def as_request(case: dict[str, Any]) -> dict[str, Any]:
    """Return a case as an Open311 service request."""
    status = "closed" if case["status"] in CLOSED_STATUSES else "open"
    place = _place(case["subdistrict"]["name"], case["community"]["name"], case["grid"]["name"])
    notice = f"网格员 {case['grid_member']['name']}" if case["grid_member"] else None
    return {
        "service_request_id": case["code"],
        "status": status,
        "status_notes": f"{case['status_zh']} ({case['status']})",
        "service_name": case["item"]["name_zh"],
        "service_code": case["item"]["code"],
        "description": case["description"] or None,
        "agency_responsible": case["squad"]["name"],
        "service_notice": notice,
        "requested_datetime": _local(case["reported_at"]),
        "updated_datetime": _local(case["closed_at"] or case["updated_at"] or case["reported_at"]),
        "expected_datetime": _local(case["due_at"]),
        "address": case["address"] or place or None,
        "address_id": case["grid"]["code"],
        "lat": case["point"]["lat"],
        "long": case["point"]["lon"],
        "media_url": case["photos"][0] if case["photos"] else None,
    }


@dataclass(frozen=True)
class RequestQuery:
    """GET requests' filters, as the spec names them, plus page and page_size."""

    service_request_id: str | None = None
    service_code: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    status: str | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def requests(conn: Connection, query: RequestQuery) -> list[dict[str, Any]]:
    """Return the requests matching ``query``, newest first, one page.

    service_request_id (comma-separated) overrides every other filter. Without dates the last 90 days are
    searched; a range may not span more than 90 days (the spec's rule).
    """
    if query.page < 1 or not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be 1 or more and page_size 1 to {MAX_PAGE_SIZE}")
    if query.service_request_id:
        codes = tuple(c.strip() for c in query.service_request_id.split(",") if c.strip())
        filters = CaseFilter(codes=codes)
    else:
        for moment in (query.start_date, query.end_date):
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"{moment.isoformat()} has no time zone: write e.g. 2017-05-01T00:00:00+08:00")
        end = query.end_date or (query.start_date + MAX_SPAN if query.start_date is not None else datetime.now(UTC))
        start = query.start_date or end - MAX_SPAN
        if end < start:
            raise InvalidInput("end_date is before start_date")
        if end - start > MAX_SPAN:
            raise InvalidInput("start_date to end_date may not span more than 90 days (Open311 GeoReport v2)")
        statuses: tuple[str, ...] = ()
        if query.status:
            wanted = {s.strip() for s in query.status.split(",") if s.strip()}
            if not wanted <= {"open", "closed"}:
                raise InvalidInput("status is open, closed or open,closed")
            statuses = (OPEN_STATUSES if "open" in wanted else ()) + (CLOSED_STATUSES if "closed" in wanted else ())
        services_ = tuple(c.strip() for c in (query.service_code or "").split(",") if c.strip())
        filters = CaseFilter(status=statuses, item_code=services_, reported_from=start, reported_to=end)
    cases, _ = list_cases(
        conn, filters, limit=query.page_size, offset=(query.page - 1) * query.page_size, newest_first=True
    )
    return [as_request(c) for c in cases]


def request(conn: Connection, service_request_id: str) -> list[dict[str, Any]]:
    """Return one request (as a list of one, like the spec); raise NotFound for an unknown id."""
    found = requests(conn, RequestQuery(service_request_id=service_request_id, page_size=1))
    if not found:
        raise NotFound(f"no service request {service_request_id!r}")
    return found


def errors(status: int, message: str) -> list[dict[str, Any]]:
    """Return the spec's error list: [{code, description}]."""
    return [{"code": status, "description": message}]


def to_xml(root: str, value: Any) -> bytes:
    """Return ``value`` as the spec's XML: lists become repeated members (services → service, …)."""
    element = ET.Element(root)
    _fill(element, root, value)
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(element, encoding="utf-8")


def _fill(element: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, list):
        member = _MEMBER.get(name, "item")
        for entry in value:
            child = ET.SubElement(element, member)
            _fill(child, member, entry)
    elif isinstance(value, dict):
        for key, entry in value.items():
            if entry is None:
                continue
            child = ET.SubElement(element, key)
            _fill(child, key, entry)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        # XML 1.0 cannot carry most control characters even escaped: one in a description (a reporter's app
        # may send it) would make the whole list unreadable, so each is shown as U+FFFD
        element.text = _NOT_XML.sub("\ufffd", str(value))


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
