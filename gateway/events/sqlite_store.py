"""The embedded event store: a SQLite file (stdlib), written from one thread of its own so that the
event loop never waits on disk. Several workers may share the file (WAL mode, a busy timeout).

A batch with a row SQLite refuses (a NULL where the schema says NOT NULL, a value it cannot bind) is
StoreRejected: `ON CONFLICT DO NOTHING` skips a request id already stored and nothing else, where
`INSERT OR IGNORE` would also drop such a row without a word."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.events.migrations import SQLITE, VERSION_TABLE
from gateway.events.record import COLUMNS, row_values
from gateway.events.store import Row, StoreRejected, StoreUnreachable

T = TypeVar("T")
INSERT = (
    f"INSERT INTO usage_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT DO NOTHING"
)
# what a row can hold that SQLite refuses; anything else (locked, I/O, disk full) is unreachable
REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, OverflowError)


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                raise StoreUnreachable(f"sqlite: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    async def _run_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` in one write transaction, taken at once (BEGIN IMMEDIATE: one writer at a time across
        processes, waiting up to the busy timeout); committed, or rolled back if `fn` raises."""

        def transaction(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._run(transaction)

    async def migrate(self) -> list[int]:
        def apply(db: sqlite3.Connection) -> list[int]:
            db.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at REAL)")
            done = {v for (v,) in db.execute(f"SELECT version FROM {VERSION_TABLE}")}
            applied = []
            for version, statements in SQLITE:
                if version in done:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?, ?)", (version, time.time()))
                applied.append(version)
            return applied

        return await self._run_transaction(apply)

    async def write(self, rows: Sequence[Row]) -> None:
        values = [row_values(row) for row in rows]

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.executemany(INSERT, values)
            except REFUSALS as exc:
                raise StoreRejected(f"sqlite: {type(exc).__name__}: {exc}") from None

        await self._run_transaction(insert)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only queries (usage reports), on the same thread as the writes."""
        return await self._run(lambda db: db.execute(sql, params).fetchall())

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._run(shut)
            self._db = None
        self._thread.shutdown(wait=True)
