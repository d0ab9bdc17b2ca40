"""API keys: who is calling, in which role, over which subdistrict.

A key is ``cg_`` and 43 URL-safe characters (256 random bits), shown once when it is created; the database
keeps only its SHA-256. Roles: public (citizens' apps, Open311 clients), grid_member, squad, dispatcher (the
hotline and command centre, 指挥中心), planner (reads), admin (everything). A key may be scoped to one
subdistrict: it then acts only on that subdistrict's cases. Issue 7 extends this table (finer scopes,
rotation); the lookup below is the one place that turns a key into a caller.
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import PoolProxiedConnection

from spatial.db import run_prepared
from spatial.errors import Forbidden, InvalidInput, NotFound, Unauthorized

KEY_PREFIX = "cg_"
ROLES = ("public", "grid_member", "squad", "dispatcher", "planner", "admin")
SCOPED_ROLES = ("grid_member", "squad")  # their keys must name the subdistrict they work in


@dataclass(frozen=True)
class ApiKey:
    """A caller, as its key says: id, name, role, subdistrict scope and the person it belongs to."""

    id: int | None
    name: str
    role: str
    subdistrict_code: str | None = None
    person_id: str | None = None

    @property
    def actor(self) -> str:
        """Return how events name this caller: the key's name, and its person when it has one."""
        return f"{self.name} ({self.person_id})" if self.person_id else self.name

    def has_role(self, *roles: str) -> bool:
        """Return True when this key's role is one of ``roles``, or admin (which may do everything)."""
        return self.role == "admin" or self.role in roles

    def require_role(self, *roles: str, doing: str) -> None:
        """Raise Forbidden unless this key's role is one of ``roles`` (admin always may)."""
        if not self.has_role(*roles):
            allowed = ", ".join((*roles, "admin"))
            raise Forbidden(
                f"a {self.role} key may not {doing}: use a key with role {allowed}",
                detail={"role": self.role, "allowed_roles": [*roles, "admin"]},
            )

    def require_scope(self, subdistrict_code: str | None, *, what: str) -> None:
        """Raise Forbidden when this key is scoped to another subdistrict than ``subdistrict_code``."""
        if self.subdistrict_code is not None and self.subdistrict_code != subdistrict_code:
            raise Forbidden(
                f"this key acts only in subdistrict {self.subdistrict_code}; {what} is in {subdistrict_code}",
                detail={"key_subdistrict": self.subdistrict_code, "subdistrict": subdistrict_code},
            )


MISSING_KEY = (
    "an API key is needed: send it as 'X-API-Key: cg_…' or 'Authorization: Bearer cg_…' "
    "('citygrid keys create' makes one)"
)

# The command line acts as an administrator on the machine that holds the database; its steps (and the audit
# log) name it and the operating-system user running it.
CLI_KEY = ApiKey(id=None, name=f"citygrid command line ({getpass.getuser()})", role="admin")


def hash_key(secret: str) -> str:
    """Return the SHA-256 hex digest stored for a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: Connection,
    *,
    name: str,
    role: str,
    subdistrict_code: str | None = None,
    person_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret (the only time the secret is seen)."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if role in SCOPED_ROLES and subdistrict_code is None:
        raise InvalidInput(f"a {role} key acts within one subdistrict: give a subdistrict, e.g. 532601001 (开化街道)")
    if not name.strip():
        raise InvalidInput("a key needs a name saying who holds it, e.g. 'hotline desk 3'")
    if subdistrict_code is not None:
        known = conn.execute(
            text("SELECT 1 FROM subdistricts WHERE code = :code LIMIT 1"), {"code": subdistrict_code}
        ).first()
        if known is None:
            raise InvalidInput(f"no subdistrict {subdistrict_code}: give a 9-digit code such as 532601001")
    if person_id is not None:
        if conn.execute(text("SELECT 1 FROM people WHERE id = :id"), {"id": person_id}).first() is None:
            raise InvalidInput(f"no person {person_id}: give an id from the people layer, e.g. P0395")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = conn.execute(
        text(
            "INSERT INTO api_keys (name, role, subdistrict_code, person_id, prefix, key_hash) "
            "VALUES (:name, :role, :sub, :person, :prefix, :hash) RETURNING id"
        ),
        {
            "name": name.strip(),
            "role": role,
            "sub": subdistrict_code,
            "person": person_id,
            "prefix": secret[:8],
            "hash": hash_key(secret),
        },
    ).scalar_one()
    return ApiKey(key_id, name.strip(), role, subdistrict_code, person_id), secret


def revoke_key(conn: Connection, key_id: int) -> None:
    """Revoke a key now; raise NotFound for an unknown or already revoked one."""
    revoked = conn.execute(
        text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id"),
        {"id": key_id},
    ).first()
    if revoked is None:
        raise NotFound(f"no active key {key_id}: 'citygrid keys list' shows the keys")


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    """Return every key (never its secret): id, name, role, scope, person, prefix, created and revoked times."""
    rows = conn.execute(
        text(
            "SELECT id, name, role, subdistrict_code, person_id, prefix, created_at, revoked_at "
            "FROM api_keys ORDER BY id"
        )
    ).mappings()
    return [dict(r) for r in rows]


# Prepared once per database connection (``run_prepared``): the lookup is in every request that sends a key, and
# parsing and planning it each time cost more than running it.
_AUTHENTICATE = "citygrid_authenticate"
_AUTHENTICATE_PREPARE = (
    f"PREPARE {_AUTHENTICATE} (text) AS"
    " SELECT id, name, role, subdistrict_code, person_id, revoked_at FROM api_keys WHERE key_hash = $1"
)
_AUTHENTICATE_EXECUTE = f"EXECUTE {_AUTHENTICATE} (%s)"


def authenticate(conn: Connection | PoolProxiedConnection, secret: str | None) -> ApiKey:
    """Return the caller a key belongs to; raise Unauthorized for no key, an unknown or a revoked one.

    ``conn`` may be a pooled connection straight from ``Engine.raw_connection()`` (``spatial.db.run_prepared``).
    """
    if not secret:
        raise Unauthorized(MISSING_KEY)
    row = run_prepared(conn, _AUTHENTICATE, _AUTHENTICATE_PREPARE, _AUTHENTICATE_EXECUTE, [hash_key(secret.strip())])
    if row is None:
        raise Unauthorized("unknown API key: check it was copied whole, or ask for a new one")
    revoked_at: datetime | None = row["revoked_at"]
    if revoked_at is not None:
        raise Unauthorized(f"this API key was revoked at {revoked_at.isoformat()}: ask for a new one")
    return ApiKey(row["id"], row["name"], row["role"], row["subdistrict_code"], row["person_id"])
