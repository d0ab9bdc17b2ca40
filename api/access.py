"""The caller of a request, and the roles each endpoint admits — declared once per route, shown in the docs.

``allow("planner")`` is spread into a route decorator: it adds the dependency that refuses other roles
(401 without a usable key, 403 with a key of another role) and records the roles in the operation's
``x-citygrid-roles``, which ``document_roles`` turns into a line of the description that /docs shows.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.openapi.utils import get_openapi
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import PoolProxiedConnection

from api.errors import documented
from spatial import keys
from spatial.access import ANONYMOUS
from spatial.db import pooled_connection
from spatial.errors import Unauthorized
from spatial.keys import ApiKey

KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description="an API key (`citygrid keys create`); `Authorization: Bearer cg_…` works too",
)
ROLES_EXTENSION = "x-citygrid-roles"
NO_KEY = "no API key, or an unknown or revoked one"


def secret_in(headers: Mapping[str, str]) -> str | None:
    """Return the key in ``X-API-Key`` or ``Authorization: Bearer`` of these headers, if any."""
    header = headers.get("x-api-key")
    if header:
        return header.strip()
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def caller_from(headers: Mapping[str, str], engine: Engine) -> ApiKey:
    """Return the caller: the key's holder, or ANONYMOUS (role public) when no key is sent.

    A key that is sent but unknown or revoked is a 401, never silently anonymous. One indexed read of
    ≈0.2 ms (a prepared statement) on the autocommit engine, run in the event loop (a thread hand-off would
    cost more).
    """
    secret = secret_in(headers)
    if secret is None:
        return ANONYMOUS
    conn = pooled_connection(engine)  # straight from the pool: SQLAlchemy's Connection costs more than the read
    try:
        return keys.authenticate(conn, secret)
    finally:
        conn.close()


async def caller(request: Request, _: Annotated[str | None, Security(KEY_HEADER)] = None) -> ApiKey:
    """Return the caller of a request (ANONYMOUS without a key)."""
    return caller_from(request.headers, request.app.state.read_engine)


async def key_holder(request: Request, _: Annotated[str | None, Security(KEY_HEADER)] = None) -> ApiKey:
    """Return the caller of a request that needs a key; raise Unauthorized (401) without one (no database read)."""
    if secret_in(request.headers) is None:
        raise Unauthorized(keys.MISSING_KEY)
    return caller_from(request.headers, request.app.state.read_engine)


def key_holder_on(headers: Mapping[str, str], conn: Connection | PoolProxiedConnection) -> ApiKey:
    """Return the holder of the key ``headers`` send, checked on ``conn``; raise Unauthorized (401) without one."""
    secret = secret_in(headers)
    if secret is None:
        raise Unauthorized(keys.MISSING_KEY)
    return keys.authenticate(conn, secret)


CallerDep = Annotated[ApiKey, Depends(caller)]
KeyDep = Annotated[ApiKey, Depends(key_holder)]


def _requirer(roles: tuple[str, ...], doing: str) -> Callable[..., Coroutine[Any, Any, ApiKey]]:
    async def require(key: KeyDep) -> ApiKey:
        key.require_role(*roles, doing=doing)
        return key

    return require


def allow(
    *roles: str,
    doing: str,
    needs_key: bool = False,
    checked_inside: bool = False,
    responses: dict[int | str, dict[str, Any]] | None = None,
    openapi_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return route-decorator arguments admitting only ``roles`` (and admin), documented as such.

    ``"public"`` among ``roles`` means anyone, even without a key (unless ``needs_key``: then any key of any
    role): the route gets the caller without refusing anybody, and decides what to show (phone numbers,
    reporters) itself. ``checked_inside`` documents ``roles`` but leaves the refusing to the route, which knows
    more (a case's status and subdistrict), and only requires a key.
    """
    if checked_inside:
        return {
            "responses": {**documented(401, s401=NO_KEY), **(responses or {})},
            "openapi_extra": {ROLES_EXTENSION: list(dict.fromkeys((*roles, "admin"))), **(openapi_extra or {})},
            "dependencies": [Depends(key_holder)],
        }
    admitted = ("public",) if "public" in roles else tuple(dict.fromkeys((*roles, "admin")))
    refusals: dict[int | str, dict[str, Any]] = {}
    if needs_key or "public" not in roles:
        refusals.update(documented(401, s401=NO_KEY))
    if "public" not in roles:
        refusals.update(
            documented(403, s403=f"the key's role may not {doing}: roles allowed are {', '.join(admitted)}")
        )
    refusals.update(responses or {})
    extra = {ROLES_EXTENSION: list(admitted), **(openapi_extra or {})}
    arguments: dict[str, Any] = {"responses": refusals, "openapi_extra": extra}
    if "public" not in roles:
        arguments["dependencies"] = [Depends(_requirer(tuple(roles), doing))]
    elif needs_key:
        arguments["dependencies"] = [Depends(key_holder)]
        extra[ROLES_EXTENSION] = ["any key"]
    return arguments


def document_roles(app: FastAPI) -> None:
    """Make /docs say, on every operation that declares roles, which roles may call it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, description=app.description, routes=app.routes
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                roles = operation.get(ROLES_EXTENSION) if isinstance(operation, dict) else None
                if not roles:
                    continue
                who = {"public": "anyone (no key needed)", "any key": "any key holder, public included"}.get(
                    roles[0], ", ".join(roles)
                )
                line = f"**Roles:** {who}."
                description = operation.get("description")
                operation["description"] = f"{line}\n\n{description}" if description else line
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
