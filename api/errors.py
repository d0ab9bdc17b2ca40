"""One table from domain errors to HTTP status codes, and the JSON body every error has.

The body is ``{code, message, detail}``: ``message`` says what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

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


STATUS: dict[type[CitygridError], int] = {
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
    problems = [{"where": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]} for err in exc.errors()]
    summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
    return JSONResponse(error_body(code, f"the request is not valid: {summary}", problems), status_code=status)


def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CitygridError)
    return domain_response(exc)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc, code="invalid_request", status=422)


def _database_down(_: Request, exc: Exception) -> JSONResponse:
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
    raise exc


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    app.add_exception_handler(CitygridError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_down)
