"""The request path's Prometheus instruments, observed once per request from its `RequestRecord`
and once per upstream attempt.

Label values are bounded: tenants, model aliases, providers and deployments come from the config
(a model the client made up is counted as "unknown"), statuses and policies from fixed sets, error codes
from the gateway's own fixed set; a provider's own codes, which may be anything, are capped at MAX_CODES
distinct values (so that they cannot crowd out the gateway's). Never a request id, a key or a key id.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from gateway.events.record import RequestRecord

log = logging.getLogger("gateway.metrics")

# past 120 s for reasoning models under a raised `timeout_s` (found by bisection: three more cost one comparison)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300, 600)
UNKNOWN = "unknown"
NONE = "none"
OTHER = "other"
MAX_CODES = 64  # distinct `code` label values; an error code can come from a provider's answer
MAX_CODE_CHARS = 64
TOKEN_KINDS = ("prompt", "completion", "cached", "cache_write", "reasoning")
FLUSH_S = 0.25  # the longest a request waits in its tally before the instruments (and other workers' scrapes) see it


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


class Totals:
    """Counts a worker keeps as plain numbers outside the request path (the rows its event writer wrote, its
    Redis errors, the leases it took), copied into prometheus_client counters by their increase since the last
    copy. With several workers those counters live in the multiprocess files and a scrape sums them over every
    worker, whichever answers, as it does the request counters; read from the answering worker alone, such a
    counter went back and forth between the workers' own counts, a reset at every turn for Prometheus."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._counters: dict[str, Counter] = {}
        self._copied: dict[tuple[str, tuple[str, ...]], float] = {}

    def copy(self, name: str, documentation: str, total: float, **labels: str) -> None:
        """The counter `name` (its series `labels`) is brought up to `total`, this worker's count so far."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Counter(name, documentation, list(labels), registry=self.registry)
        values = tuple(labels.values())
        series = counter.labels(*values) if values else counter
        key = (name, values)
        increase = total - self._copied.get(key, 0.0)
        if increase > 0:
            series.inc(increase)
            self._copied[key] = total


class RequestMetrics:
    """Each request is counted in a `Tally` of its label set; every FLUSH_S, and before a scrape, the tallies go
    to the instruments. prometheus_client takes a lock and does its own checks for every `inc` and `observe`:
    six of them a request cost ~20 µs, a tally ~4."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.codes = BoundedValues(MAX_CODES)
        self.totals = Totals(registry)
        self._tallies: dict[tuple[str, str, str, str, str, bool, str | None], Tally] = {}
        self._attempts: dict[tuple[str, str, str], Buckets] = {}
        self._flush: asyncio.TimerHandle | None = None
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
                "Requests of unknown cost (no known price, or usage the provider never reported)",
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
        """Counts the request in its tally (see `Tally`); the instruments get it at the next `flush`."""
        tenant = record.tenant or NONE
        model = record.model_alias or (record.model_requested if record.model_requested in known_models else UNKNOWN)
        code = record.error_code or (str(record.http_status) if record.status != "completed" else "ok")
        if record.error_code_relayed:
            code = self.codes(code)
        key = (tenant, model, record.provider or NONE, record.status, code, record.streamed, record.blocked_by)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally()
        tally.requests += 1
        tally.duration.add(record.latency_s)
        if record.first_token_s is not None:
            tally.ttft.add(record.first_token_s)
        usage = record.usage
        if usage is not None:
            tally.tokens[0] += usage.prompt_tokens
            tally.tokens[1] += usage.completion_tokens
            tally.tokens[2] += usage.cached_tokens
            tally.tokens[3] += usage.cache_write_tokens
            tally.tokens[4] += usage.reasoning_tokens
            if record.cost_usd is not None:
                tally.cost += record.cost_usd
                tally.priced = True
        if record.cost_usd is None:  # unknown: no known price, or usage the provider never reported (never 0)
            tally.unpriced += 1
        self._due()

    def attempt(self, provider: str, deployment: str, outcome: str, seconds: float) -> None:
        key = (provider, deployment, outcome)
        tallied = self._attempts.get(key)
        if tallied is None:
            tallied = self._attempts[key] = Buckets()
        tallied.add(seconds)
        self._due()

    def _due(self) -> None:
        if self._flush is None:
            try:
                self._flush = asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            except RuntimeError:  # no loop: at once
                self.flush()

    def flush(self) -> None:
        """Hands the tallies to the instruments: one increment per series and bucket instead of one per request."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        tallies, self._tallies = self._tallies, {}
        attempts, self._attempts = self._attempts, {}
        for labels, tally in tallies.items():
            try:
                self._record(labels, tally)
            except Exception:  # (a counter refuses a negative amount): the other label sets still count
                log.exception("metrics: the requests of %s could not be counted", labels[:4])
        for (provider, deployment, outcome), tallied in attempts.items():
            tallied.into(self.upstream(provider, deployment, outcome))

    def _record(self, labels: tuple[str, str, str, str, str, bool, str | None], tally: Tally) -> None:
        tenant, model, provider, status, code, streamed, blocked_by = labels
        self.requests(tenant, model, provider, status, code).inc(tally.requests)
        tally.duration.into(self.duration(tenant, model, "true" if streamed else "false"))
        if tally.ttft.count:
            tally.ttft.into(self.ttft(tenant, model))
        if blocked_by is not None:
            self.blocks(tenant, blocked_by).inc(tally.requests)
        for kind, count in zip(TOKEN_KINDS, tally.tokens, strict=True):
            if count:
                self.tokens(tenant, model, kind).inc(count)
        if tally.priced:
            self.cost(tenant, model).inc(tally.cost)
        if tally.unpriced:
            self.unpriced(tenant, model).inc(tally.unpriced)


class Buckets:
    """Observations of one histogram series since the last flush, as the histogram keeps them: a count per
    bucket (the first whose bound is ≥ the value, `Histogram.observe`'s rule) and a sum."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: +Inf
        self.sum = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def into(self, child: Histogram) -> None:
        # prometheus_client keeps a histogram child as per-bucket values and a sum, each with `inc`
        # (in process or in the multiprocess files alike); tests/gateway/test_metrics.py checks that adding
        # them here gives what `observe` one value at a time gives
        buckets = child._buckets
        for index, count in enumerate(self.counts):
            if count:
                buckets[index].inc(count)
        child._sum.inc(self.sum)


class Tally:
    """One label set's requests since the last flush."""

    __slots__ = ("cost", "duration", "priced", "requests", "tokens", "ttft", "unpriced")

    def __init__(self) -> None:
        self.requests = 0
        self.duration = Buckets()
        self.ttft = Buckets()
        self.tokens = [0, 0, 0, 0, 0]  # TOKEN_KINDS
        self.cost = 0.0
        self.priced = False
        self.unpriced = 0
