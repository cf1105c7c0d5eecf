"""GET /metrics: Prometheus text exposition.

The registry belongs to the gateway's state (no module-level globals). The request path's instruments
live in `gateway.instruments`; this module adds a collector that reads live state at scrape time:
each deployment's circuit, the shared-state store (mode, Redis errors, settlements owed), the retry
budget, the usage-event pipeline (queue, spool, rows written and failed, per store) and every limited
tenant's budget windows. The budget state lives in the (possibly Redis) reservation store, whose reads
are async while collectors are not, so the endpoint refreshes it, within a deadline, before rendering.

With several workers (`gateway serve --workers N` sets PROMETHEUS_MULTIPROC_DIR for all of them), the
request path's counters and histograms are kept in prometheus-client's per-process files and every
scrape sums them over the workers, whichever worker answers; so are the counters a worker keeps itself
(its event writer's rows, Redis errors, leases: `copy_totals`). The live-state gauges are the answering
worker's own (budgets come from Redis, the same for all).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.events.pipeline import EventPipeline
from gateway.http import Receive, Scope, Send, send_bytes
from gateway.instruments import FLUSH_S
from gateway.runtime import Tenant
from gateway.state import GatewayState
from policies.budgets import LimitState

log = logging.getLogger("gateway.metrics")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CIRCUIT_STATES = ("closed", "half_open", "open")
STORE_MODES = ("in_process", "primary", "degraded_open", "degraded_closed")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
BUDGET_READ_TIMEOUT_S = 1.0  # a scrape waits at most this long for the budget state of all tenants
BUDGET_READ_CONCURRENCY = 16  # tenants read at once (each read is one pipelined Redis round trip)
BUDGET_LABELS = ("tenant", "limit", "unit", "window")


@dataclass
class BudgetReadings:
    """The current window of every limit of every tenant that has limits, as last read from the store."""

    timeout_s: float = BUDGET_READ_TIMEOUT_S
    concurrency: int = BUDGET_READ_CONCURRENCY
    states: list[tuple[str, LimitState]] = field(default_factory=list)
    failures: int = 0  # tenants whose state could not be read in time

    async def refresh(self, state: GatewayState) -> None:
        """Reads every limited tenant within `timeout_s` in all; a tenant that fails is left out (and counted).
        While the shared store is degraded nothing is shown: this process's local figures would pass for the
        shared ones, and `gateway_state_store_mode` says why the series are gone."""
        if degraded(state):
            self.states = []
            return
        store = state.store
        tenants = [tenant for tenant in state.runtime.tenants.values() if tenant.limits]
        now = time.time()
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        gate = asyncio.Semaphore(self.concurrency)

        async def read(tenant: Tenant) -> list[LimitState]:
            async with asyncio.timeout_at(deadline), gate:
                return await store.state(tenant.name, tenant.limits, now)

        results = await asyncio.gather(*(read(tenant) for tenant in tenants), return_exceptions=True)
        states: list[tuple[str, LimitState]] = []
        for tenant, result in zip(tenants, results, strict=True):
            if isinstance(result, BaseException):
                self.failures += 1
                log.debug("budget state of tenant %s not read for /metrics: %r", tenant.name, result)
            else:
                states.extend((tenant.name, limit) for limit in result)
        self.states = [] if degraded(state) else states  # Redis failed meanwhile: fail_open answered locally


def degraded(state: GatewayState) -> bool:
    """True while Redis is configured but unreachable (`state.on_error` applies)."""
    return state.state_store is not None and state.state_store.mode.startswith("degraded")


def budget_metrics(readings: BudgetReadings) -> Iterator[Metric]:
    limit = GaugeMetricFamily(
        "gateway_budget_limit", "The limit of a budget or rate-limit window", labels=BUDGET_LABELS
    )
    spent = GaugeMetricFamily("gateway_budget_spent", "Settled spend in the current window", labels=BUDGET_LABELS)
    reserved = GaugeMetricFamily(
        "gateway_budget_reserved", "Reserved by requests in flight in the current window", labels=BUDGET_LABELS
    )
    ratio = GaugeMetricFamily(
        "gateway_budget_remaining_ratio",
        "Share of the limit still available in the current window (1: untouched, 0: exhausted)",
        labels=BUDGET_LABELS,
    )
    for tenant, state in readings.states:
        spec = state.spec
        labels = [tenant, spec.name, spec.unit, spec.window]
        limit.add_metric(labels, spec.limit)
        spent.add_metric(labels, state.spent)
        reserved.add_metric(labels, state.reserved)
        ratio.add_metric(labels, state.remaining / spec.limit if spec.limit > 0 else 0.0)
    yield from (limit, spent, reserved, ratio)


def circuit_metrics(state: GatewayState) -> Iterator[Metric]:
    circuits = GaugeMetricFamily(
        "gateway_circuit_state",
        "1 for the state each deployment's circuit breaker is in",
        labels=["deployment", "state"],
    )
    failures = GaugeMetricFamily(
        "gateway_circuit_consecutive_failures", "Consecutive failures per deployment", labels=["deployment"]
    )
    for label, snapshot in state.failover.circuits.snapshot().items():
        for name in CIRCUIT_STATES:
            circuits.add_metric([label, name], 1.0 if snapshot["state"] == name else 0.0)
        count = snapshot["consecutive_failures"]
        failures.add_metric([label], float(count) if isinstance(count, int) else 0.0)
    yield circuits
    yield failures
    yield GaugeMetricFamily(
        "gateway_retry_budget_tokens",
        "Retries currently allowed by the retry budget",
        value=state.failover.budget.tokens,
    )


def store_metrics(state: GatewayState) -> Iterator[Metric]:
    shared = state.state_store
    mode = shared.mode if shared is not None else "in_process"
    modes = GaugeMetricFamily(
        "gateway_state_store_mode",
        "1 for the mode budgets and rate limits run in (degraded_*: Redis unreachable, state.on_error applies)",
        labels=["mode"],
    )
    for name in STORE_MODES:
        modes.add_metric([name], 1.0 if mode == name else 0.0)
    yield modes
    guarded = shared.guarded if shared is not None else None
    if guarded is not None:  # Redis is configured
        yield GaugeMetricFamily(
            "gateway_state_store_pending_settlements",
            "Settlements made without Redis, to be pushed to it when it answers again",
            value=guarded.pending,
        )


def event_metrics(pipeline: EventPipeline) -> Iterator[Metric]:
    labels = [pipeline.store.name]  # postgres | sqlite

    def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, documentation, labels=["store"])
        family.add_metric(labels, value)
        return family

    yield gauge("gateway_event_queue_depth", "Usage events queued in memory for the writer", pipeline.queue_depth)
    yield gauge(
        "gateway_event_spool_bytes",
        "Bytes of usage events journaled on disk, not yet all in the store",
        pipeline.journal.pending_bytes(),
    )
    yield gauge(
        "gateway_event_spool_segments",
        "Journal segments on disk not yet all in the store",
        pipeline.journal.pending_segments(),
    )
    yield gauge(
        "gateway_event_store_healthy",
        "1 while events go from memory to the store, 0 while it is unreachable or the spool is replayed",
        1.0 if pipeline.writable else 0.0,
    )


def copy_totals(state: GatewayState) -> None:
    """This worker's own counts (its event writer's, its Redis client's) into the counters every worker adds
    to (`instruments.Totals`): at each scrape, and every FLUSH_S with several workers (`TotalsCopier`)."""
    totals = state.metrics.totals
    pipeline = state.pipeline
    if pipeline is not None:
        store, stats = pipeline.store.name, pipeline.stats  # postgres | sqlite
        totals.copy(
            "gateway_events_written",
            "Usage event rows the store accepted (replays included)",
            stats.written,
            store=store,
        )
        totals.copy(
            "gateway_event_write_failures",
            "Batches the store refused or could not take (database errors)",
            stats.write_failures,
            store=store,
        )
        totals.copy(
            "gateway_events_replayed", "Usage event rows written from the on-disk spool", stats.replayed, store=store
        )
        totals.copy(
            "gateway_events_rejected",
            "Usage event rows the store refused for what they hold, set aside in the spool's rejected.jsonl",
            stats.rejected,
            store=store,
        )
        totals.copy(
            "gateway_event_journal_failures",
            "Usage events that could not be journaled on disk",
            stats.journal_failures,
            store=store,
        )
    shared = state.state_store
    guarded = shared.guarded if shared is not None else None
    if guarded is not None:  # Redis is configured
        totals.copy("gateway_redis_errors", "Redis calls that failed or missed their deadline", guarded.errors)
    leased = shared.leased if shared is not None else None
    if leased is not None:
        totals.copy(
            "gateway_budget_leases",
            "Budget leases reserved in Redis, each admitting one or more requests without a Redis round trip",
            leased.leases_opened,
        )


class TotalsCopier:
    """With several workers, another worker's scrape sees this one's counts (`copy_totals`) within FLUSH_S."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if os.environ.get(MULTIPROCESS_ENV) and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            copy_totals(self.state)

    async def stop(self) -> None:
        """After the last events were written: the final counts stay in the files once the worker is gone."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        copy_totals(self.state)


def task_metrics() -> Iterator[Metric]:
    """Tasks alive in this worker's event loop (the harness's soak checks they return to baseline). The
    endpoint renders inside the loop; a collect from elsewhere (no running loop) leaves the gauge out."""
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        return
    yield GaugeMetricFamily("gateway_asyncio_tasks", "Asyncio tasks alive in this worker's event loop", value=tasks)


class LiveStateCollector(Collector):
    def __init__(self, state: GatewayState, budgets: BudgetReadings) -> None:
        self.state = state
        self.budgets = budgets

    def collect(self) -> Iterator[Metric]:
        yield from circuit_metrics(self.state)
        yield from store_metrics(self.state)
        if self.state.pipeline is not None:
            yield from event_metrics(self.state.pipeline)
        yield from budget_metrics(self.budgets)
        yield from task_metrics()


class MetricsEndpoint:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.budgets = BudgetReadings()
        if os.environ.get(MULTIPROCESS_ENV):
            # the instruments write to per-process files; expose their sum, not this process's share
            self.registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = state.registry
        self.registry.register(LiveStateCollector(state, self.budgets))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.budgets.refresh(self.state)
        copy_totals(self.state)
        self.state.metrics.totals.copy(
            "gateway_budget_read_failures",
            "Tenants whose budget state could not be read (in time) for a scrape",
            self.budgets.failures,
        )
        self.state.metrics.flush()  # this process's requests up to now, whichever registry renders them
        await send_bytes(send, 200, generate_latest(self.registry), [(b"content-type", CONTENT_TYPE)])
