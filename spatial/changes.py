"""Caches for derived data (heat cells, hotspot analyses, vector tiles) keyed by its layer's change counter.

Every statement that writes a layer takes the next value of the layer's sequence (migration 0003), so any
intake, transition, move or import makes earlier results miss at once. Reading the counter costs one
sequence lookup. A counter is taken when the statement ends, a moment before its commit: an analysis that
starts in that moment sees the old rows under the new counter.

``VersionedCache`` lives in one process and lets its entries expire after ``max_age_s`` for that reason.
``SharedCache`` keeps results in PostgreSQL (migration 0006), so every worker and a restarted server reuse
them, and it closes the gap instead: it stores a result only if, when the counter was read, no transaction
held a write lock on the table — a writer keeps that lock from its first write to its commit, so a result
computed after that check sees every change the counter counts.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

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


# Lock modes that INSERT, UPDATE, DELETE, TRUNCATE and ALTER take on a table and keep until commit.
_WRITE_LOCKS = ("RowExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")


def settled_version(conn: Connection, table: str) -> tuple[int, bool]:
    """Return the change counter of ``table`` and whether no transaction (ours included) is writing it now."""
    if table not in COUNTED:
        raise ValueError(f"{table} has no change counter; counted tables: {', '.join(sorted(COUNTED))}")
    row = conn.execute(
        text(
            f"SELECT s.last_value, NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'relation'"
            f" AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND l.relation = CAST(:table AS regclass) AND l.mode = ANY(:modes))"
            f" FROM citygrid_changes_{table} s"
        ),
        {"table": table, "modes": list(_WRITE_LOCKS)},
    ).one()
    return int(row[0]), bool(row[1])


class SharedCache:
    """Derived results as bytes, shared by every worker through the ``citygrid_cache.derived`` table.

    Results are kept gzip-compressed: a browser takes them as they are (``Content-Encoding: gzip``), and
    the table holds a third to a tenth of the bytes.

    An entry is valid for the counter value it was computed at; a newer value makes it miss, and the store of
    a new entry deletes the kind's entries of older values. A small in-process LRU answers repeats without
    reading the table; ``max_bytes`` bounds what one kind keeps in PostgreSQL (oldest entries go first).
    """

    def __init__(self, kind: str, table: str, *, size: int = 64, max_bytes: int = 256 * 2**20) -> None:
        self.kind = kind
        self.table = table
        self.max_bytes = max_bytes
        self.local: VersionedCache[bytes] = VersionedCache(size=size, max_age_s=float("inf"))
        self.stores = 0

    def get(self, conn: Connection, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        """Return the bytes for ``key`` at the table's current counter, computing and storing them if missing."""
        return gzip.decompress(self.get_gzip(conn, key, compute))

    def get_gzip(self, conn: Connection, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        """Return the bytes for ``key`` gzip-compressed, as they are kept: ready to send with that encoding."""
        version, settled = settled_version(conn, self.table)
        key_text = json.dumps(key, default=str, separators=(",", ":"))
        if settled:
            hit = self.local.entries.get(key_text)
            if hit is not None and hit[0] == version:
                return hit[2]
            stored = conn.execute(
                text(
                    "SELECT body FROM citygrid_cache.derived WHERE kind = :kind AND key = :key AND version = :version"
                ),
                {"kind": self.kind, "key": key_text, "version": version},
            ).scalar()
            if stored is not None:
                return self.local.get(key_text, version, lambda: bytes(stored))
        body = gzip.compress(compute(), compresslevel=6, mtime=0)
        if settled:
            self._store(conn, key_text, version, body)
            self.local.get(key_text, version, lambda: body)
        return body

    def _store(self, conn: Connection, key_text: str, version: int, body: bytes) -> None:
        # A transaction of its own: the caller's connection may be inside a transaction it will roll back.
        params: dict[str, Any] = {"kind": self.kind, "key": key_text, "version": version, "body": body}
        with conn.engine.begin() as writer:
            writer.execute(
                text(
                    "INSERT INTO citygrid_cache.derived (kind, key, version, body)"
                    " VALUES (:kind, :key, :version, :body) ON CONFLICT (kind, key) DO UPDATE"
                    " SET version = excluded.version, body = excluded.body, computed_at = now()"
                    " WHERE derived.version <= excluded.version"
                ),
                params,
            )
            writer.execute(
                text("DELETE FROM citygrid_cache.derived WHERE kind = :kind AND version < :version"),
                {"kind": self.kind, "version": version},
            )
            self.stores += 1
            if self.stores % 64 == 0:
                writer.execute(
                    text(
                        "DELETE FROM citygrid_cache.derived d USING (SELECT key FROM (SELECT key,"
                        " sum(octet_length(body)) OVER (ORDER BY computed_at DESC, key) AS kept"
                        " FROM citygrid_cache.derived WHERE kind = :kind) r WHERE kept > :max_bytes) old"
                        " WHERE d.kind = :kind AND d.key = old.key"
                    ),
                    {"kind": self.kind, "max_bytes": self.max_bytes},
                )
