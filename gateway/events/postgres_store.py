"""The production event store: Postgres through asyncpg.

A batch is one transaction: COPY into a temporary staging table, then one INSERT ... ON CONFLICT DO
NOTHING into `usage_events`, so a replayed request id is skipped, not duplicated. The table is
partitioned by day (UTC); the partitions a batch needs are created on the way, under an advisory lock
so that replicas creating the same day do not collide. Every call is bounded by a timeout: a database
that hangs counts as unreachable, and the batch stays in the journal. A batch Postgres refuses for what it
holds (a data exception or a broken constraint, SQLSTATE classes 22 and 23) is StoreRejected. Postgres text
cannot hold NUL, so a NUL a client sent (in a model name, say) is written as U+FFFD instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from gateway.events.migrations import POSTGRES, VERSION_TABLE
from gateway.events.record import COLUMNS, TS_POSITION, row_values
from gateway.events.store import Row, StoreRejected, StoreUnreachable

CALL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 3.0
MIGRATION_LOCK = 0x6761_7465_7761  # advisory lock ids: arbitrary, fixed
PARTITION_LOCK = 0x6761_7465_7762
STAGING = "usage_events_incoming"
UTC = dt.UTC
REFUSED_CLASSES = ("22", "23")  # SQLSTATE classes: data exception, integrity constraint violation
ENCODING_ERRORS = (TypeError, ValueError, OverflowError)
NO_PARTITION = "23514"  # check_violation; the schema has no CHECK: "no partition of usage_events takes the row"


def _record(row: Row) -> list[Any]:
    values = row_values(row)
    try:
        values[TS_POSITION] = dt.datetime.fromtimestamp(values[TS_POSITION], UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise StoreRejected("postgres: a row's ts is not a time") from None
    for i, value in enumerate(values):
        if value.__class__ is str and "\x00" in value:
            values[i] = value.replace("\x00", "\ufffd")
    return values


def describe(exc: Exception) -> str:
    """A failure by kind (a server-side SQLSTATE, or the exception's class): never the DSN, which may hold
    a password, nor the rows' values."""
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate:
        return f"postgres: {type(exc).__name__} ({exc.sqlstate})"
    return f"postgres: {type(exc).__name__}"


def unreachable(exc: Exception) -> StoreUnreachable:
    return StoreUnreachable(describe(exc))


def refused(exc: Exception) -> bool:
    """Postgres refuses what the rows hold, or asyncpg could not encode a value for its column (it raises
    TypeError, ValueError or OverflowError from the COPY: text for a number, a number out of range)."""
    if isinstance(exc, asyncpg.PostgresError):
        return bool(exc.sqlstate) and exc.sqlstate.startswith(REFUSED_CLASSES)
    return isinstance(exc, ENCODING_ERRORS)


def partition_ddl(day: dt.date) -> str:
    start = dt.datetime.combine(day, dt.time(), UTC)
    end = start + dt.timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS usage_events_{day:%Y%m%d} PARTITION OF usage_events "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._partitions: set[dt.date] = set()
        self._staged: set[int] = set()  # backend pids whose session has the staging table

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=2, timeout=CONNECT_TIMEOUT_S, command_timeout=CALL_TIMEOUT_S
                )
            except Exception as exc:  # a bad DSN too: never let the writer die on it, keep journaling
                raise unreachable(exc) from None
        return self._pool

    async def migrate(self) -> list[int]:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {VERSION_TABLE}")}
            applied = []
            for version, statements in POSTGRES:
                if version in done:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES ($1)", version)
                applied.append(version)
            return applied

    async def write(self, rows: Sequence[Row]) -> None:
        records = [_record(row) for row in rows]
        missing = {record[TS_POSITION].date() for record in records} - self._partitions
        async with self._connection() as conn:
            if missing:
                await self._create_partitions(conn, missing)
            backend = conn.get_server_pid()
            if backend not in self._staged:
                await conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} "
                    "(LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                self._staged.add(backend)
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table(STAGING, records=records, columns=COLUMNS)
                    await conn.execute(
                        f"INSERT INTO usage_events ({', '.join(COLUMNS)}) "
                        f"SELECT {', '.join(COLUMNS)} FROM {STAGING} ON CONFLICT DO NOTHING"
                    )
            except (asyncpg.PostgresError, *ENCODING_ERRORS) as exc:
                if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == NO_PARTITION:
                    self._partitions.clear()  # dropped (retention) or a database restored: made again next time
                    raise StoreUnreachable(describe(exc)) from None
                if refused(exc):  # rolled back; the session is still good
                    raise StoreRejected(describe(exc)) from None
                raise

    async def _create_partitions(self, conn: asyncpg.Connection, days: set[dt.date]) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            for day in sorted(days):
                await conn.execute(partition_ddl(day))
        self._partitions |= days

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *params)]

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; any failure on it is StoreUnreachable: unreachable, or a server-side
        failure (disk full, shutting down ...), and the batch stays on disk. Sessions may be new after
        one (a backend pid can be reused), so the staging table is made again."""
        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                yield conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._staged.clear()
            raise unreachable(exc) from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=CONNECT_TIMEOUT_S)
            except Exception:  # a pool to a dead server: nothing to flush, just let go
                pool.terminate()
