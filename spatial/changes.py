"""A cache for derived data (heat cells, hotspot analyses, vector tiles) keyed by its table's version.

A table's version is PostgreSQL's own count of rows inserted, updated and deleted in it (from the statistics
system), so any intake, transition, move or import makes earlier results miss. Reading it costs one
catalogue lookup; the price is lag: a backend publishes its counts when it goes idle, at most about 10 s
after a commit (measured: 10.0 s), so a heat map or hotspot analysis can trail the last edit by that much.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection

Value = TypeVar("Value")


def table_version(conn: Connection, table: str) -> int:
    """Return a number that changes whenever a row of ``table`` is inserted, updated or deleted."""
    version = conn.execute(
        text("SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relid = CAST(:t AS regclass)"),
        {"t": table},
    ).scalar_one()
    return int(version)


def incidents_version(conn: Connection) -> int:
    """Return the version of ``incidents``."""
    return table_version(conn, "incidents")


class VersionedCache(Generic[Value]):
    """A small LRU cache whose entries are valid only for the version they were computed at."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[int, Value]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, version: int, compute: Callable[[], Value]) -> Value:
        """Return the cached value for ``key`` at ``version``, computing (and keeping) it when missing."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry[0] == version:
                self.entries.move_to_end(key)
                return entry[1]
        value = compute()
        with self.lock:
            self.entries[key] = (version, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return value
