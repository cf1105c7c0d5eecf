"""What the pipeline writes to: Postgres in production, SQLite embedded (`open_store` picks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gateway.config.schema import EventsConfig
from gateway.events.record import Row

__all__ = ["EventStore", "Row", "StoreRejected", "StoreUnreachable", "open_store"]


class StoreUnreachable(Exception):
    """The database could not take a batch (down, refused, timed out); the batch stays on disk."""


class StoreRejected(Exception):
    """The database is there but refuses the batch for what is in it: a value it cannot hold (a number out
    of its range, a character its text type has no room for) or a constraint a row breaks. Retrying the
    same rows would fail forever; the writer finds the row at fault and sets it aside."""


class EventStore(Protocol):
    name: str  # "postgres" | "sqlite": a metric label, never a DSN

    async def migrate(self) -> list[int]:
        """Brings the schema to the newest version; returns the versions it applied."""
        ...

    async def write(self, rows: Sequence[Row]) -> None:
        """Writes the rows in one transaction; a request id already stored is skipped (replays are
        idempotent). Raises StoreUnreachable when the database cannot take them, StoreRejected (and
        writes none of them) when one of them is a row it refuses."""
        ...

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only query in the store's own dialect (usage reports); StoreUnreachable as for write."""
        ...

    async def close(self) -> None: ...


def open_store(config: EventsConfig) -> EventStore:
    if config.postgres_dsn:
        from gateway.events.postgres_store import PostgresStore

        return PostgresStore(config.postgres_dsn)
    from gateway.events.sqlite_store import SqliteStore

    return SqliteStore(config.sqlite_path)
