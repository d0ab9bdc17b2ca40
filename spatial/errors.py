"""Domain errors: plain exceptions that say what was wrong and how to fix it.

They know nothing of HTTP; ``api/errors.py`` maps each class to a status code in one table.
"""

from __future__ import annotations

from typing import Any


class CitygridError(Exception):
    """Base of every domain error; ``code`` is a stable machine-readable name."""

    code = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(CitygridError):
    """A named thing (layer, feature, grid) does not exist."""

    code = "not_found"


class InvalidInput(CitygridError):
    """Input that can never succeed as given: bad parameter, bad file, bad geometry."""

    code = "invalid_input"


class SetupError(CitygridError):
    """The machine lacks something the project needs (PostgreSQL binaries, PostGIS)."""

    code = "setup_error"


class DatabaseUnavailable(CitygridError):
    """The database cannot be reached right now; retrying later may succeed."""

    code = "database_unavailable"


class Conflict(CitygridError):
    """The request is valid but not now: the thing is in a state that does not allow it (a case's status)."""

    code = "conflict"


class Unauthorized(CitygridError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthorized"


class Forbidden(CitygridError):
    """The API key is valid but its role or scope does not allow this."""

    code = "forbidden"
