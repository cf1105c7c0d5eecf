"""The record every request leaves behind, and its row form.

One `RequestRecord` per request that reached the gateway, emitted exactly once when its outcome is
known (success, failure, block or client disconnect). `to_row` flattens it into a `Row`: a tuple in the
order of `COLUMNS`, the one column list the journal, SQLite and Postgres share. A journal line is that
tuple as a JSON array, so columns are only ever appended: a shorter line (an older process's) reads with
NULLs for the newer columns, and a line that is a JSON object (before rows were tuples) by its keys.
Never in a row: a key, a key's hash, a provider credential; prompt and answer texts only for a tenant
with `log_content: true`, after PII redaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from adapters.base import Usage

COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",  # when the request arrived, epoch seconds (a timestamptz in Postgres)
    "tenant",
    "key_id",
    "endpoint",
    "model_requested",
    "model_alias",  # the configured model (or fallback) that answered
    "provider",
    "deployment",
    "upstream_model",
    "fallback_path",  # JSON list of the model aliases tried, in order
    "attempts",  # JSON list of the deployments tried, in order
    "status",  # completed | failed | blocked | cancelled
    "http_status",
    "error_type",
    "error_code",
    "blocked_by",  # auth | model_access | injection | pii | budget | rate_limit
    "streamed",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",  # NULL: no known price, never a silent zero
    "price_version",
    "latency_ms",
    "ttft_ms",
    "injection_score",
    "injection_signals",  # JSON list
    "pii_counts",  # JSON object: entity type ─► count, never values
    "prompt_content",  # JSON of the messages as sent upstream (log_content only)
    "completion_content",  # the answer's text (log_content only)
)
JSON_COLUMNS = frozenset({"fallback_path", "attempts", "injection_signals", "pii_counts"})
JSON_POSITIONS = tuple(i for i, c in enumerate(COLUMNS) if c in JSON_COLUMNS)
TS_POSITION = COLUMNS.index("ts")
Row = tuple[Any, ...]  # a record's values in COLUMNS order, JSON columns as Python lists and dicts
_NO_USAGE = Usage()  # read only


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    started_at: float  # wall clock (the row's ts)
    tenant: str | None = None
    key_id: str | None = None
    model_requested: str | None = None
    model_alias: str | None = None
    deployment: str | None = None  # provider/model that answered
    provider: str | None = None
    upstream_model: str | None = None
    streamed: bool = False
    status: str = "failed"
    http_status: int = 0
    error_type: str | None = None
    error_code: str | None = None
    blocked_by: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    price_version: str | None = None
    latency_s: float = 0.0
    first_token_s: float | None = None
    fallback_path: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    injection_score: float | None = None
    injection_signals: tuple[str, ...] = ()
    pii_counts: dict[str, int] = field(default_factory=dict)
    prompt_content: str | None = None
    completion_content: str | None = None
    emitted: bool = False  # not a column: set once the record has gone out
    started_clock: float = 0.0  # not a column: time.perf_counter() at the start, for durations a clock step cannot bend
    provider_at_work: bool = False  # not a column: an attempt's request went out, and it has not failed
    usage_partial: bool = False  # not a column: `usage` is what a stream reported before it stopped short
    response_model: str | None = None  # not a column: the model the provider says answered (traces)
    error_code_relayed: bool = False  # not a column: error_code is a provider's own (GatewayError.relayed_code)

    def provider_reached(self) -> None:
        """The attempt's connection is established: its request goes out, and the provider may work on it."""
        self.provider_at_work = True

    def log_fields(self) -> dict[str, Any]:
        """The request log's line: what happened, never what was said (no content, whatever log_content says)."""
        usage = self.usage
        return {
            "request_id": self.request_id,
            "tenant": self.tenant,
            "key_id": self.key_id,
            "endpoint": self.endpoint,
            "model": self.model_requested,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.http_status,
            "outcome": self.status,
            "error_code": self.error_code,
            "blocked_by": self.blocked_by,
            "streamed": self.streamed,
            "prompt_tokens": usage.prompt_tokens if usage is not None else 0,
            "completion_tokens": usage.completion_tokens if usage is not None else 0,
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_s * 1000, 3),
            "ttft_ms": None if self.first_token_s is None else round(self.first_token_s * 1000, 3),
        }

    def to_row(self) -> Row:
        usage = self.usage or _NO_USAGE
        return (
            self.request_id,
            self.started_at,  # ts
            self.tenant,
            self.key_id,
            self.endpoint,
            self.model_requested,
            self.model_alias,
            self.provider,
            self.deployment,
            self.upstream_model,
            self.fallback_path,
            self.attempts,
            self.status,
            self.http_status,
            self.error_type,
            self.error_code,
            self.blocked_by,
            self.streamed,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            self.cost_usd,
            self.price_version,
            round(self.latency_s * 1000, 3),  # latency_ms
            None if self.first_token_s is None else round(self.first_token_s * 1000, 3),  # ttft_ms
            self.injection_score,
            list(self.injection_signals),
            self.pii_counts,
            self.prompt_content,
            self.completion_content,
        )


def row_from_json(value: Any) -> Row | None:
    """A journal line, parsed, as a row (None: not a row)."""
    if isinstance(value, list):
        return tuple(value[: len(COLUMNS)]) + (None,) * (len(COLUMNS) - len(value))
    if isinstance(value, dict):
        return tuple(value.get(c) for c in COLUMNS)
    return None


def row_values(row: Row) -> list[Any]:
    """A row for a database: JSON columns as JSON text."""
    values = list(row)
    for i in JSON_POSITIONS:
        value = values[i]
        if not value and value is not None:
            values[i] = "[]" if isinstance(value, list) else "{}"  # most rows: no signals, no PII
        else:
            values[i] = orjson.dumps(value).decode()
    return values


class UsageSink(Protocol):
    def emit(self, record: RequestRecord) -> None: ...


class DiscardSink:
    """For an app served without its lifespan (in-process tests of other parts): keeps nothing."""

    def emit(self, record: RequestRecord) -> None:
        pass
