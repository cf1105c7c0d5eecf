"""Budgets and rate limits kept in a real Redis: two gateways enforce one limit together, and an
unreachable Redis never makes a request hang, under both `state.on_error` modes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.schema import TenantConfig
from gateway.instruments import FLUSH_S
from gateway.runtime import tenant_limits
from gateway.state_store import REDIS_TIMEOUT_S
from policies.budgets import LimitState, window_span
from policies.redis_client import RedisClient
from policies.redis_store import RedisStore
from tests.conftest import ADMIN_TOKEN
from tests.support.gateway import RunningGateway, free_port, settled_limits, sha
from tests.support.redis_server import BlackHole, RedisServer
from tests.support.serve import serve, shut_down, wait_ready
from tests.support.upstream import MockUpstream

KEY = "sk-test-shared-0001"
RACER_KEY = "sk-test-racer-0002"
RACER_LIMITS = tenant_limits(TenantConfig.model_validate({"budgets": [{"tokens": 10000, "per": "day"}]}))


def config(upstream: MockUpstream, redis_url: str, on_error: str = "fail_closed") -> str:
    return f"""
state: {{redis_url: "{redis_url}", on_error: {on_error}}}
admin: {{token_sha256: "{sha(ADMIN_TOKEN)}"}}
providers:
  up: {{type: openai, base_url: "{upstream.url}/v1", api_key: "sk-upstream"}}
models:
  gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
tenants:
  shared:
    keys: [{{id: s-1, sha256: "{sha(KEY)}"}}]
    models: ["*"]
    rate_limits: {{rpm: 6}}
    budgets: [{{tokens: 1000000, per: day}}]
  racer:
    keys: [{{id: r-1, sha256: "{sha(RACER_KEY)}"}}]
    models: ["*"]
    budgets: [{{tokens: 10000, per: day}}]
