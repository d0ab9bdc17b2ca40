"""Where a bulk import keeps its scratch tables, and the helper connections that fill them on every core.

An import of a million cases spends most of its time on per-row work that does not depend on the other rows:
typing and checking each row, its responsibility chain (``citygrid_owner_points``), its due time and a
possible duplicate. That work is split into chunks of rows, done by one helper connection per core at once,
each chunk committed as soon as it is ready; the caller stores each ready chunk in its own transaction, in
file order, while the helpers work on the chunks after it (``run_workers``), so a file still goes in whole or
not at all.

Helper connections cannot see the caller's uncommitted temporary tables. So a parallel import stages the file
and the per-chunk results in UNLOGGED tables of the ``citygrid_import`` schema (migration 0005), committed by
the helpers. The caller's transaction holds an advisory lock on the import's id until it ends and drops the
tables itself; tables left by an import whose transaction rolled back are swept by the next parallel import
(their lock is free). A small file, or a caller's transaction that has already written something the helpers
could not see (a boundary edit, a duty change), is staged in temporary tables of the caller's transaction
instead, and the same statements run there one after another.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql
from sqlalchemy import Connection, Engine

SCHEMA = "citygrid_import"
# Advisory lock namespace (first key) of running imports; the second key is the import's id.
LOCK_CLASS = 5_324_601
PARALLEL_MIN_BYTES = 2_000_000  # ≈ 25,000 rows: below this, helper connections cost more than they save
CHUNKS_PER_WORKER = 4  # several chunks each, so that a worker slowed by a busy core does not hold up the rest
MIN_CHUNK_ROWS = 5_000
# A large file in chunks of at most this many rows: the caller stores chunk k while the helpers work on the
# chunks after it, and waits at the end only for the last chunk's insert
MAX_CHUNK_ROWS = 50_000
MAX_WORKERS = 8

Cursor = Any  # a psycopg2 cursor


def default_workers() -> int:
    """Return how many helper connections a large import uses: one per core of this machine (at most 8)."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@dataclass(frozen=True)
class Staging:
    """The names of one import's scratch tables: temporary (caller's transaction) or shared (helpers)."""

    import_id: int | None  # None: temporary tables in the caller's transaction

    @classmethod
    def shared(cls) -> Staging:
        """Return the staging of a parallel import, with a new random id."""
        return cls(import_id=secrets.randbelow(2**31 - 1) + 1)

    @property
    def parallel(self) -> bool:
        """Whether helper connections fill these tables."""
        return self.import_id is not None

    def table(self, name: str) -> sql.Composable:
        """Return the identifier of scratch table ``name`` (raw, coords, rows_0, chain_0, …)."""
        if self.import_id is None:
            return sql.Identifier(f"import_{name}")
        return sql.Identifier(SCHEMA, f"i{self.import_id}_{name}")

    def create_columns(self, name: str, columns: sql.Composable) -> sql.Composed:
        """Return the CREATE TABLE statement of scratch table ``name`` with ``columns``."""
        if self.import_id is None:
            return sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(self.table(name), columns)
        return sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(self.table(name), columns)

    def create_as(self, name: str) -> sql.Composed:
        """Return the start of a CREATE TABLE … AS statement of scratch table ``name`` (the query follows)."""
        if self.import_id is None:
            return sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS ").format(self.table(name))
        return sql.SQL("CREATE UNLOGGED TABLE {} AS ").format(self.table(name))


class Background:
    """A statement running on a helper connection of its own, in a thread; ``wait`` joins it."""

    def __init__(self, engine: Engine, statement: sql.Composable) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                with helper(engine) as cur:
                    cur.execute(statement)
            except BaseException as exc:  # handed to the thread that waits
                self.error = exc

        self.thread = threading.Thread(target=run, name="citygrid-import-background")
        self.thread.start()

    def wait(self, *, raising: bool = True) -> None:
        """Wait until the statement is committed; raise its error (unless ``raising`` is False)."""
        self.thread.join()
        if raising and self.error is not None:
            raise self.error


def helpers_can_see(cur: Cursor) -> bool:
    """Return whether the caller's transaction has written nothing yet: then other connections see what it sees."""
    cur.execute("SELECT txid_current_if_assigned() IS NULL")
    row = cur.fetchone()
    return bool(row and row[0])


@contextmanager
def helper(engine: Engine) -> Iterator[Cursor]:
    """Yield a cursor in a transaction of its own on a pooled connection; commit when the block ends."""
    with engine.connect() as connection, transaction(connection) as cur:
        yield cur


