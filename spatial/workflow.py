"""The closed loop of a case (DESIGN.md "Cases and scores") and its time limits on China's official calendar.

Time limits are counted in working hours or working days (the catalogue says which). Working days come
from the ``chinese_calendar`` package, which knows the State Council's holidays and the make-up working
days (调休) of each year; the working hours of a working day are 09:00-12:00 and 13:00-18:00 local time.
Years the package does not know yet (the State Council publishes each year's holidays in the previous
November) count Monday to Friday until the package is updated.

The same calendar is kept in the database (``working_calendar``) so that ``citygrid_due_at`` gives a
million imported cases their due times in the statement that inserts them; the two are tested equal.

The loop: 信息收集 collected → 立案 registered → 派遣 dispatched → 处置 handling → 反馈 feedback →
核查 verified → 结案 closed → 评价 (a satisfaction answer); a failed verification (返工) sends the case
back to handling. Each step is an ``Action`` with the roles allowed to take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import chinese_calendar
from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial import access, audit
from spatial.catalogue import TimeUnit
from spatial.errors import Conflict, Forbidden, InvalidInput, NotFound
from spatial.owner import locate, lookup, outside_zone
from spatial.settings import OwnerSettings

if TYPE_CHECKING:
    from spatial.keys import ApiKey

WORKING_PERIODS = ((time(9, 0), time(12, 0)), (time(13, 0), time(18, 0)))


def is_working_day(day: date) -> bool:
    """Return True for a working day on the official calendar (调休 Saturdays included).

    A year the installed chinese_calendar has no data for counts Monday to Friday.
    """
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


def official_years() -> tuple[int, int]:
    """Return the first and last year the installed chinese_calendar has official holidays for."""
    from chinese_calendar import constants

    return min(constants.holidays).year, max(constants.holidays).year


def calendar_days() -> list[tuple[date, bool, bool, int]]:
    """Return the rows of the database's ``working_calendar``: (day, working, official, running working-day count).

    They run from the package's first year to two years past its last.
    """
    first, last = official_years()
    rows = []
    ordinal = 0
    day = date(first, 1, 1)
    end = date(last + 2, 12, 31)
    while day <= end:
        working = is_working_day(day)
        ordinal += working
        rows.append((day, working, day.year <= last, ordinal))
        day += timedelta(days=1)
    return rows


def sync_calendar(conn: Connection) -> int:
    """Rewrite ``working_calendar`` from the installed chinese_calendar (one statement); return the day count."""
    rows = calendar_days()
    conn.execute(text("DELETE FROM working_calendar"))
    conn.execute(
        text(
            "INSERT INTO working_calendar (day, working, official, ordinal) "
            "SELECT * FROM unnest(CAST(:days AS date[]), CAST(:working AS boolean[]), CAST(:official AS boolean[]), "
            "CAST(:ordinals AS integer[]))"
        ),
        {
            "days": [r[0] for r in rows],
            "working": [r[1] for r in rows],
            "official": [r[2] for r in rows],
            "ordinals": [r[3] for r in rows],
        },
    )
    return len(rows)


def ensure_calendar(conn: Connection) -> None:
    """Re-sync ``working_calendar`` when the installed chinese_calendar knows a year the table does not."""
    last_official = conn.execute(text("SELECT max(day) FROM working_calendar WHERE official")).scalar()
    if last_official is None or last_official.year < official_years()[1]:
        sync_calendar(conn)


def add_working_time(start: datetime, amount: int, unit: TimeUnit) -> datetime:
    """Return the moment ``amount`` working hours or days after ``start`` (a timezone-aware local time).

    Working days: the same clock time on the ``amount``-th working day after ``start``'s date.
    Working hours: only time inside the working periods of working days counts.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (local time, e.g. +08:00)")
    if amount < 0:
        raise ValueError("amount must not be negative")
    if unit == "working_days":
        day = start.date()
        remaining = amount
        while remaining:
            day += timedelta(days=1)
            if is_working_day(day):
                remaining -= 1
        return datetime.combine(day, start.timetz())
    remaining_s = amount * 3600.0
    cursor = start
    while True:
        if is_working_day(cursor.date()):
            for opens, closes in WORKING_PERIODS:
                period_start = datetime.combine(cursor.date(), opens, cursor.tzinfo)
                period_end = datetime.combine(cursor.date(), closes, cursor.tzinfo)
                begin = max(cursor, period_start)
                if begin >= period_end:
                    continue
                available = (period_end - begin).total_seconds()
                if remaining_s <= available:
                    return begin + timedelta(seconds=remaining_s)
                remaining_s -= available
        cursor = datetime.combine(cursor.date() + timedelta(days=1), time(0, 0), cursor.tzinfo)


