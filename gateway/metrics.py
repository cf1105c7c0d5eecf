"""GET /metrics: Prometheus text exposition.

The registry belongs to the gateway's state (no module-level globals); a collector reads live state
at scrape time: each deployment's circuit, the shared-state store's mode (so an SRE sees when budgets
run degraded), and the retry budget. Request/latency/token metrics are the usage pipeline's job.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.http import Receive, Scope, Send, send_bytes
from gateway.state import GatewayState

CIRCUIT_STATES = ("closed", "half_open", "open")
STORE_MODES = ("in_process", "primary", "degraded_open", "degraded_closed")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class LiveStateCollector(Collector):
    def __init__(self, state: GatewayState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        circuits = GaugeMetricFamily(
            "gateway_circuit_state",
            "1 for the state each deployment's circuit breaker is in",
            labels=["deployment", "state"],
        )
        failures = GaugeMetricFamily(
            "gateway_circuit_consecutive_failures", "Consecutive failures per deployment", labels=["deployment"]
        )
        for label, snapshot in self.state.failover.circuits.snapshot().items():
            for name in CIRCUIT_STATES:
                circuits.add_metric([label, name], 1.0 if snapshot["state"] == name else 0.0)
            count = snapshot["consecutive_failures"]
            failures.add_metric([label], float(count) if isinstance(count, int) else 0.0)
        yield circuits
        yield failures
        store = self.state.state_store
        mode = store.mode if store is not None else "in_process"
        modes = GaugeMetricFamily(
            "gateway_state_store_mode",
            "1 for the mode budgets and rate limits run in (degraded_*: Redis unreachable, state.on_error applies)",
            labels=["mode"],
        )
        for name in STORE_MODES:
            modes.add_metric([name], 1.0 if mode == name else 0.0)
        yield modes
        yield GaugeMetricFamily(
            "gateway_retry_budget_tokens",
            "Retries currently allowed by the retry budget",
            value=self.state.failover.budget.tokens,
        )


class MetricsEndpoint:
    def __init__(self, state: GatewayState) -> None:
        self.registry = state.registry
        self.registry.register(LiveStateCollector(state))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, generate_latest(self.registry), [(b"content-type", CONTENT_TYPE)])
