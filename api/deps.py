"""Dependencies shared by the routers: the settings and a database connection.

The cheap ones are ``async`` so that FastAPI does not send them through its thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from spatial.settings import Settings


async def get_settings(request: Request) -> Settings:
    """Return the settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    """Return the app's engine."""
    engine: Engine = request.app.state.engine
    return engine


async def get_read_engine(request: Request) -> Engine:
    """Return the app's autocommit engine, for hot paths of one statement (reads, and a report's one insert)."""
    engine: Engine = request.app.state.read_engine
    return engine


def get_connection(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """Yield a connection for one request (read-only work; writes open their own transaction)."""
    with engine.connect() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ReadEngineDep = Annotated[Engine, Depends(get_read_engine)]
ConnectionDep = Annotated[Connection, Depends(get_connection)]