OPEN_STATUSES = ("collected", "registered", "dispatched", "handling", "feedback", "verified")
CLOSED_STATUSES = ("closed", "rejected")
STATUS_LABELS = {
    "collected": "信息收集",
    "registered": "立案",
    "dispatched": "派遣",
    "handling": "处置",
    "feedback": "反馈",
    "verified": "核查",
    "closed": "结案",
    "rejected": "不予立案",
}


@dataclass(frozen=True)
class Action:
    """One step of the closed loop: the statuses it starts from, where it leads, and who may take it.

    ``to_status`` None keeps the status (evaluation and deferral change other fields). ``admin`` may take
    every action; ``planner`` only reads.
    """

    name: str
    label_zh: str
    from_statuses: tuple[str, ...]
    to_status: str | None
    roles: tuple[str, ...]
    description: str

    def allowed_roles(self) -> tuple[str, ...]:
        """Return the roles that may take this action, admin included."""
        return (*self.roles, "admin")


ACTIONS: tuple[Action, ...] = (
    Action("register", "立案", ("collected",), "registered", ("dispatcher",),
           "the command centre (指挥中心) accepts the report as a case"),
    Action("reject", "不予立案", ("collected",), "rejected", ("dispatcher",),
           "the command centre refuses the report (not a matter of the 147 items, or a duplicate)"),
    Action("dispatch", "派遣", ("registered",), "dispatched", ("dispatcher",),
           "the command centre sends the case to the squad and grid member that own its point"),
    Action("accept", "处置", ("dispatched",), "handling", ("squad", "grid_member"),
           "the squad or grid member starts handling the case"),
    Action("feedback", "反馈", ("handling",), "feedback", ("squad", "grid_member"),
           "the squad or grid member reports the case handled"),
    Action("verify", "核查", ("feedback",), "verified", ("grid_member", "dispatcher"),
           "the grid member checks on site that the case is handled"),
    Action("rework", "返工", ("feedback",), "handling", ("grid_member", "dispatcher"),
           "the check failed: the case goes back to handling (counted in the rework rate, 返工率)"),
    Action("close", "结案", ("verified",), "closed", ("dispatcher",),
           "the command centre closes the verified case"),
    Action("evaluate", "评价", ("closed",), None, ("public", "dispatcher"),
           "the reporter (or the hotline on their behalf) says how satisfied they are, once"),
    Action("defer", "缓办", ("registered", "dispatched", "handling"), None, ("dispatcher",),
           "the command centre defers the case (缓办): it leaves the closure-rate denominator"),
)  # fmt: skip
ACTIONS_BY_NAME = {a.name: a for a in ACTIONS}


def actions_from(status: str, *, deferred: bool = False, evaluated: bool = False) -> list[Action]:
    """Return the actions a case in ``status`` allows next (evaluation once, deferral once)."""
    allowed = []
    for action in ACTIONS:
        if status not in action.from_statuses:
            continue
        if action.name == "evaluate" and evaluated:
            continue
        if action.name == "defer" and deferred:
            continue
        allowed.append(action)
    return allowed


def describe_actions(actions: list[Action]) -> list[dict[str, Any]]:
    """Return actions as JSON: name, label, target status and the roles allowed to take them."""
    return [
        {"action": a.name, "label_zh": a.label_zh, "to_status": a.to_status, "roles": list(a.allowed_roles())}
        for a in actions
    ]


