"""Circuit breakers, retries and fallbacks against a failing provider on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

import httpx

from tests.conftest import ACME_KEY
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway
from tests.support.upstream import MockUpstream

AUTH = {"authorization": f"Bearer {ACME_KEY}"}


def ask(gateway: RunningGateway, model: str, text: str = "hello") -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers=AUTH,
        timeout=20,
    )


def test_circuit_opens_fails_fast_probes_and_recovers(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.status = 500  # flaky: circuit failures 3, cooldown 3 s, retries 0
    statuses = [ask(gateway, "flaky").status_code for _ in range(10)]
    assert statuses[:3] == [502, 502, 502]
    assert statuses[3:] == [503] * 7  # open: fails fast
    assert len(upstream.received) == 3
    assert gateway.state.failover.circuits.snapshot()["up-openai/flaky-model"]["state"] == "open"

    time.sleep(3.1)
    assert ask(gateway, "flaky").status_code == 502  # the one probe, and it failed
    assert len(upstream.received) == 4
    assert [ask(gateway, "flaky").status_code for _ in range(5)] == [503] * 5  # re-opened, fresh cooldown
    assert len(upstream.received) == 4

    upstream.behaviour.status = 200
    time.sleep(3.1)
    assert ask(gateway, "flaky").status_code == 200  # a good probe closes it
    assert [ask(gateway, "flaky").status_code for _ in range(3)] == [200] * 3
    assert gateway.state.failover.circuits.snapshot()["up-openai/flaky-model"]["state"] == "closed"


def test_retries_honour_retry_after_and_stay_within_the_budget(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.status = 503
    upstream.behaviour.retry_after = "1"
    requests = 100

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions",
                        json={"model": "stormy", "messages": [{"role": "user", "content": f"request {i}"}]},
                        headers=AUTH,
                    )
                    for i in range(requests)
                )
            )

    responses = asyncio.run(scenario())
    assert {r.status_code for r in responses} == {502}
    for response in responses:
        validate("ErrorResponse", response.json())
    attempts = len(upstream.received)
    assert attempts / requests <= 1.2, attempts
    arrivals: dict[str, list[float]] = defaultdict(list)
    for received in upstream.received:
        arrivals[received.body["messages"][0]["content"]].append(received.at)
    retried = [times for times in arrivals.values() if len(times) > 1]
    assert retried, "some requests should have been retried"
    for times in retried:
        assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))


def test_fallback_answers_when_the_model_fails(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.status = 500
    events: list[object] = []
    sink = gateway.state.events
    original = sink.emit
    sink.emit = events.append  # type: ignore[method-assign]
    try:
        response = ask(gateway, "with-fallback", "who answers?")
    finally:
        sink.emit = original  # type: ignore[method-assign]
    assert response.status_code == 200
    validate("CreateChatCompletionResponse", response.json())
    assert response.json()["model"] == "mock-1"  # the fallback's answer says who answered
    assert len(upstream.received) == 2  # the model's first try and its one retry
    [record] = events
    assert record.attempts == ["up-openai/gpt-4o-mini", "up-openai/gpt-4o-mini", "demo/mock-1"]  # type: ignore[attr-defined]
    assert record.deployment == "demo/mock-1"  # type: ignore[attr-defined]


def test_client_errors_are_not_retried_nor_fallen_back(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.status = 400
    upstream.behaviour.error_body = {
        "error": {"message": "bad param", "type": "invalid_request_error", "param": "x", "code": None}
    }
    response = ask(gateway, "with-fallback")
    assert response.status_code == 400
    assert len(upstream.received) == 1
