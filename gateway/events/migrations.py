"""Versioned schema migrations, one list per dialect. A migration is never edited once released:
a change is a new version. `gateway migrate` applies them; so does every gateway at start."""

from __future__ import annotations

from collections.abc import Sequence

# (version, statements)
Migration = tuple[int, Sequence[str]]

POSTGRES: Sequence[Migration] = (
    (
        1,
        (
            """
            CREATE TABLE usage_events (
                request_id text NOT NULL,
                ts timestamptz NOT NULL,
                tenant text,
                key_id text,
                endpoint text NOT NULL,
                model_requested text,
                model_alias text,
                provider text,
                deployment text,
                upstream_model text,
                fallback_path jsonb NOT NULL DEFAULT '[]',
                attempts jsonb NOT NULL DEFAULT '[]',
                status text NOT NULL,
                http_status integer NOT NULL,
                error_type text,
                error_code text,
                blocked_by text,
                streamed boolean NOT NULL DEFAULT false,
                prompt_tokens integer NOT NULL DEFAULT 0,
                completion_tokens integer NOT NULL DEFAULT 0,
                cached_tokens integer NOT NULL DEFAULT 0,
                cache_write_tokens integer NOT NULL DEFAULT 0,
                reasoning_tokens integer NOT NULL DEFAULT 0,
                cost_usd double precision,
                price_version text,
                latency_ms double precision NOT NULL,
                ttft_ms double precision,
                injection_score double precision,
                injection_signals jsonb NOT NULL DEFAULT '[]',
                pii_counts jsonb NOT NULL DEFAULT '{}',
                prompt_content text,
                completion_content text,
                PRIMARY KEY (request_id, ts)
            ) PARTITION BY RANGE (ts)
            """,
            "CREATE INDEX usage_events_tenant_ts ON usage_events (tenant, ts)",
        ),
    ),
)

SQLITE: Sequence[Migration] = (
    (
        1,
        (
            """
            CREATE TABLE usage_events (
                request_id TEXT PRIMARY KEY,
                ts REAL NOT NULL,
                tenant TEXT,
                key_id TEXT,
                endpoint TEXT NOT NULL,
                model_requested TEXT,
                model_alias TEXT,
                provider TEXT,
                deployment TEXT,
                upstream_model TEXT,
                fallback_path TEXT NOT NULL DEFAULT '[]',
                attempts TEXT NOT NULL DEFAULT '[]',
                status TEXT NOT NULL,
                http_status INTEGER NOT NULL,
                error_type TEXT,
                error_code TEXT,
                blocked_by TEXT,
                streamed INTEGER NOT NULL DEFAULT 0,
                prompt_tokens INTEGER NOT NULL DEFAULT 0,
                completion_tokens INTEGER NOT NULL DEFAULT 0,
                cached_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                reasoning_tokens INTEGER NOT NULL DEFAULT 0,
                cost_usd REAL,
                price_version TEXT,
                latency_ms REAL NOT NULL,
                ttft_ms REAL,
                injection_score REAL,
                injection_signals TEXT NOT NULL DEFAULT '[]',
                pii_counts TEXT NOT NULL DEFAULT '{}',
                prompt_content TEXT,
                completion_content TEXT
            )
            """,
            "CREATE INDEX usage_events_tenant_ts ON usage_events (tenant, ts)",
        ),
    ),
)

VERSION_TABLE = "gateway_schema_migrations"
