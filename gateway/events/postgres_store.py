"""The production event store: Postgres through asyncpg.

A batch is one statement: the rows go as one JSON array (orjson, in C), and Postgres takes them apart
(`jsonb_array_elements`, a cast per column) into one INSERT ... ON CONFLICT DO NOTHING into `usage_events`,
so a replayed request id is skipped, not duplicated. Encoding a row's 32 values in Python, as a COPY
does, cost the gateway ~20 µs of CPU a row; this costs ~3 µs, and one round trip a batch instead of four.
`ts` (epoch seconds) becomes the very timestamptz Python's `datetime.fromtimestamp` makes (the same
rounding to the microsecond: see TS_FROM_EPOCH), so a row written before this change and replayed after
it is still the same primary key. The table is partitioned by day (UTC); the partitions a batch needs are
created on the way, under an advisory lock so that replicas creating the same day do not collide. Every
call is bounded by a timeout: a database that hangs counts as unreachable, and the batch stays in the
journal. Reports (`query`) read what may be months of rows, for seconds or minutes: they have connections of
their own, bounded by REPORT_TIMEOUT_S, so that they never keep a batch waiting for a connection nor are cut by
a write's bound. A batch Postgres refuses for what it holds (a data exception or a broken constraint, SQLSTATE
classes 22, 23 and 54) is StoreRejected. Postgres text cannot hold NUL, so a NUL a client sent (in a model
name, say) is written as U+FFFD instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import orjson

from gateway.events.migrations import POSTGRES, VERSION_TABLE
from gateway.events.record import COLUMNS, JSON_COLUMNS, TS_POSITION
from gateway.events.store import Row, StoreRejected, StoreUnreachable

CALL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 3.0
REPORT_TIMEOUT_S = 300.0  # a report: waiting for one of its connections and running, each (never a write's bound)
REPORT_CONNECTIONS = 2
MIGRATION_LOCK = 0x6761_7465_7761  # advisory lock ids: arbitrary, fixed
PARTITION_LOCK = 0x6761_7465_7762
UTC = dt.UTC
DAY_S = 86_400
# SQLSTATE classes: data exception, integrity constraint violation, program limit exceeded (a value too large)
REFUSED_CLASSES = ("22", "23", "54")
ENCODING_ERRORS = (TypeError, ValueError, OverflowError)
NO_PARTITION = "23514"  # check_violation; the schema has no CHECK: "no partition of usage_events takes the row"


# Each column from the batch's JSON, element `r` (a row: an array in COLUMNS order). Not `to_timestamp(x)`:
# it scales the whole epoch to microseconds in one float product, which rounds differently from Python in
# ~7% of cases; whole seconds, then the fraction's microseconds rounded half to even, as CPython does.
TS_FROM_EPOCH = (
    "to_timestamp(trunc((r->>{i})::float8))"
    " + interval '1 microsecond' * round(((r->>{i})::float8 - trunc((r->>{i})::float8)) * 1e6)"
)
CASTS = {
    "ts": TS_FROM_EPOCH,
    "http_status": "(r->>{i})::integer",
    "streamed": "(r->>{i})::boolean",
    **{c: "(r->>{i})::integer" for c in COLUMNS if c.endswith("_tokens")},
    **{c: "(r->>{i})::float8" for c in ("cost_usd", "latency_ms", "ttft_ms", "injection_score")},
    **{c: "r->{i}" for c in JSON_COLUMNS},  # jsonb as it is (a JSON null stays a JSON null, as before)
}
INSERT = (
    f"INSERT INTO usage_events ({', '.join(COLUMNS)}) "
    f"SELECT {', '.join(CASTS.get(c, 'r->>{i}').format(i=i) for i, c in enumerate(COLUMNS))} "
    "FROM jsonb_array_elements($1::jsonb) AS batch(r) ON CONFLICT DO NOTHING"
)
ESCAPED_NUL = b"\\u0000"
MAX_STATEMENT_JSON = 32 * 1024 * 1024


def _nul_free(row: Row) -> Row:
    return tuple(v.replace("\x00", "\ufffd") if v.__class__ is str and "\x00" in v else v for v in row)


def batch_json(rows: Sequence[Row]) -> list[str]:
    """The rows as JSON arrays, each for one statement: one, unless the batch's JSON is above MAX_STATEMENT_JSON
    (rows with their content logged: jsonb takes at most 256 MB). A NUL in a text value (JSON `\\u0000`, which
    jsonb refuses) becomes U+FFFD; one nested in a JSON column is left for Postgres to refuse, and that row is
    set aside."""
    try:
        payload = orjson.dumps(rows)
        if ESCAPED_NUL in payload:  # (or a backslash before "u0000" in some text: made again the same)
            payload = orjson.dumps([_nul_free(row) for row in rows])
    except TypeError:  # (orjson.JSONEncodeError) a value JSON cannot hold
        raise StoreRejected("postgres: a row holds a value JSON cannot") from None
    if len(payload) > MAX_STATEMENT_JSON and len(rows) > 1:
        middle = len(rows) // 2
        return batch_json(rows[:middle]) + batch_json(rows[middle:])
    return [payload.decode()]


def batch_days(rows: Sequence[Row]) -> set[dt.date]:
    """The UTC days of the rows' `ts`: the partitions the batch needs. Almost always one day, from the batch's
    first and last stamps; a row in a day's last millisecond may round into the next day, so a batch with one
    there, or spanning days, has each row's day taken as Postgres will store it."""
    try:
        stamps = [row[TS_POSITION] for row in rows]
        low, high = min(stamps), max(stamps)
        if low // DAY_S == (high + 0.001) // DAY_S:
            return {dt.datetime.fromtimestamp(low, UTC).date()}
        return {dt.datetime.fromtimestamp(ts, UTC).date() for ts in stamps}
    except (TypeError, ValueError, OverflowError, OSError):
        raise StoreRejected("postgres: a row's ts is not a time") from None


