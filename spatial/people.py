"""People and their duties, as an administrator changes them: a handover (交接, rotation) and a person's details.

A handover ends the current holder's duty at a moment and starts the new holder's from it, in one
transaction: the owner lookup and every case reported after that moment name the new holder, and every
answer given "as of" an earlier moment still names the old one. The exclusion constraint on ``duties``
keeps single-holder roles from overlapping; a clash with a handover already planned later is a 409.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from spatial import audit
from spatial.errors import Conflict, InvalidInput, NotFound
from spatial.keys import ApiKey

# A duty's role, the kind of place it is over, and the people.role a holder must have.
DUTY_KINDS: dict[str, tuple[str, str]] = {
    "grid_member": ("grid", "grid_member"),
    "street_chief": ("street", "street_chief"),
    "river_chief": ("river", "river_chief"),
    "squad_leader": ("squad", "squad_leader"),
    "subdistrict_chief": ("subdistrict", "subdistrict_chief"),
    "general_street_chief": ("city", "general_street_chief"),
}
_TARGETS = {
    "grid": "SELECT 1 FROM grids WHERE code = :code",
    "street": "SELECT 1 FROM streets WHERE code = :code",
    "river": "SELECT 1 FROM rivers WHERE code = :code",
    "squad": "SELECT 1 FROM squads WHERE code = :code",
    "subdistrict": "SELECT 1 FROM subdistricts WHERE code = :code",
    "city": "SELECT 1 FROM subdistricts WHERE left(code, 6) = :code",
}
PHONE = re.compile(r"\+?[0-9][0-9 ()-]{4,23}")


@dataclass(frozen=True)
class Handover:
    """The duty that ended and the one that began."""

    role: str
    target_kind: str
    target_code: str
    at: datetime
    previous_person_id: str | None
    person_id: str

    def as_dict(self) -> dict[str, Any]:
        """Return the handover as JSON-ready values."""
        return {
            "role": self.role, "target_kind": self.target_kind, "target_code": self.target_code,
            "at": self.at.isoformat(), "previous_person_id": self.previous_person_id, "person_id": self.person_id,
        }  # fmt: skip


def hand_over(conn: Connection, *, key: ApiKey, role: str, target_code: str, person_id: str, at: datetime) -> Handover:
    """End the current ``role`` duty over ``target_code`` at ``at`` and give it to ``person_id`` from then."""
    key.require_role(doing="hand duties over")
    if role not in DUTY_KINDS:
        raise InvalidInput(f"role {role!r} is not a single-holder duty: use one of {', '.join(DUTY_KINDS)}")
    if at.tzinfo is None:
        raise InvalidInput(f"at={at.isoformat()} has no time zone: add one, e.g. 2017-04-01T00:00:00+08:00")
    kind, person_role = DUTY_KINDS[role]
    if conn.execute(text(_TARGETS[kind]), {"code": target_code}).first() is None:
        raise NotFound(f"no {kind} {target_code}: give the code of one, e.g. 532601001001001 for a grid")
    person = conn.execute(text("SELECT role FROM people WHERE id = :id"), {"id": person_id}).first()
    if person is None:
        raise NotFound(f"no person {person_id}: give an id from the people list, e.g. P0395")
    if person.role != person_role:
        raise InvalidInput(
            f"{person_id} is a {person.role}, not a {person_role}: hand {role} duties to a {person_role}"
        )
    audit.act_as(conn, key)
    current = conn.execute(
        text(
            "SELECT id, person_id, valid_from FROM duties WHERE role = :role AND target_kind = :kind "
            "AND target_code = :code AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at) FOR UPDATE"
        ),
        {"role": role, "kind": kind, "code": target_code, "at": at},
    ).first()
    if current is not None and current.person_id == person_id:
        raise Conflict(f"{person_id} already holds {role} of {target_code} at {at.isoformat()}: nothing to hand over")
    if current is not None and current.valid_from == at:
        raise Conflict(f"{current.person_id}'s duty starts at {at.isoformat()}: hand over at a later moment")
    try:
        with conn.begin_nested():
            if current is not None:
                conn.execute(text("UPDATE duties SET valid_to = :at WHERE id = :id"), {"at": at, "id": current.id})
            conn.execute(
                text(
                    "INSERT INTO duties (person_id, role, target_kind, target_code, valid_from) "
                    "VALUES (:person, :role, :kind, :code, :at)"
                ),
                {"person": person_id, "role": role, "kind": kind, "code": target_code, "at": at},
            )
    except IntegrityError as exc:
        raise Conflict(
            f"another {role} duty of {target_code} starts after {at.isoformat()}: hand over after it, "
            "or end that one first"
        ) from exc
    return Handover(role, kind, target_code, at, current.person_id if current else None, person_id)


def update_person(
    conn: Connection, *, key: ApiKey, person_id: str, name: str | None, phone: str | None, title: str | None
) -> dict[str, Any]:
    """Change a person's name, phone or title; return the person as stored."""
    key.require_role(doing="change people's details")
    if name is not None and not 1 <= len(name.strip()) <= 50:
        raise InvalidInput("a name has 1 to 50 characters")
    if phone is not None and not PHONE.fullmatch(phone):
        raise InvalidInput(f"phone {phone!r} is not a phone number: digits, spaces, '-' and '()', e.g. 0876-2122345")
    if title is not None and len(title) > 50:
        raise InvalidInput("a title has at most 50 characters")
    audit.act_as(conn, key)
    row = conn.execute(
        text(
            "UPDATE people SET name = coalesce(:name, name), phone = coalesce(:phone, phone), "
            "title = coalesce(:title, title) WHERE id = :id RETURNING id, name, role, phone, squad_code, title"
        ),
        {"id": person_id, "name": name.strip() if name else None, "phone": phone, "title": title},
    ).first()
    if row is None:
        raise NotFound(f"no person {person_id}: give an id from the people list, e.g. P0395")
    return dict(row._mapping)