# ---------------------------------------------------------------------------------------------------------
# Cases in the database: one case with its chain and events, lists (overdue ones too), transitions, moves
# and re-assignment to a new boundary generation.

# The columns of a case as the API shows it; ``i`` is the incidents row (or an INSERT's RETURNING).
CASE_COLUMNS = """
    i.id, i.code, i.source, i.item_code, ci.name_zh AS item_name_zh, ci.name_en AS item_name_en,
    ci.category_code, ci.time_limit, ci.time_unit, i.status, i.description, i.address, i.photos, i.reported_at,
    i.due_at, i.closed_at, i.updated_at, i.deferred, i.satisfaction, i.reworks, ST_X(i.geom) AS lon,
    ST_Y(i.geom) AS lat, i.generation, i.grid_code, g.name AS grid_name, i.community_code, c.name AS community_name,
    i.subdistrict_code, sd.name AS subdistrict_name, i.squad_code, sq.name AS squad_name, i.grid_member_id,
    gm.name AS grid_member_name, gm.phone AS grid_member_phone, i.street_code, st.name AS street_name,
    i.street_chief_id, sc.name AS street_chief_name, sc.phone AS street_chief_phone, i.river_code, i.river_chief_id,
    i.outside, dup.code AS duplicate_of, i.token, i.api_key_id, i.reporter
"""
CASE_JOINS = """
    LEFT JOIN catalogue_items ci ON ci.code = i.item_code
    LEFT JOIN grids g ON g.generation = i.generation AND g.code = i.grid_code
    LEFT JOIN communities c ON c.generation = i.generation AND c.code = i.community_code
    LEFT JOIN subdistricts sd ON sd.generation = i.generation AND sd.code = i.subdistrict_code
    LEFT JOIN squads sq ON sq.code = i.squad_code
    LEFT JOIN people gm ON gm.id = i.grid_member_id
    LEFT JOIN streets st ON st.code = i.street_code
    LEFT JOIN people sc ON sc.id = i.street_chief_id
    LEFT JOIN incidents dup ON dup.id = i.duplicate_of
"""
_CASE_BY_CODE = text("SELECT " + CASE_COLUMNS + " FROM incidents i " + CASE_JOINS + " WHERE i.code = :code")
_CASE_BY_ID = text("SELECT " + CASE_COLUMNS + " FROM incidents i " + CASE_JOINS + " WHERE i.id = :id")
_EVENTS = text(
    "SELECT e.action, e.from_status, e.to_status, e.actor, e.at, e.note FROM incident_events e "
    "WHERE e.incident_id = :id ORDER BY e.at, e.id"
)
_OPEN = "i.status NOT IN ('closed', 'rejected')"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def case_dict(row: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """Return one case as the API's JSON: its item, times, point, whole chain and the actions it allows next."""
    moment = now or datetime.now(UTC)
    is_open = row.status not in CLOSED_STATUSES
    return {
        "id": row.id,
        "code": row.code,
        "source": row.source,
        "status": row.status,
        "status_zh": STATUS_LABELS[row.status],
        "item": {
            "code": row.item_code,
            "name_zh": row.item_name_zh,
            "name_en": row.item_name_en,
            "category_code": row.category_code,
            "time_limit": row.time_limit,
            "time_unit": row.time_unit,
        },
        "description": row.description,
        "address": row.address,
        "photos": list(row.photos or []),
        "reported_at": _iso(row.reported_at),
        "due_at": _iso(row.due_at),
        "closed_at": _iso(row.closed_at),
        "updated_at": _iso(row.updated_at),
        "overdue": bool(is_open and row.due_at is not None and row.due_at < moment),
        "deferred": row.deferred,
        "satisfaction": row.satisfaction,
        "reworks": row.reworks,
        "point": {"lon": round(row.lon, 8), "lat": round(row.lat, 8)},
        "generation": row.generation,
        "grid": {"code": row.grid_code, "name": row.grid_name},
        "community": {"code": row.community_code, "name": row.community_name},
        "subdistrict": {"code": row.subdistrict_code, "name": row.subdistrict_name},
        "squad": {"code": row.squad_code, "name": row.squad_name},
        "grid_member": (
            {"id": row.grid_member_id, "name": row.grid_member_name, "phone": row.grid_member_phone}
            if row.grid_member_id
            else None
        ),
        "street_chief": (
            {
                "id": row.street_chief_id,
                "name": row.street_chief_name,
                "phone": row.street_chief_phone,
                "street": {"code": row.street_code, "name": row.street_name} if row.street_code else None,
            }
            if row.street_chief_id
            else None
        ),
        "river": {"code": row.river_code, "chief_id": row.river_chief_id} if row.river_code else None,
        "outside": row.outside,
        "duplicate_of": row.duplicate_of,
        "reporter": dict(row.reporter or {}),
        "next_actions": describe_actions(
            actions_from(row.status, deferred=row.deferred, evaluated=row.satisfaction is not None)
        ),
    }


def _case_row(conn: Connection, code: str) -> Any:
    row = conn.execute(_CASE_BY_CODE, {"code": code}).first()
    if row is None:
        raise NotFound(f"no case {code}: case codes look like RX2017-000001 (GET /v1/incidents lists them)")
    return row


def get_case(conn: Connection, code: str, *, events: bool = True) -> dict[str, Any]:
    """Return the case ``code`` with its chain and (by default) every event; raise NotFound when unknown."""
    return _case_with_events(conn, _case_row(conn, code), events=events)


def _case_with_events(conn: Connection, row: Any, *, events: bool = True) -> dict[str, Any]:
    case = case_dict(row)
    if events:
        case["events"] = [
            {
                "action": e.action,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "actor": e.actor,
                "at": e.at.isoformat(),
                "note": e.note,
            }
            for e in conn.execute(_EVENTS, {"id": row.id})
        ]
    return case


def get_case_by_id(conn: Connection, case_id: int) -> dict[str, Any]:
    """Return the case with database id ``case_id`` (without events)."""
    row = conn.execute(_CASE_BY_ID, {"id": case_id}).one()
    return case_dict(row)


@dataclass(frozen=True)
class CaseFilter:
    """What a list of cases is narrowed to; every field is optional."""

    status: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    item_code: tuple[str, ...] = ()
    subdistrict_code: str | None = None
    community_code: str | None = None
    grid_code: str | None = None
    overdue_at: datetime | None = None  # cases open at this moment whose due time had passed
    reported_from: datetime | None = None
    reported_to: datetime | None = None
    codes: tuple[str, ...] = ()
    api_key_id: int | None = None  # only the cases reported with this key

    def where(self) -> tuple[str, dict[str, Any]]:
        """Return the SQL condition on ``incidents i`` (our own text) and its bound values."""
        parts = ["true"]
        params: dict[str, Any] = {}
        for name in ("status", "source", "item_code"):
            values = getattr(self, name)
            if values:
                parts.append(f"i.{name} = ANY(:{name})")
                params[name] = list(values)
        for name in ("subdistrict_code", "community_code", "grid_code"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"i.{name} = :{name}")
                params[name] = value
        if self.overdue_at is not None:
            if self.overdue_at >= datetime.now(UTC):
                # every case closed so far was closed before this moment: the partial index of open cases
                parts.append(f"{_OPEN} AND i.due_at < :overdue_at")
            else:
                # a moment past: the cases open then (reported, and not yet closed), whatever they are now
                parts.append(
                    "i.due_at < :overdue_at AND i.reported_at <= :overdue_at AND i.status <> 'rejected'"
                    " AND (i.closed_at IS NULL OR i.closed_at > :overdue_at)"
                )
            params["overdue_at"] = self.overdue_at
        if self.reported_from is not None:
            parts.append("i.reported_at >= :reported_from")
            params["reported_from"] = self.reported_from
        if self.reported_to is not None:
            parts.append("i.reported_at < :reported_to")
            params["reported_to"] = self.reported_to
        if self.codes:
            parts.append("i.code = ANY(:codes)")
            params["codes"] = list(self.codes)
        if self.api_key_id is not None:
            parts.append("i.api_key_id = :api_key_id")
            params["api_key_id"] = self.api_key_id
        return " AND ".join(parts), params


def list_cases(
    conn: Connection, filters: CaseFilter, *, limit: int, offset: int = 0, newest_first: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Return one page of cases matching ``filters`` (oldest report first, or newest) and how many match."""
    where, params = filters.where()
    order = "i.reported_at DESC, i.id DESC" if newest_first else "i.reported_at, i.id"
    rows = conn.execute(
        text(
            f"SELECT {CASE_COLUMNS} FROM incidents i {CASE_JOINS} WHERE {where} ORDER BY {order} LIMIT :lim OFFSET :off"
        ),
        {**params, "lim": limit, "off": offset},
    )
    matched = conn.execute(text(f"SELECT count(*) FROM incidents i WHERE {where}"), params).scalar_one()
    now = datetime.now(UTC)
    return [case_dict(r, now=now) for r in rows], matched


# A moment "from the future" by less than this is a difference between two clocks, not a mistake.
CLOCK_SKEW = timedelta(minutes=5)


def _checked_moment(at: datetime | None) -> datetime:
    """Return when a step happened: ``at``, or now; refuse a moment without a time zone or in the future."""
    now = datetime.now(UTC)
    if at is None:
        return now
    if at.tzinfo is None:
        raise InvalidInput(f"at={at.isoformat()} has no time zone: add one, e.g. 2017-05-01T09:00:00+08:00")
    if at > now + CLOCK_SKEW:
        # a step dated ahead would also hold back every later one, which must not come before it
        raise InvalidInput(
            f"at={at.isoformat()} is in the future: a step is recorded when it happened; check the clock, "
            "or leave at out to mean now"
        )
    return at


_LOCK_CASE = text(
    "SELECT i.id, i.code, i.status, i.deferred, i.satisfaction, i.subdistrict_code, i.api_key_id, i.reported_at, "
    "(SELECT max(e.at) FROM incident_events e WHERE e.incident_id = i.id) AS last_at "
    "FROM incidents i WHERE i.code = :code FOR UPDATE"
)
_TRANSITION = text(
    """
    WITH upd AS (
        UPDATE incidents SET
            status = COALESCE(CAST(:to_status AS text), status),
            updated_at = :at,
            closed_at = CASE WHEN CAST(:to_status AS text) = 'closed' THEN :at ELSE closed_at END,
            reworks = reworks + :rework,
            satisfaction = COALESCE(CAST(:satisfaction AS text), satisfaction),
            deferred = deferred OR :defer
        WHERE id = :id
        RETURNING id, status
    )
    INSERT INTO incident_events (incident_id, from_status, to_status, actor, at, note, action, api_key_id)
    SELECT id, :from_status, status, :actor, :at, :note, :action, :key_id FROM upd
    """
)
SATISFACTION = ("satisfied", "basically_satisfied", "dissatisfied")
NOTE_REQUIRED = ("reject", "rework", "defer")


def check_reach(key: ApiKey, row: Any) -> None:
    """Raise Forbidden when ``key`` may not read or act on the case in ``row`` (its subdistrict, its reporter)."""
    key.require_scope(row.subdistrict_code, what=f"case {row.code}")
    if key.role == "public" and (key.id is None or row.api_key_id != key.id):
        raise Forbidden(
            f"a public key reaches only the cases it reported; case {row.code} was reported by another",
            detail={"role": key.role},
        )


def read_case(conn: Connection, code: str, key: ApiKey) -> dict[str, Any]:
    """Return the case ``code`` with its events, as ``key`` may see it; NotFound or Forbidden otherwise."""
    row = _case_row(conn, code)
    check_reach(key, row)
    return access.case_for_caller(key, _case_with_events(conn, row))


def _lock(conn: Connection, code: str, key: ApiKey) -> Any:
    row = conn.execute(_LOCK_CASE, {"code": code}).first()
    if row is None:
        raise NotFound(f"no case {code}: case codes look like RX2017-000001 (GET /v1/incidents lists them)")
    check_reach(key, row)
    return row


def _in_order(row: Any, moment: datetime, *, given: bool) -> datetime:
    """Return the moment a step of the case in ``row`` is recorded at: not before its report or its last step.

    A step given no time (``given`` False) that would come before a last step dated ahead of this clock by less
    than CLOCK_SKEW (another writer's clock) is recorded at that last step's time instead.
    """
    earliest = max(t for t in (row.reported_at, row.last_at) if t is not None)
    if moment >= earliest:
        return moment
    if not given and earliest - moment <= CLOCK_SKEW:
        return earliest
    if not given:
        raise InvalidInput(
            f"the case's last step is recorded at {earliest.isoformat()}, after now ({moment.isoformat()}): "
            "steps are recorded in order; check this server's clock"
        )
    raise InvalidInput(
        f"at={moment.isoformat()} is before the case's last step ({earliest.isoformat()}): "
        "steps are recorded in order; leave at out to mean now"
    )


def transition(
    conn: Connection,
    *,
    code: str,
    action: str,
    key: ApiKey,
    at: datetime | None = None,
    note: str = "",
    satisfaction: str | None = None,
) -> dict[str, Any]:
    """Take ``action`` on case ``code`` as ``key``, record it in incident_events, and return the case.

    Raises Conflict (409) naming the allowed actions when the case's status does not allow it, Forbidden when
    the key's role or subdistrict may not, InvalidInput for a missing note (reject, rework, defer need one),
    a missing or misplaced satisfaction answer, or a moment before the case's last step.
    """
    step = ACTIONS_BY_NAME.get(action)
    if step is None:
        raise NotFound(f"no action {action!r}: the actions are {', '.join(ACTIONS_BY_NAME)}")
    row = _lock(conn, code, key)
    audit.act_as(conn, key)
    allowed = actions_from(row.status, deferred=row.deferred, evaluated=row.satisfaction is not None)
    if step not in allowed:
        why = ""
        if action == "evaluate" and row.satisfaction is not None:
            why = f" (it was already evaluated: {row.satisfaction})"
        elif action == "defer" and row.deferred:
            why = " (it is already deferred)"
        names = ", ".join(f"{a.name} ({'/'.join(a.allowed_roles())})" for a in allowed) or "none: the case is final"
        raise Conflict(
            f"case {code} is {row.status} ({STATUS_LABELS[row.status]}): {action} is not allowed now{why}; "
            f"allowed: {names}",
            detail={"status": row.status, "action": action, "allowed": describe_actions(allowed)},
        )
    if not key.has_role(*step.roles):
        raise Forbidden(
            f"a {key.role} key may not {action} ({step.label_zh}): roles allowed are {', '.join(step.allowed_roles())}",
            detail={"role": key.role, "allowed_roles": list(step.allowed_roles())},
        )
    if action == "evaluate":
        if satisfaction not in SATISFACTION:
            raise InvalidInput(f"evaluate needs satisfaction: one of {', '.join(SATISFACTION)}")
    elif satisfaction is not None:
        raise InvalidInput(f"satisfaction belongs to evaluate, not to {action}: leave it out")
    if action in NOTE_REQUIRED and not note.strip():
        raise InvalidInput(f"{action} ({step.label_zh}) needs a note saying why, e.g. what the check found")
    moment = _in_order(row, _checked_moment(at), given=at is not None)
    conn.execute(
        _TRANSITION,
        {
            "id": row.id,
            "to_status": step.to_status,
            "from_status": row.status,
            "at": moment,
            "rework": 1 if action == "rework" else 0,
            "satisfaction": satisfaction,
            "defer": action == "defer",
            "actor": key.actor,
            "note": note.strip(),
            "action": action,
            "key_id": key.id,
        },
    )
    return access.case_for_caller(key, get_case(conn, code))


_MOVE = text(
    """
    WITH cur AS (
        SELECT i.id, i.geom AS old_geom, i.grid_code AS old_grid, i.status,
               GREATEST(i.reported_at, bg.valid_from) AS at
        FROM incidents i LEFT JOIN boundary_generations bg ON bg.generation = i.generation
        WHERE i.id = :id
    ), point AS (
        SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom
    ), chain AS (
        SELECT o.* FROM cur, point,
            citygrid_owner_points(ARRAY[point.geom], ARRAY[cur.at], :edge, :outside, :street, :river) o
    ), upd AS (
        UPDATE incidents i SET geom = point.geom, generation = c.generation, grid_code = c.grid_code,
            community_code = c.community_code, subdistrict_code = c.subdistrict_code, squad_code = c.squad_code,
            grid_member_id = c.grid_member_id, street_code = c.street_code, street_chief_id = c.street_chief_id,
            river_code = c.river_code, river_chief_id = c.river_chief_id, outside = c.outside, updated_at = :at,
            duplicate_of = NULL
        FROM chain c, point
        WHERE i.id = :id AND c.grid_code IS NOT NULL
        RETURNING i.id, i.grid_code, i.status
    ), event AS (
        INSERT INTO incident_events (incident_id, from_status, to_status, actor, at, note, action, api_key_id)
        SELECT u.id, u.status, u.status, :actor, :at,
               'moved ' || round(ST_Distance(cur.old_geom::geography, point.geom::geography)::numeric, 1) || ' m'
               || CASE WHEN u.grid_code IS DISTINCT FROM cur.old_grid
                       THEN ', re-assigned from grid ' || cur.old_grid || ' to ' || u.grid_code
                       ELSE ', same grid ' || u.grid_code END
               || ': ' || :reason,
               'move', :key_id
        FROM upd u, cur, point
        RETURNING note
    )
    SELECT c.grid_code, (SELECT note FROM event) AS note FROM chain c
    """
)


def move_case(
    conn: Connection,
    *,
    code: str,
    x: float,
    y: float,
    crs: str | None,
    reason: str,
    key: ApiKey,
    rules: OwnerSettings,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Move an open case's point, re-assign its whole chain from the new point, and record why.

    The chain is taken as of the report (or the start of the case's boundary generation, if later), as at
    intake. Raises Conflict for a closed or rejected case and InvalidInput for a point no grid covers.
    """
    if not reason.strip():
        raise InvalidInput("moving a case needs a reason, e.g. 'reporter's phone gave GCJ-02 coordinates'")
    row = _lock(conn, code, key)
    audit.act_as(conn, key)
    key.require_role("dispatcher", "grid_member", "squad", doing="move a case's point")
    if row.status in CLOSED_STATUSES:
        raise Conflict(f"case {code} is {row.status}: only open cases are moved; its record stays as it was")
    moment = _in_order(row, _checked_moment(at), given=at is not None)
    point = locate(x, y, crs)
    if outside_zone(point):
        refuse_uncovered(conn, x, y, crs, row.reported_at, rules)
    result = conn.execute(
        _MOVE,
        {
            "id": row.id,
            "lon": point.lon,
            "lat": point.lat,
            "edge": rules.edge_tolerance_m,
            "outside": rules.outside_tolerance_m,
            "street": rules.street_radius_m,
            "river": rules.river_radius_m,
            "actor": key.actor,
            "at": moment,
            "reason": reason.strip(),
            "key_id": key.id,
        },
    ).one()
    if result.grid_code is None:
        refuse_uncovered(conn, x, y, crs, row.reported_at, rules)
    return access.case_for_caller(key, get_case(conn, code))


def refuse_uncovered(conn: Connection, x: float, y: float, crs: str | None, at: datetime, rules: OwnerSettings) -> None:
    """Raise InvalidInput saying why no grid owns (x, y): the owner lookup's own words (distance, swapped axes)."""
    try:
        lookup(conn, x, y, crs=crs, at=at, rules=rules)
    except NotFound as exc:
        raise InvalidInput(
            f"{exc.message}: no squad or grid member would own this case; check the coordinates and their crs",
            detail=exc.detail,
        ) from exc
    raise InvalidInput(f"({x}, {y}) is not covered by any grid at {at.isoformat()}")


_REASSIGN = text(
    """
    WITH gen AS (
        SELECT generation, valid_from, valid_to FROM boundary_generations WHERE generation = :generation
    ), open_cases AS MATERIALIZED (
        SELECT i.id, i.geom, i.grid_code AS old_grid, i.generation AS old_generation,
               GREATEST(i.reported_at, gen.valid_from) AS at,
               row_number() OVER (ORDER BY i.id) AS row_no
        FROM incidents i, gen
        WHERE i.status NOT IN ('closed', 'rejected')
          AND (gen.valid_to IS NULL OR GREATEST(i.reported_at, gen.valid_from) < gen.valid_to)
    ), chain AS MATERIALIZED (
        SELECT * FROM citygrid_owner_points(
            (SELECT array_agg(geom ORDER BY row_no) FROM open_cases),
            (SELECT array_agg(at ORDER BY row_no) FROM open_cases),
            :edge, :outside, :street, :river)
    ), upd AS (
        UPDATE incidents i SET generation = c.generation, grid_code = c.grid_code,
            community_code = c.community_code, subdistrict_code = c.subdistrict_code, squad_code = c.squad_code,
            grid_member_id = c.grid_member_id, street_code = c.street_code, street_chief_id = c.street_chief_id,
            river_code = c.river_code, river_chief_id = c.river_chief_id, outside = c.outside, updated_at = now()
        FROM open_cases o JOIN chain c ON c.row_no = o.row_no
        WHERE i.id = o.id AND c.grid_code IS NOT NULL
          AND (i.generation, i.grid_code, i.community_code, i.subdistrict_code, i.squad_code, i.grid_member_id,
               i.street_code, i.street_chief_id, i.river_code, i.river_chief_id, i.outside)
              IS DISTINCT FROM (c.generation, c.grid_code, c.community_code, c.subdistrict_code, c.squad_code,
                                c.grid_member_id, c.street_code, c.street_chief_id, c.river_code, c.river_chief_id,
                                c.outside)
        RETURNING i.id, i.grid_code, i.status, o.old_grid
    ), event AS (
        INSERT INTO incident_events (incident_id, from_status, to_status, actor, at, note, action, api_key_id)
        SELECT id, status, status, :actor, now(),
               'boundary generation ' || :generation || ': re-assigned from grid ' || COALESCE(old_grid, '(none)')
               || ' to ' || grid_code, 'reassign', :key_id
        FROM upd WHERE grid_code IS DISTINCT FROM old_grid
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM open_cases) AS open_cases,
           (SELECT count(*) FROM upd) AS updated,
           (SELECT count(*) FROM event) AS moved,
           (SELECT count(*) FROM chain WHERE grid_code IS NULL) AS uncovered
    """
)


@dataclass(frozen=True)
class Reassignment:
    """What ``reassign_generation`` did, in counts of open cases.

    ``updated``: some part of the chain changed; ``moved``: the grid changed; ``uncovered``: no grid of the
    generation covers the point, so the case was left as it was.
    """

    generation: int
    open_cases: int
    updated: int
    moved: int
    uncovered: int


def reassign_generation(
    conn: Connection, *, generation: int, rules: OwnerSettings, actor: str = "citygrid incidents reassign",
    key_id: int | None = None,
) -> Reassignment:  # fmt: skip
    """Re-assign every open case to boundary generation ``generation`` in one statement; return the counts.

    Closed and rejected cases keep the generation they were handled under.
    Each case's chain is taken as of its report or the generation's start, whichever is later; cases
    reported after the generation ended are left alone. Every case that changes grid gets an event saying so.
    Uncovered cases (no grid of the new generation within the tolerance) keep their old chain and are counted.
    """
    known = conn.execute(text("SELECT 1 FROM boundary_generations WHERE generation = :g"), {"g": generation}).first()
    if known is None:
        raise NotFound(f"no boundary generation {generation}: the boundary_generations layer lists them")
    row = conn.execute(
        _REASSIGN,
        {
            "generation": generation,
            "edge": rules.edge_tolerance_m,
            "outside": rules.outside_tolerance_m,
            "street": rules.street_radius_m,
            "river": rules.river_radius_m,
            "actor": actor,
            "key_id": key_id,
        },
    ).one()
    return Reassignment(generation, row.open_cases, row.updated, row.moved, row.uncovered)
