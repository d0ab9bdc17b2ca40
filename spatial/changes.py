"""A cache for derived data (heat cells, hotspot analyses, vector tiles) keyed by its layer's change counter.

Every statement that writes a layer takes the next value of the layer's sequence (migration 0003), so any
intake, transition, move or import makes earlier results miss at once. Reading the counter costs one
sequence lookup. A counter is taken when the statement ends, a moment before its commit: an analysis that
starts in that moment sees the old rows under the new counter, so entries also expire after ``max_age_s``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection

Value = TypeVar("Value")


COUNTED = frozenset({"incidents", "illegal_buildings", "stalls"})


def table_version(conn: Connection, table: str) -> int:
    """Return the change counter of ``table`` (one of COUNTED): it grows with every statement that writes it."""
    if table not in COUNTED:
        raise ValueError(f"{table} has no change counter; counted tables: {', '.join(sorted(COUNTED))}")
    # The sequence name comes from the fixed set above, never from a request.
    return int(conn.execute(text(f"SELECT last_value FROM citygrid_changes_{table}")).scalar_one())


def incidents_version(conn: Connection) -> int:
    """Return the version of ``incidents``."""
    return table_version(conn, "incidents")


class VersionedCache(Generic[Value]):
    """A small LRU cache whose entries are valid only for the version they were computed at."""

    def __init__(self, size: int = 64, max_age_s: float = 60.0) -> None:
        self.size = size
        self.max_age_s = max_age_s
        self.entries: OrderedDict[Hashable, tuple[int, float, Value]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, version: int, compute: Callable[[], Value]) -> Value:
        """Return the cached value for ``key`` at ``version``, computing (and keeping) it when missing."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry[0] == version and time.monotonic() - entry[1] < self.max_age_s:
                self.entries.move_to_end(key)
                return entry[2]
        value = compute()
        with self.lock:
            self.entries[key] = (version, time.monotonic(), value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return value