"""


def ask(gateway: RunningGateway) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=10,
    )


def test_two_gateways_share_one_limit(redis_server: RedisServer, upstream: MockUpstream) -> None:
    redis_server.flush()
    upstream.reset()
    first = RunningGateway(config(upstream, redis_server.url)).start()
    second = RunningGateway(config(upstream, redis_server.url)).start()
    try:
        if time.gmtime().tm_sec >= 55:  # keep the 12 requests inside one minute window
            time.sleep(61 - time.gmtime().tm_sec)
        statuses = [ask(gateway).status_code for _ in range(6) for gateway in (first, second)]
    finally:
        first.stop()
        second.stop()
    assert statuses.count(200) == 6, statuses  # one rpm of 6 across both, not 6 each
    assert statuses.count(429) == 6
    assert len(upstream.received) == 6


@pytest.mark.parametrize(("on_error", "expected"), [("fail_closed", 503), ("fail_open", 200)])
def test_unreachable_redis_answers_within_the_timeout(upstream: MockUpstream, on_error: str, expected: int) -> None:
    upstream.reset()
    with BlackHole() as hole:
        gateway = RunningGateway(config(upstream, f"redis://127.0.0.1:{hole.port}/0", on_error)).start()
        try:
            timings = []
            for _ in range(6):
                started = time.monotonic()
                response = ask(gateway)
                timings.append(time.monotonic() - started)
                assert response.status_code == expected, response.text
            metrics = httpx.get(gateway.url + "/metrics").text
        finally:
            gateway.stop()
    mode = "degraded_closed" if on_error == "fail_closed" else "degraded_open"
    assert f'gateway_state_store_mode{{mode="{mode}"}} 1.0' in metrics
    if expected == 503:
        assert response.json()["error"]["code"] == "state_store_unavailable"
    # bounded, not hung: the first call waits out the Redis timeout, the next ones know Redis is down
    # (generous margins: this is a correctness test on a shared machine, not a benchmark)
    assert timings[0] < REDIS_TIMEOUT_S + 1.0, timings
    assert max(timings[1:]) < REDIS_TIMEOUT_S, timings


@pytest.mark.parametrize(
    ("outage", "on_error", "expected"),
    [("hung", "fail_closed", 503), ("refused", "fail_closed", 503), ("refused", "fail_open", 200)],
)
def test_the_admin_tenant_view_during_a_redis_outage_is_a_503_not_an_internal_error(
    upstream: MockUpstream, outage: str, on_error: str, expected: int
) -> None:
    """GET /admin/tenants/{id} reads the live budget state from Redis: while Redis is away, fail_closed says so as
    the request path does (503 state_store_unavailable), fail_open shows what this gateway keeps meanwhile."""
    with BlackHole() as hole:
        port = hole.port if outage == "hung" else free_port()  # nothing listens on a fresh free port
        gateway = RunningGateway(config(upstream, f"redis://127.0.0.1:{port}/0", on_error)).start()
        try:
            responses = [
                httpx.get(gateway.url + "/admin/tenants/shared", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
                for _ in range(2)  # the first waits out the Redis timeout, the second knows Redis is down
            ]
        finally:
            gateway.stop()
    for response in responses:
        assert response.status_code == expected, response.text
        if expected == 503:
            assert response.json()["error"]["code"] == "state_store_unavailable"
        else:
            assert [limit["spent"] for limit in response.json()["limits"]] == [0, 0]


def test_the_admin_tenant_view_says_where_its_numbers_come_from(upstream: MockUpstream) -> None:
    """Under fail_open with Redis stopped, the view can only show what this worker admitted and spent since the
    outage (Redis's counters, and other workers', are out of reach): it says so, not passing them off as the
    tenant's shared state."""
    upstream.reset()
    server = RedisServer().start()
    gateway = RunningGateway(config(upstream, server.url, "fail_open")).start()

    def settled_view() -> tuple[str, float]:
        """limits_source and the rpm's spend, once the request's settlement landed (it follows the answer)."""
        deadline = time.monotonic() + 5
        while True:
            answer = httpx.get(
                gateway.url + "/admin/tenants/shared", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            assert answer.status_code == 200, answer.text
            [rpm] = [limit for limit in answer.json()["limits"] if limit["name"] == "rpm"]
            if rpm["reserved"] == 0 or time.monotonic() > deadline:
                return answer.json()["limits_source"], rpm["spent"]
            time.sleep(0.01)

    def clear_of_the_minutes_end() -> None:
        """The rpm counts per minute: a request and its view on either side of a minute's end would read 0."""
        into_the_minute = time.time() % 60
        if into_the_minute > 50:
            time.sleep(60.5 - into_the_minute)

    try:
        clear_of_the_minutes_end()
        assert ask(gateway).status_code == 200
        shared = settled_view()
        server.stop()
        clear_of_the_minutes_end()
        assert ask(gateway).status_code == 200  # admitted without Redis
        local = settled_view()
    finally:
        gateway.stop()
        server.close()
    assert shared == ("shared", 1)
    assert local == ("local", 1), "the outage's request only: Redis's count is out of reach"


@pytest.fixture
def two_gateway_processes(redis_server: RedisServer, upstream: MockUpstream, tmp_path: Path) -> Iterator[list[str]]:
    """Two `gateway serve` processes sharing one Redis, as two replicas would."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(config(upstream, redis_server.url))
    ports = [free_port(), free_port()]
    processes = [serve(config_path, port) for port in ports]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_ready(port, process)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        shut_down(*processes)


def test_concurrent_requests_on_two_gateway_processes_cannot_overrun_a_redis_budget(
    redis_server: RedisServer, upstream: MockUpstream, two_gateway_processes: list[str]
) -> None:
    redis_server.flush()
    upstream.reset()
    upstream.behaviour.delay_s = 0.05
    body = {"model": "gpt", "messages": [{"role": "user", "content": "Count to three."}], "max_tokens": 50}

    async def scenario() -> tuple[list[tuple[int, dict[str, Any]]], LimitState]:
        # aiohttp, not httpx: httpcore's pool is quadratic in its connections, and at 500 it would hold this
        # process's CPU, where the mock upstream's thread runs, for seconds (tests/gateway/test_spend.py)
        headers = {"authorization": f"Bearer {RACER_KEY}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as client:

            async def post(base_url: str) -> tuple[int, dict[str, Any]]:
                async with client.post(base_url + "/v1/chat/completions", json=body, headers=headers) as response:
                    return response.status, await response.json()

            responses = await asyncio.gather(*(post(two_gateway_processes[i % 2]) for i in range(500)))
        redis = RedisClient(redis_server.url)
        try:  # each settlement lands just after its response's last byte: wait for the last ones, boundedly
            deadline = time.monotonic() + 5
            while (budget := (await RedisStore(redis).state("racer", RACER_LIMITS, time.time()))[0]).reserved:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
        finally:
            await redis.close()
        return responses, budget

    responses, budget = asyncio.run(scenario())
    statuses = [status for status, _ in responses]
    assert set(statuses) <= {200, 429}, [answer for status, answer in responses if status not in (200, 429)]
    assert statuses.count(200) > 0 and statuses.count(429) > 0
    seen = sum(answer["usage"]["total_tokens"] for status, answer in responses if status == 200)
    assert budget.reserved == 0
    assert budget.spent == seen <= 10_000
    assert len(upstream.received) == statuses.count(200)


def scrape_sums(exposition: str) -> dict[str, float]:
    """The racer's requests, and each counter a worker keeps itself (rows written, leases), summed over labels."""
    sums = dict.fromkeys(("requests", "gateway_events_written_total", "gateway_budget_leases_total"), 0.0)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "gateway_requests_total" and sample.labels.get("tenant") == "racer":
                sums["requests"] += sample.value
            elif sample.name in sums:
                sums[sample.name] += sample.value
    return sums


def test_metrics_of_two_workers_add_up_whichever_worker_answers(
    redis_server: RedisServer, upstream: MockUpstream, tmp_path: Path
) -> None:
    """`workers: 2` shares one port: each scrape lands on either worker and must count every request (a worker's
    own requests at once, the other's within FLUSH_S). So must the counters a worker keeps outside the request
    path (the rows its event writer wrote, the leases it took): read from the answering worker alone they went
    back and forth between the two workers' counts (30, 10, 30...), a reset at every turn for Prometheus."""
    redis_server.flush()
    upstream.reset()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(config(upstream, redis_server.url).replace("state:", "server: {workers: 2}\nstate:", 1))
    port = free_port()
    process = serve(config_path, port)
    try:
        wait_ready(port, process)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=10) as client:  # a new connection per request spreads them over the workers
            for _ in range(40):
                response = httpx.post(
                    url + "/v1/chat/completions",
                    json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                    headers={"authorization": f"Bearer {RACER_KEY}"},
                    timeout=10,
                )
                assert response.status_code == 200, response.text
            deadline = time.monotonic() + 10  # each worker's writer takes its rows to the store within a second
            while True:
                time.sleep(FLUSH_S + 0.2)  # each worker hands its counts to the shared files within FLUSH_S
                first = scrape_sums(client.get(url + "/metrics", headers={"connection": "close"}).text)
                if first["gateway_events_written_total"] >= 40 or time.monotonic() > deadline:
                    break
            close = {"connection": "close"}
            scrapes = [scrape_sums(client.get(url + "/metrics", headers=close).text) for _ in range(8)]
    finally:
        shut_down(process)
    assert [s["requests"] for s in scrapes] == [40.0] * 8, scrapes
    assert [s["gateway_events_written_total"] for s in scrapes] == [40.0] * 8, scrapes
    leases = [s["gateway_budget_leases_total"] for s in scrapes]
    assert leases[0] > 0 and leases == [leases[0]] * 8, scrapes


def test_a_gateway_starts_with_the_old_counter_names_spend(redis_server: RedisServer, upstream: MockUpstream) -> None:
    """An upgrade from a version that named counters by the limit's place in the config (`budget[0]`) is no fresh
    day: the racer's 9,995 tokens spent today under the old name leave no room for a request of worst case > 5."""
    redis_server.flush()
    day = window_span("day", time.time()).start
    with redis.Redis(host=redis_server.host, port=redis_server.port) as client:
        client.hset(f"gw:racer:budget[0]:tokens:day:{day}", "spent", "9995")
    gateway = RunningGateway(config(upstream, redis_server.url)).start()
    try:
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
            headers={"authorization": f"Bearer {RACER_KEY}"},
            timeout=10,
        )
        [limit] = settled_limits(gateway, "racer")
    finally:
        gateway.stop()
    assert response.status_code == 429 and response.json()["error"]["code"] == "budget_exceeded", response.text
    assert limit.spent == 9995
