"""One table from domain errors to HTTP status codes, and the JSON body every error has.

The body is ``{code, message, detail}``: ``message`` says what was wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException

from spatial.errors import (
    CitygridError,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    SetupError,
    Unauthorized,
)


class UnsupportedMediaType(InvalidInput):
    """The request body is in a format the endpoint does not read."""

    code = "unsupported_media_type"


class PayloadTooLarge(InvalidInput):
    """A request body over its limit (api/limits.py)."""

    code = "payload_too_large"


STATUS: dict[type[CitygridError], int] = {
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
    InvalidInput: 422,
    DatabaseUnavailable: 503,
    SetupError: 503,
}
RETRY_AFTER_S = 5
# SQLSTATEs of values a request gave that PostgreSQL cannot hold: bad input (422), not a server error.
VALUE_REFUSED = {
    "22003": "a number in the request is out of range",  # an offset of 10^22
    "22008": "a date or time in the request is out of range",  # the year 300000
    "22009": "a time zone offset in the request is out of range (PostgreSQL takes at most ±15:59)",
    # JSON (jsonb) cannot hold the character \u0000 that a JSON text may spell
    "22P05": "a text in the request contains a NUL (\\u0000) character, which cannot be stored: remove it",
}


class ErrorBody(BaseModel):
    """The body of every error response of ``/v1``, ``/health`` and ``/map``."""

    code: str
    message: str
    detail: Any = None


DESCRIPTIONS = {
    401: "no API key, or an unknown or revoked one",
    403: "the key's role or subdistrict does not allow it",
    404: "no such thing: `message` says what was not found",
    409: "the thing's state does not allow it",
    415: "the body's content-type is not one the endpoint reads",
    422: "bad input: `message` says what was wrong and how to fix it",
    503: "the database is unreachable: retry after Retry-After seconds",
}


def documented(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """Return OpenAPI ``responses`` for error statuses, each with the error body (``s404="…"`` overrides a text).

    503 also documents its Retry-After header.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "model": ErrorBody,
            "description": descriptions.get(f"s{status}", DESCRIPTIONS[status]),
        }
        if status == 503:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
            }
        responses[status] = response
    return responses


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """Return the JSON body of an error response."""
    return {"code": code, "message": message, "detail": detail}


def domain_response(exc: CitygridError, *, invalid_status: int = 422) -> JSONResponse:
    """Return the response for a domain error (``invalid_status`` replaces 422 where a standard wants 400)."""
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
    status = invalid_status if status == 422 else status
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(error_body(exc.code, exc.message, exc.detail), status_code=status, headers=headers)


def validation_response(exc: RequestValidationError, *, code: str, status: int) -> JSONResponse:
    """Return the response for request parameters FastAPI refused, naming each problem and where it is."""
    problems = [{"where": ".".join(str(p) for p in err["loc"]), "problem": _problem(err)} for err in exc.errors()]
    summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
    return JSONResponse(error_body(code, f"the request is not valid: {summary}", problems), status_code=status)


def _problem(err: dict[str, Any]) -> str:
    """Return what pydantic found wrong, with the likely cause when a JSON body arrived as text."""
    if tuple(err["loc"]) == ("body",) and isinstance(err.get("input"), str | bytes):
        return f"{err['msg']}; the body was not read as JSON: send it with content-type: application/json"
    return str(err["msg"])


def _domain_error(_: Request | None, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CitygridError)
    return domain_response(exc)


def _validation_error(_: Request | None, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc, code="invalid_request", status=422)


def _http_error(_: Request | None, exc: Exception) -> JSONResponse:
    # Starlette's own refusals (an unknown path, a body it cannot parse) in the same {code, message, detail} form.
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, CitygridError):
        # FastAPI turns whatever stopped it reading the body into this 400, a body streamed past its limit too
        # (api.limits): answered as what it was
        return domain_response(exc.__cause__)
    if exc.status_code == 400:  # FastAPI: "There was an error parsing the body", e.g. JSON that is not UTF-8
        return JSONResponse(
            error_body("invalid_request", f"the request body could not be read ({exc.detail}): send UTF-8 JSON"),
            status_code=422,
        )
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


def _database_down(_: Request | None, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    return database_down_response(exc)


def database_down_response(exc: DBAPIError) -> JSONResponse:
    """Return 503 with Retry-After when the database cannot be reached; re-raise any other database error."""
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return JSONResponse(
            error_body("database_unavailable", "the database is not reachable right now; retry shortly"),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    refused = VALUE_REFUSED.get(getattr(exc.orig, "pgcode", None) or "") if isinstance(exc, DataError) else None
    if refused is not None:
        problem = getattr(getattr(exc.orig, "diag", None), "message_primary", None)
        return JSONResponse(error_body("invalid_input", f"{refused} ({problem})"), status_code=422)
    raise exc


def _nul_character(_: Request | None, exc: Exception) -> JSONResponse:
    # psycopg2 refuses a string holding NUL before sending it; PostgreSQL text cannot hold one either.
    if "NUL (0x00)" not in str(exc):
        raise exc
    return JSONResponse(
        error_body("invalid_input", "a text in the request contains a NUL (0x00) character: remove it"),
        status_code=422,
    )


HANDLERS: dict[type[Exception], Callable[[Request | None, Exception], JSONResponse]] = {
    CitygridError: _domain_error,
    RequestValidationError: _validation_error,
    HTTPException: _http_error,
    ValueError: _nul_character,
    DBAPIError: _database_down,
}


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)


def error_response(exc: Exception) -> JSONResponse:
    """Answer ``exc`` as the application's handlers would, for middleware that runs outside them; else re-raise.

    The handler is found as Starlette finds it: the first class of the exception's MRO that has one.
    """
    handler = next((HANDLERS[kind] for kind in type(exc).__mro__ if kind in HANDLERS), None)
    if handler is None:
        raise exc
    return handler(None, exc)
