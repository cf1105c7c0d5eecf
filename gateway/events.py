"""The record every request leaves behind, and where it goes.

One `RequestRecord` per request that reached the gateway, emitted exactly once when the request
ends (success, failure, block or client disconnect). This module defines the record and the sink
interface; the durable sinks (SQLite, Postgres, spool) plug in behind `UsageSink`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from adapters.base import Usage

log = logging.getLogger("gateway.events")


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    started_at: float
    tenant: str | None = None
    key_id: str | None = None
    model_requested: str | None = None
    deployment: str | None = None  # provider/model that answered
    provider: str | None = None
    streamed: bool = False
    status: str = "failed"  # completed | failed | blocked | cancelled
    http_status: int = 0
    error_type: str | None = None
    usage: Usage | None = None
    latency_s: float = 0.0
    first_token_s: float | None = None
    attempts: list[str] = field(default_factory=list)
    injection_score: float | None = None
    injection_signals: tuple[str, ...] = ()
    pii_counts: dict[str, int] = field(default_factory=dict)  # entity type ─► count, never values


class UsageSink(Protocol):
    def emit(self, record: RequestRecord) -> None: ...


class LogSink:
    """Default sink until the durable event pipeline is configured: one debug line per request."""

    def __init__(self) -> None:
        self.emitted = 0

    def emit(self, record: RequestRecord) -> None:
        self.emitted += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request %s tenant=%s model=%s status=%s http=%s",
                record.request_id,
                record.tenant,
                record.model_requested,
                record.status,
                record.http_status,
            )
