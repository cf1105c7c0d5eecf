"""Circuit breakers, retries and fallbacks against a failing provider on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.tracing import Tracing
from tests.conftest import ACME_KEY
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway, sha
from tests.support.upstream import MockUpstream

AUTH = {"authorization": f"Bearer {ACME_KEY}"}


def ask(gateway: RunningGateway, model: str, text: str = "hello", stream: bool = False) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}], "stream": stream},
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


def test_an_open_circuit_s_503_says_when_to_retry(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.status = 500  # flaky: circuit failures 3, cooldown 3 s, retries 0
    assert [ask(gateway, "flaky").status_code for _ in range(3)] == [502] * 3
    response = ask(gateway, "flaky")
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"
    assert 1 <= int(response.headers["retry-after"]) <= 3  # when the circuit lets its probe through
    upstream.behaviour.status = 200
    # The SDK waits what Retry-After says (up to 60 s), so its one retry is the probe, and is answered. Without the
    # header it retried after its own 0.5-1 s and got the same 503 again.
    sdk = openai.OpenAI(api_key=ACME_KEY, base_url=gateway.url + "/v1", max_retries=1, timeout=20)
    answer = sdk.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content
    assert len(upstream.received) == 4


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


def test_a_request_whose_retries_run_out_spends_only_the_retries_it_made(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    """with-fallback: one retry, then its fallback, each one token of the retry budget (a burst of 5). A request
    spends the two it used, not a third for a retry it never made once its retries ran out: the next request's
    fallback still fits in the budget."""
    upstream.behaviour.status = 500
    for text in ("first", "second"):
        response = ask(gateway, "with-fallback", text)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "mock-1"  # the fallback (demo) answered
    assert len(upstream.received) == 4  # each: the first attempt and its one retry
    assert gateway.state.failover.budget.tokens == pytest.approx(5 - 2 * 2 + 0.1)


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


CHAIN_CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-chain"}}
  up-anthropic: {{type: anthropic, base_url: "{url}", api_key: "sk-ant-chain"}}
  demo: {{type: mock}}
models:
  oai: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, fallbacks: [claude, demo]}}
  oai-then-claude: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, fallbacks: [claude]}}
  claude: {{deployments: [{{provider: up-anthropic, model: claude-3-5-haiku-latest}}], retries: 0}}
  claude-then-demo: {{deployments: [{{provider: up-anthropic, model: claude-3-5-haiku-latest}}], fallbacks: [demo]}}
  demo: {{deployments: [{{provider: demo, model: mock-1}}]}}
  guarded:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
    retries: 0
    circuit: {{failures: 2, cooldown_s: 60}}
    fallbacks: [demo]
  mostly-claude:
    deployments:
      - {{provider: up-anthropic, model: claude-3-5-haiku-latest, weight: 99}}
      - {{provider: up, model: gpt-4o-mini, weight: 1}}
    retries: 0
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{key_sha}"}}]
    models: ["*"]
"""


def test_a_fallback_that_cannot_express_the_request_is_passed_over(upstream: MockUpstream) -> None:
    """n=2 is unsupported by Anthropic's API: with the primary failing, that fallback is skipped for the next
    one; when none is left, the answer is the primary's failure (a 502), not a 400 blaming the request."""
    upstream.reset()
    upstream.behaviour.status = 500
    gateway = RunningGateway(CHAIN_CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()

    def two_choices(model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "n": 2}
        return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=20)

    try:
        served = two_choices("oai")
        exhausted = two_choices("oai-then-claude")
        refused = two_choices("claude")
        # passing over is no retry: it spends none of the retry budget (a burst of 5), whatever the traffic
        passed_over = [two_choices("claude-then-demo").status_code for _ in range(20)]
    finally:
        gateway.stop()
    assert served.status_code == 200, served.text
    assert served.json()["model"] == "mock-1"  # the in-process mock, the fallback after Anthropic's
    assert exhausted.status_code == 502, exhausted.text
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_parameter"
    assert passed_over == [200] * 20
    assert all(r.path == "/v1/chat/completions" for r in upstream.received)  # Anthropic was never called


def test_a_deployment_that_cannot_express_the_request_is_passed_over_for_another_of_the_model(
    upstream: MockUpstream,
) -> None:
    """n=2 on a model served mostly by Anthropic (which cannot express it) and a little by OpenAI: the OpenAI
    deployment answers at once, with no retry and no fallback, however many times Anthropic is chosen first."""
    upstream.reset()
    gateway = RunningGateway(CHAIN_CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()
    body = {"model": "mostly-claude", "messages": [{"role": "user", "content": "hello"}], "n": 2}
    try:
        responses = [
            httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=20) for _ in range(20)
        ]
    finally:
        gateway.stop()
    assert [r.status_code for r in responses] == [200] * 20, responses[0].text
    for response in responses:
        validate("CreateChatCompletionResponse", response.json())
    assert len(upstream.received) == 20
    assert all(r.path == "/v1/chat/completions" for r in upstream.received)  # Anthropic was never called


