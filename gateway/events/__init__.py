"""Usage events: one `RequestRecord` per request, journaled on disk before the response's last byte
leaves, then written in batches to Postgres or SQLite (see `pipeline`)."""

from gateway.events.record import RequestRecord, UsageSink

__all__ = ["RequestRecord", "UsageSink"]
