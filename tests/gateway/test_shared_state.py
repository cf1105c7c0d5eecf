"""Budgets and rate limits kept in a real Redis: two gateways enforce one limit together, and an
unreachable Redis never makes a request hang, under both `state.on_error` modes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway import RunningGateway, sha
from tests.support.redis_server import BlackHole, RedisServer
from tests.support.upstream import MockUpstream

KEY = "sk-test-shared-0001"


def config(upstream: MockUpstream, redis_url: str, on_error: str = "fail_closed") -> str:
    return f"""
state: {{redis_url: "{redis_url}", on_error: {on_error}}}
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
"""


def ask(gateway: RunningGateway) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=10,
    )


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


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
            ask(gateway)  # warm up the client side
            timings = []
            for _ in range(5):
                started = time.monotonic()
                response = ask(gateway)
                timings.append(time.monotonic() - started)
                assert response.status_code == expected, response.text
        finally:
            gateway.stop()
    if expected == 503:
        assert response.json()["error"]["code"] == "state_store_unavailable"
    assert max(timings) < 0.25 + 0.05 + 0.1, timings  # Redis timeout + 50 ms (+ the local HTTP round trip)