ANTHROPIC_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01Over",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    },
}
ANTHROPIC_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_anthropic_overloaded_before_any_content_is_handed_to_the_fallback(upstream: MockUpstream) -> None:
    """Anthropic opens a stream with message_start, then may fail (overloaded_error) before the model wrote
    anything: nothing was promised to the client yet, so that is a failed attempt, which a fallback answers (or,
    with none, an error status) rather than a 200 whose stream holds a role and an error."""
    upstream.reset()
    upstream.behaviour.stream_body = b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        for event in (ANTHROPIC_START, {"type": "ping"}, ANTHROPIC_OVERLOADED)
    )
    gateway = RunningGateway(CHAIN_CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()

    def stream(model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": True}
        return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=20)

    try:
        fallen_back = stream("claude-then-demo")
        alone = stream("claude")
    finally:
        gateway.stop()
    assert fallen_back.status_code == 200, fallen_back.text
    events = [line[6:] for line in fallen_back.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and not any('"error"' in event for event in events), events
    assert json.loads(events[0])["model"] == "mock-1"
    assert alone.status_code == 502, alone.text
    validate("ErrorResponse", alone.json())
    # as Anthropic's 529 is answered (the status its overloaded_error stands for out of a stream), not a made-up 500
    assert alone.json()["error"]["message"] == "The provider 'up-anthropic' failed (HTTP 529): Overloaded"


def test_a_temperature_anthropic_cannot_sample_at_is_answered_by_another_deployment(upstream: MockUpstream) -> None:
    """OpenAI samples at a temperature up to 2, Anthropic up to 1 (a 400 from it, which no other deployment would
    get to answer): on a model served by both, the OpenAI deployment answers, however often Anthropic is drawn."""
    upstream.reset()
    gateway = RunningGateway(CHAIN_CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()
    body = {"model": "mostly-claude", "messages": [{"role": "user", "content": "hello"}], "temperature": 1.5}
    try:
        responses = [
            httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=20) for _ in range(10)
        ]
        alone = httpx.post(gateway.url + "/v1/chat/completions", json=body | {"model": "claude"}, headers=AUTH)
    finally:
        gateway.stop()
    assert [r.status_code for r in responses] == [200] * 10, responses[0].text
    assert all(r.path == "/v1/chat/completions" for r in upstream.received)  # Anthropic was never called
    assert alone.status_code == 400, alone.text
    assert alone.json()["error"]["code"] == "unsupported_parameter"
    assert alone.json()["error"]["param"] == "temperature"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(402, {"type": "billing_error", "message": "credit too low"}, id="billing-error"),
        pytest.param(
            400,
            {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API."},
            id="credit-balance-too-low",
        ),
        pytest.param(
            400,
            {"type": "invalid_request_error", "message": "You have reached your specified API usage limits."},
            id="spend-limit",
        ),
        pytest.param(
            429,
            {
                "type": "rate_limit_error",
                "message": "monthly spend limit reached",
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
            id="tier-spend-cap",
        ),
    ],
)
def test_a_provider_that_refuses_the_gateway_s_account_hands_over_to_the_fallback(
    upstream: MockUpstream, status: int, error: dict[str, object]
) -> None:
    """Anthropic's 402 billing_error, and its refusals of an account out of credit or past a spend limit (a 400, or
    for the tier's monthly cap a 429), are about the gateway's account, not the caller's request."""
    upstream.reset()
    upstream.behaviour.status = status
    upstream.behaviour.error_body = {"type": "error", "error": error}
    gateway = RunningGateway(CHAIN_CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()
    try:
        response = ask(gateway, "claude-then-demo")
    finally:
        gateway.stop()
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "mock-1"


def test_a_model_whose_circuit_is_open_hands_every_request_to_its_fallback(upstream: MockUpstream) -> None:
    """Once the primary's circuit is open nothing is sent to it, so its fallback is each request's first attempt,
    not a retry: it spends none of the retry budget (a burst of 5, then 10% of requests), whatever the traffic."""
    upstream.reset()
    upstream.behaviour.status = 500
    gateway = RunningGateway(CHAIN_CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()
    try:
        responses = [ask(gateway, "guarded") for _ in range(30)]
        circuit = gateway.state.failover.circuits.snapshot()["up/gpt-4o-mini"]["state"]
    finally:
        gateway.stop()
    assert [r.status_code for r in responses] == [200] * 30, responses[-1].text
    assert {r.json()["model"] for r in responses} == {"mock-1"}
    assert circuit == "open"
    assert len(upstream.received) == 2  # the two failures that opened it


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_that_hangs_past_the_model_s_timeout_is_a_failed_attempt(
    upstream: MockUpstream, stream: bool
) -> None:
    """The model's `timeout_s` (no first-byte timeout) running out while the provider works on an attempt is that
    attempt's failure, as a first byte's timeout is: held against the circuit, an `error` outcome in
    gateway_upstream_duration_seconds and an ERROR span naming upstream_timeout. It was taken as a cancel with
    no verdict: a provider that hung on every request never opened its circuit, and it showed as `cancelled`."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = RunningGateway(
        f"""
providers:
  up: {{type: openai, base_url: "{upstream.url}/v1", api_key: "sk-upstream"}}
models:
  hung:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
    timeout_s: 0.5
    retries: 0
    circuit: {{failures: 2, cooldown_s: 60}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{sha(ACME_KEY)}"}}]
    models: ["*"]
"""
    )
    gateway.state.tracing = gateway.state.failover.tracing = Tracing(provider)
    gateway.start()
    upstream.reset()
    upstream.behaviour.delay_s = 3
    try:
        statuses = [ask(gateway, "hung", stream=stream).status_code for _ in range(3)]
        circuit = gateway.state.failover.circuits.snapshot()["up/gpt-4o-mini"]
        metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
    finally:
        gateway.stop()
    assert statuses == [504, 504, 503]  # the third fails fast: the circuit opened
    assert circuit["state"] == "open" and circuit["consecutive_failures"] == 2
    assert 'outcome="error"' in metrics and 'outcome="cancelled"' not in metrics
    tries = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(tries) == 2
    for span in tries:
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "upstream_timeout"
