"""The request path's Prometheus instruments, observed once per request from its `RequestRecord`
and once per upstream attempt.

Label values are bounded: tenants, model aliases, providers and deployments come from the config
(a model the client made up is counted as "unknown"), statuses and policies from fixed sets; error
codes, which a provider's answer may carry, are capped at MAX_CODES distinct values. Never a request id,
a key or a key id.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from gateway.events.record import RequestRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
UNKNOWN = "unknown"
NONE = "none"
OTHER = "other"
MAX_CODES = 64  # distinct `code` label values; an error code can come from a provider's answer
MAX_CODE_CHARS = 64


M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """A metric's labelled children, cached: `labels()` validates and locks on every call, a dict
    look-up does not. The cache stays small because label values are bounded."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._cache: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self.metric.labels(*values)
        return child


class BoundedValues:
    """Passes a label value through until `limit` distinct ones were seen; later newcomers become "other"."""

    def __init__(self, limit: int, max_chars: int = MAX_CODE_CHARS) -> None:
        self.limit = limit
        self.max_chars = max_chars
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit or len(value) > self.max_chars:
            return OTHER
        self.seen.add(value)
        return value


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.codes = BoundedValues(MAX_CODES)
        self.requests = Children(
            Counter(
                "gateway_requests",
                "Requests by tenant, model, provider and outcome",
                ["tenant", "model", "provider", "status", "code"],
                registry=registry,
            )
        )
        self.duration = Children(
            Histogram(
                "gateway_request_duration_seconds",
                "Time from the request's arrival to its last byte",
                ["tenant", "model", "streamed"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.ttft = Children(
            Histogram(
                "gateway_time_to_first_token_seconds",
                "Time from a streamed request's arrival to its first chunk",
                ["tenant", "model"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.upstream = Children(
            Histogram(
                "gateway_upstream_duration_seconds",
                "One upstream attempt, from sending to the answer (headers, for a stream)",
                ["provider", "deployment", "outcome"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.tokens = Children(
            Counter(
                "gateway_tokens",
                "Tokens by kind (prompt, completion, cached, cache_write, reasoning)",
                ["tenant", "model", "kind"],
                registry=registry,
            )
        )
        self.cost = Children(
            Counter("gateway_cost_usd", "Spend in USD (known prices only)", ["tenant", "model"], registry=registry)
        )
        self.unpriced = Children(
            Counter(
                "gateway_unpriced_requests",
                "Requests with usage but no known price",
                ["tenant", "model"],
                registry=registry,
            )
        )
        self.blocks = Children(
            Counter("gateway_policy_blocks", "Requests refused by a policy", ["tenant", "policy"], registry=registry)
        )
        self.retries = Children(
            Counter("gateway_retries", "Attempts beyond the first on a model", ["model"], registry=registry)
        )
        self.fallbacks = Children(
            Counter(
                "gateway_fallbacks",
                "Requests that moved on to a fallback model",
                ["model", "fallback"],
                registry=registry,
            )
        )

    def observe(self, record: RequestRecord, known_models: frozenset[str]) -> None:
        tenant = record.tenant or NONE
        model = record.model_alias or (record.model_requested if record.model_requested in known_models else UNKNOWN)
        code = record.error_code or (str(record.http_status) if record.status != "completed" else "ok")
        self.requests(tenant, model, record.provider or NONE, record.status, self.codes(code)).inc()
        self.duration(tenant, model, "true" if record.streamed else "false").observe(record.latency_s)
        if record.first_token_s is not None:
            self.ttft(tenant, model).observe(record.first_token_s)
        if record.blocked_by is not None:
            self.blocks(tenant, record.blocked_by).inc()
        usage = record.usage
        if usage is None:
            return
        for kind, count in (
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
            ("cache_write", usage.cache_write_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if count:
                self.tokens(tenant, model, kind).inc(count)
        if record.cost_usd is not None:
            self.cost(tenant, model).inc(record.cost_usd)
        elif usage.total_tokens:
            self.unpriced(tenant, model).inc()

    def attempt(self, provider: str, deployment: str, outcome: str, seconds: float) -> None:
        self.upstream(provider, deployment, outcome).observe(seconds)