@contextmanager
def transaction(connection: Connection) -> Iterator[Cursor]:
    """Yield a cursor of ``connection`` in a new transaction with an import's settings; commit when the block ends."""
    raw = connection.connection.driver_connection
    assert raw is not None
    with connection.begin(), raw.cursor() as cur:
        unlimited(cur)
        yield cur


def unlimited(cur: Cursor) -> None:
    """Set what an import's transaction needs, in one round trip (this transaction only).

    An import of a million rows outlasts the engine's statement timeout (which guards requests), and sorts and
    hashes its chunks in memory rather than on disk.
    """
    cur.execute("SET LOCAL statement_timeout = 0; SET LOCAL work_mem = '256MB'")


def sweep(cur: Cursor) -> int:
    """Drop the scratch tables of imports whose transaction has ended (their lock is free); return how many."""
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname ~ '^i[0-9]+_'",
        (SCHEMA,),
    )
    by_import: dict[int, list[str]] = {}
    for (name,) in cur.fetchall():
        by_import.setdefault(int(name[1 : name.index("_")]), []).append(name)
    dropped = 0
    for import_id, names in sorted(by_import.items()):
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (LOCK_CLASS, import_id))
        row = cur.fetchone()
        if row and row[0]:
            cur.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.SQL(", ").join(sql.Identifier(SCHEMA, n) for n in sorted(names))
                )
            )
            dropped += len(names)
    return dropped


def drop(cur: Cursor, staging: Staging, names: list[str]) -> None:
    """Drop an import's shared scratch tables in the caller's transaction (temporary ones go at commit)."""
    if staging.parallel:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(staging.table(n) for n in names)))


def chunks(rows: int, workers: int) -> list[tuple[int, int]]:
    """Split row numbers 1..rows into contiguous ranges (first, last): a few per worker, none over MAX_CHUNK_ROWS."""
    if rows <= 0:
        return []
    count = max(1, min(workers * CHUNKS_PER_WORKER, -(-rows // MIN_CHUNK_ROWS)), -(-rows // MAX_CHUNK_ROWS))
    size = -(-rows // count)
    return [(first, min(first + size - 1, rows)) for first in range(1, rows + 1, size)]


def run_workers(
    engine: Engine,
    workers: int,
    ranges: list[tuple[int, int]],
    work: Callable[[Cursor, int, int, int], None],
    done: Callable[[int, int, int], None] | None = None,
) -> None:
    """Run ``work(cursor, chunk, first, last)`` for every range on ``workers`` helper connections at once.

    Each range is worked in a transaction of its own, committed when ``work`` returns, so that the caller sees
    its results at once. ``done(chunk, first, last)`` is called in this thread for every range, in the order of
    ``ranges`` (a range finished early waits for those before it): the caller stores chunk k while the helpers
    work on the chunks after it. The first error, a helper's or ``done``'s, stops every worker and is raised here.

    At most ``workers + 1`` ranges are taken and not yet done: a helper waits rather than run ahead of the
    caller, which keeps the cores for the caller's inserts while it lags, instead of leaving it alone on one
    core at the end with the chunks it had not stored yet.
    """
    todo: queue.Queue[tuple[int, int, int]] = queue.Queue()
    for index, (first, last) in enumerate(ranges):
        todo.put((index, first, last))
    finished: queue.Queue[int | BaseException | None] = queue.Queue()
    stop = threading.Event()
    ahead = threading.Semaphore(workers + 1)

    def take() -> tuple[int, int, int] | None:
        """Wait for room ahead of the caller, then take the next range (None: none left, or stopped)."""
        while not ahead.acquire(timeout=0.1):
            if stop.is_set():
                return None
        try:
            return todo.get_nowait()
        except queue.Empty:
            ahead.release()
            return None

    def loop() -> None:
        try:
            with engine.connect() as connection:
                while not stop.is_set():
                    taken = take()
                    if taken is None:
                        break
                    index, first, last = taken
                    with transaction(connection) as cur:
                        work(cur, index, first, last)
                    finished.put(index)
        except BaseException as exc:  # handed to the calling thread, which raises it
            stop.set()
            finished.put(exc)
        finally:
            finished.put(None)

    threads = [threading.Thread(target=loop, name=f"citygrid-import-{w}") for w in range(workers)]
    for thread in threads:
        thread.start()
    error: BaseException | None = None
    running = workers
    ready: set[int] = set()
    following = 0  # the next range to hand to ``done``
    while running:
        item = finished.get()
        if item is None:
            running -= 1
        elif isinstance(item, BaseException):
            error = error or item
        else:
            ready.add(item)
            while error is None and following in ready:
                try:
                    if done is not None:
                        done(following, *ranges[following])
                except BaseException as exc:
                    stop.set()
                    error = exc
                following += 1
                ahead.release()
    for thread in threads:
        thread.join()
    if error is not None:
        raise error