def describe(exc: Exception) -> str:
    """A failure by kind (a server-side SQLSTATE, or the exception's class): never the DSN, which may hold
    a password, nor the rows' values."""
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate:
        return f"postgres: {type(exc).__name__} ({exc.sqlstate})"
    return f"postgres: {type(exc).__name__}"


def unreachable(exc: Exception) -> StoreUnreachable:
    return StoreUnreachable(describe(exc))


def refused(exc: Exception) -> bool:
    """Postgres refuses what the rows hold (a number out of its column's range, text for a number, NUL in JSON,
    a value too large), or asyncpg could not encode the batch's text."""
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


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection back in the pool is not reset (RESET ALL, UNLISTEN *, ...: one more round trip a batch):
    nothing here changes a session's state. (An open transaction is still rolled back by the pool.)"""


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None  # writes and migrations
        self._reports: asyncpg.Pool | None = None  # queries: never the writer's connections
        self._partitions: set[dt.date] = set()
        # a pool is made on first use, and making one may wait (the writer's opens its first connection): callers
        # that come meanwhile (reports asked at once) wait for it rather than each make a pool, all but one lost
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await self._create_pool(1, 2, CALL_TIMEOUT_S)
        return self._pool

    async def _get_report_pool(self) -> asyncpg.Pool:
        if self._reports is None:
            async with self._opening:
                if self._reports is None:
                    self._reports = await self._create_pool(0, REPORT_CONNECTIONS, REPORT_TIMEOUT_S)
        return self._reports

    async def _create_pool(self, min_size: int, max_size: int, command_timeout: float) -> asyncpg.Pool:
        try:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=command_timeout,
                reset=_keep_session,
            )
        except Exception as exc:  # a bad DSN too: never let the writer die on it, keep journaling
            raise unreachable(exc) from None

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
        missing = batch_days(rows) - self._partitions
        statements = batch_json(rows)
        async with self._connection() as conn:
            if missing:
                await self._create_partitions(conn, missing)
            try:
                if len(statements) == 1:
                    await conn.execute(INSERT, statements[0])
                else:
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(INSERT, statement)
            except (asyncpg.PostgresError, *ENCODING_ERRORS) as exc:
                if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == NO_PARTITION:
                    self._partitions.clear()  # dropped (retention) or a database restored: made again next time
                    raise StoreUnreachable(describe(exc)) from None
                if refused(exc):  # (one statement, or one transaction: nothing of the batch was written)
                    raise StoreRejected(describe(exc)) from None
                raise

    async def _create_partitions(self, conn: asyncpg.Connection, days: set[dt.date]) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            for day in sorted(days):
                await conn.execute(partition_ddl(day))
        self._partitions |= days

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """On the reports' own connections: a report waits its turn for one (others may be running), within
        REPORT_TIMEOUT_S, and runs within it."""
        async with self._connection(reports=True) as conn:
            return [tuple(r) for r in await conn.fetch(sql, *params)]

    @contextlib.asynccontextmanager
    async def _connection(self, reports: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; any failure on it is StoreUnreachable: unreachable, or a server-side
        failure (disk full, shutting down ...), and the batch stays on disk."""
        pool = await (self._get_report_pool() if reports else self._get_pool())
        try:
            async with pool.acquire(timeout=REPORT_TIMEOUT_S if reports else CONNECT_TIMEOUT_S) as conn:
                yield conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise unreachable(exc) from None

    async def close(self) -> None:
        pools = [pool for pool in (self._pool, self._reports) if pool is not None]
        self._pool = self._reports = None
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), timeout=CONNECT_TIMEOUT_S)
            except Exception:  # a pool to a dead server: nothing to flush, just let go
                pool.terminate()
