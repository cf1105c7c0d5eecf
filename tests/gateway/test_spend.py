"""Budgets and rate limits through the gateway: concurrent requests cannot overrun a budget, every
request is answered, and what was settled equals what the provider reported."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from gateway.config.loader import load_text
from gateway.runtime import build_runtime
from gateway.spend import IMAGE_TOKEN_ALLOWANCE, TOOL_USE_TOKEN_ALLOWANCE, prompt_upper_bound
from tests.conftest import ACME_KEY, BUDGET_KEY, RATE_KEY, USD_KEY
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway, settled_limits, sha
from tests.support.upstream import Behaviour, MockUpstream

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "Count to three."}], "max_tokens": 50}


def test_concurrent_requests_cannot_overrun_a_token_budget(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.delay_s = 0.05
    tenant = gateway.state.runtime.tenants["budgeted"]
    [before] = asyncio.run(gateway.state.store.state("budgeted", tenant.limits, time.time()))

    # aiohttp, not httpx, as the 500 connections' client: httpcore's pool walks every connection for every request
    # it frees (quadratic), and at 500 it held this process's CPU for seconds, starving the gateway's and the mock's
    # threads in it until the model's timeout ran out.
    async def scenario() -> list[tuple[int, str | None, dict[str, Any]]]:
        headers = {"authorization": f"Bearer {BUDGET_KEY}"}
        url = gateway.url + "/v1/chat/completions"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as client:

            async def post() -> tuple[int, str | None, dict[str, Any]]:
                async with client.post(url, json=BODY, headers=headers) as response:
                    return response.status, response.headers.get("retry-after"), await response.json()

            return await asyncio.gather(*(post() for _ in range(500)))

    responses = asyncio.run(scenario())
    statuses = [status for status, _, _ in responses]
    assert set(statuses) <= {200, 429}, set(statuses)
    assert statuses.count(200) > 0 and statuses.count(429) > 0
    for _, retry_after, denied in (r for r in responses if r[0] == 429):
        validate("ErrorResponse", denied)
        assert denied["error"]["code"] == "budget_exceeded"
        assert retry_after is not None and int(retry_after) >= 1
    seen_tokens = sum(body["usage"]["total_tokens"] for status, _, body in responses if status == 200)
    [budget] = settled_limits(gateway, "budgeted")
    assert budget.reserved == 0  # every reservation was settled
    assert budget.spent - before.spent == seen_tokens
    assert budget.spent <= 10_000
    assert len(upstream.received) == statuses.count(200)  # a denied request never reached the provider


def test_rate_limit_answers_429_with_retry_after(gateway: RunningGateway, upstream: MockUpstream) -> None:
    headers = {"authorization": f"Bearer {RATE_KEY}"}
    into_the_minute = time.time() % 60
    if into_the_minute > 50:  # rpm counts calendar minutes: start in a fresh one, not across its end
        time.sleep(60.1 - into_the_minute)
    statuses = [
        httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers=headers).status_code for _ in range(3)
    ]
    denied = httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers=headers)
    assert statuses == [200, 200, 200]
    assert denied.status_code == 429
    validate("ErrorResponse", denied.json())
    assert denied.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(denied.headers["retry-after"]) <= 60
    assert len(upstream.received) == 3
    # what OpenAI's 429s carry: the wait to the millisecond (which the OpenAI SDK reads first) and the limit's state
    wait_ms = int(denied.headers["retry-after-ms"])
    assert math.ceil(wait_ms / 1000) == int(denied.headers["retry-after"])
    assert openai.OpenAI(api_key="unused")._parse_retry_after_header(denied.headers) == wait_ms / 1000
    limit, remaining = denied.headers["x-ratelimit-limit-requests"], denied.headers["x-ratelimit-remaining-requests"]
    assert (limit, remaining) == ("3", "0")
    assert reset_seconds(denied.headers["x-ratelimit-reset-requests"]) == wait_ms / 1000  # the minute's end
    assert "x-ratelimit-limit-tokens" not in denied.headers


def reset_seconds(value: str) -> float:
    """OpenAI's x-ratelimit-reset-* ("20ms", "1.5s", "6m0s", "1h2m3s") in seconds."""
    if value.endswith("ms"):
        return int(value[:-2]) / 1000
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s", value)
    assert parts is not None, value
    hours, minutes, seconds = parts.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def test_usd_budget_reserves_the_priced_worst_case(gateway: RunningGateway, upstream: MockUpstream) -> None:
    headers = {"authorization": f"Bearer {USD_KEY}"}
    # gpt-4o-mini: $0.60 per 1M output tokens; 1000 output tokens alone cost $0.0006 > $0.0005
    too_big = httpx.post(gateway.url + "/v1/chat/completions", json={**BODY, "max_tokens": 1000}, headers=headers)
    assert too_big.status_code == 429 and too_big.json()["error"]["code"] == "budget_exceeded"
    assert not [name for name in too_big.headers if name.startswith("x-ratelimit-")]  # OpenAI's have no dollars
    fits = httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers=headers)
    assert fits.status_code == 200
    assert upstream.received[-1].body["max_tokens"] == 50
    [budget] = settled_limits(gateway, "pennywise")
    assert budget.reserved == 0
    assert abs(budget.spent - (11 * 0.15 + 7 * 0.60) / 1_000_000) < 1e-12


def test_the_worst_case_counts_every_one_of_n_choices(gateway: RunningGateway, upstream: MockUpstream) -> None:
    """max_tokens bounds each choice: n of them may cost n times as much, and are reserved so."""
    headers = {"authorization": f"Bearer {USD_KEY}"}
    # 500 output tokens at $0.60 per 1M: $0.0003 fits the $0.0005 budget once, not twice
    two = httpx.post(gateway.url + "/v1/chat/completions", json={**BODY, "max_tokens": 500, "n": 2}, headers=headers)
    assert two.status_code == 429 and two.json()["error"]["code"] == "budget_exceeded"
    assert upstream.received == []
    one = httpx.post(gateway.url + "/v1/chat/completions", json={**BODY, "max_tokens": 500, "n": 1}, headers=headers)
    assert one.status_code == 200


def test_upstream_bounded_by_the_cap_when_the_client_gives_none(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": BODY["messages"]},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    assert upstream.received[-1].body["max_completion_tokens"] == 1000  # defaults.max_tokens_per_request


def test_failures_before_the_first_token_return_their_reservations(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    upstream.behaviour.status = 500
    upstream.behaviour.fail_every = 2  # every other request fails before its first byte
    tenant = gateway.state.runtime.tenants["budgeted"]
    [before] = asyncio.run(gateway.state.store.state("budgeted", tenant.limits, time.time()))

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            headers = {"authorization": f"Bearer {BUDGET_KEY}"}
            calls = [
                client.post(
                    "/v1/chat/completions", json={**BODY, "model": "coinflip", "stream": i % 2 == 0}, headers=headers
                )
                for i in range(40)
            ]
            return await asyncio.gather(*calls)

    responses = asyncio.run(scenario())
    statuses = [r.status_code for r in responses]
    assert statuses.count(502) >= 10 and statuses.count(200) >= 10, statuses
    seen = 0
    for response in responses:
        if response.status_code != 200:
            continue
        if response.headers["content-type"].startswith("text/event-stream"):
            seen += 18  # the stream's usage is not shown to this client, but the provider reported 18
        else:
            seen += response.json()["usage"]["total_tokens"]
    [after] = settled_limits(gateway, "budgeted")
    assert after.reserved == 0
    assert after.spent - before.spent == seen


UNREPORTED_CONFIG = """
events: {{sqlite_path: "{events}/usage.sqlite", spool_dir: "{events}/spool"}}
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-unreported"}}
  old-azure: {{type: azure, base_url: "{url}", api_version: "2024-06-01", api_key: "azure-unreported"}}
  anthropic: {{type: anthropic, base_url: "{url}", api_key: "sk-ant-unreported"}}
models:
  gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0}}
  gpt-retried: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 1}}
  gpt-short: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 0.5}}
  old-azure: {{deployments: [{{provider: old-azure, model: my-deployment}}], retries: 0}}
  claude: {{deployments: [{{provider: anthropic, model: claude-3-5-haiku-latest}}], retries: 0}}
tenants:
  metered:
    keys: [{{id: metered-1, sha256: "{key_sha}"}}]
    models: ["*"]
    budgets: [{{tokens: 1000000, per: day}}]
"""
METERED_KEY = "sk-test-metered-0001"


def test_usage_a_provider_never_reported_is_charged_as_the_worst_case_not_as_nothing(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    """A stream the client leaves before its usage chunk (or, with Anthropic, before its final usage), or an
    Azure API version that sends no usage in streams: the provider did the work, so the budget keeps the
    reservation (prompt bound + max_tokens), and the row's cost is NULL (unknown), not 0. So is a request the
    model's timeout cut while the provider was at work (a 504): the provider may have generated all of it. A
    stream that reports its usage is charged what it reported; a client that leaves while no attempt is at
    work owes nothing."""
    upstream.reset()
    config = UNREPORTED_CONFIG.format(url=upstream.url, key_sha=sha(METERED_KEY), events=tmp_path)
    gateway = RunningGateway(config).start()
    headers = {"authorization": f"Bearer {METERED_KEY}", "content-type": "application/json"}

    def spent() -> float:
        [budget] = settled_limits(gateway, "metered")
        assert budget.reserved == 0
        return budget.spent

    def body(model: str) -> bytes:
        return json.dumps({**BODY, "model": model, "stream": True}).encode()

    try:
        start = spent()
        reported = httpx.post(gateway.url + "/v1/chat/completions", content=body("gpt"), headers=headers)
        assert reported.status_code == 200 and "[DONE]" in reported.text
        after_reported = spent()
        unreported = httpx.post(gateway.url + "/v1/chat/completions", content=body("old-azure"), headers=headers)
        assert unreported.status_code == 200 and "[DONE]" in unreported.text
        assert "stream_options" not in upstream.received[-1].body  # this API version has no usage in streams
        after_unreported = spent()
        upstream.behaviour = Behaviour(chunks=40, chunk_interval_s=0.05)
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", content=body("gpt"), headers=headers) as left:
            next(left.iter_bytes())  # the first chunk, then the client goes
            left_id = left.headers["x-request-id"]
        after_left = spent()
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", content=body("claude"), headers=headers) as cut:
            next(cut.iter_bytes())  # Anthropic told the input tokens (and 1 output) in message_start, no more
        after_claude = spent()
        upstream.behaviour = Behaviour(status=500, retry_after="3")
        with pytest.raises(httpx.ReadTimeout):  # the client gives up during the backoff after a 500
            httpx.post(gateway.url + "/v1/chat/completions", content=body("gpt-retried"), headers=headers, timeout=1)
        after_backoff = spent()
        upstream.behaviour = Behaviour(delay_s=2)
        timed_out = httpx.post(gateway.url + "/v1/chat/completions", content=body("gpt-short"), headers=headers)
        assert timed_out.status_code == 504, timed_out.text
        after_timeout = spent()
    finally:
        gateway.stop()
    with sqlite3.connect(tmp_path / "usage.sqlite") as db:
        rows = dict(db.execute("SELECT request_id, cost_usd FROM usage_events").fetchall())
    assert rows[reported.headers["x-request-id"]] > 0
    assert rows[unreported.headers["x-request-id"]] is None and rows[left_id] is None
    assert rows[timed_out.headers["x-request-id"]] is None
    assert after_reported - start == 11 + 7  # what the provider reported
    assert after_unreported - after_reported == len(body("old-azure")) + BODY["max_tokens"]
    assert after_left - after_unreported == len(body("gpt")) + BODY["max_tokens"]
    assert after_claude - after_left == len(body("claude")) + BODY["max_tokens"]  # partial usage: the worst case
    assert after_backoff == after_claude  # the one attempt failed: nothing was at work when the client left
    assert after_timeout - after_backoff == len(body("gpt-short")) + BODY["max_tokens"]


@pytest.mark.parametrize(
    ("extra", "allowance"),
    [
        ({}, 0),
        ({"response_format": {"type": "text"}}, 0),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, TOOL_USE_TOKEN_ALLOWANCE),
        ({"response_format": {"type": "json_object"}}, TOOL_USE_TOKEN_ALLOWANCE),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ]
            },
            IMAGE_TOKEN_ALLOWANCE,
        ),
    ],
)
def test_the_prompt_bound_covers_what_the_body_does_not_hold(extra: dict[str, object], allowance: int) -> None:
    """A token is at least a byte of the body; images and a provider's tool-use prompt are not in the body."""
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    body = json.dumps(payload).encode()
    assert prompt_upper_bound(body, payload) == len(body) + allowance


NEVER_FITS_CONFIG = """
providers: {{demo: {{type: mock}}}}
models:
  demo: {{deployments: [{{provider: demo, model: mock-1}}]}}
  demo-embed: {{deployments: [{{provider: demo, model: mock-embedding}}]}}
pricing: {{demo: {{input: 1.0, output: 1.0}}}}
defaults: {{max_tokens_per_request: 4096}}
tenants:
  tpm: {{keys: [{{id: t, sha256: "{tpm}"}}], models: ["*"], rate_limits: {{tpm: 2000}}}}
  daily: {{keys: [{{id: d, sha256: "{daily}"}}], models: ["*"], budgets: [{{tokens: 2000, per: day}}]}}
  cents: {{keys: [{{id: c, sha256: "{cents}"}}], models: [demo], budgets: [{{usd: 0.001, per: day}}]}}
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("key", "path", "body", "code", "kind", "said"),
    [
        ("tpm", "chat/completions", {"model": "demo", "messages": HI}, "rate_limit_exceeded", "tokens", "4,096 of out"),
        (
            "daily",
            "chat/completions",
            {"model": "demo", "messages": HI},
            "budget_exceeded",
            "insufficient_quota",
            "2,000",
        ),
        (
            "cents",
            "chat/completions",
            {"model": "demo", "messages": HI},
            "budget_exceeded",
            "insufficient_quota",
            "$0.001",
        ),
        (
            "daily",
            "embeddings",
            {"model": "demo-embed", "input": "x" * 2000},
            "budget_exceeded",
            "insufficient_quota",
            "less",
        ),
    ],
)
def test_a_request_larger_than_the_limit_itself_is_not_told_to_retry(
    key: str, path: str, body: dict[str, object], code: str, kind: str, said: str
) -> None:
    """Its worst case (no max_tokens: the key's cap of 4,096 output tokens) is above the limit itself, so no wait
    can let it in: no Retry-After for a client to wait out (the SDKs would, twice), x-should-retry: false (which
    they obey), and a message with the numbers to lower. With max_tokens set, the same request passes."""
    keys = {name: f"sk-test-never-fits-{name}" for name in ("tpm", "daily", "cents")}
    gateway = RunningGateway(NEVER_FITS_CONFIG.format(**{name: sha(k) for name, k in keys.items()})).start()
    headers = {"authorization": f"Bearer {keys[key]}"}
    try:
        refused = httpx.post(f"{gateway.url}/v1/{path}", json=body, headers=headers)
        bounded = httpx.post(f"{gateway.url}/v1/{path}", json={**body, "max_tokens": 100}, headers=headers)
    finally:
        gateway.stop()
    assert refused.status_code == 429
    validate("ErrorResponse", refused.json())
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == (code, kind)
    assert "retry-after" not in refused.headers and refused.headers["x-should-retry"] == "false"
    assert said in error["message"], error["message"]
    if path == "chat/completions":
        assert bounded.status_code == 200, bounded.text


HELD_CONFIG = """
providers: {{up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-held"}}}}
models: {{gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}}}
tenants:
  daily: {{keys: [{{id: d, sha256: "{key_sha}"}}], models: ["*"], budgets: [{{tokens: 1000, per: day}}]}}
"""
HELD_KEY = "sk-test-held-0001"


def test_a_refusal_for_room_that_requests_in_flight_hold_says_retry_in_a_second(upstream: MockUpstream) -> None:
    """Three requests at once against a day's 1,000 tokens, each reserving ~470 (its worst case): the third is
    refused while the first two are in flight, told to retry in 1 s (they spend 18 tokens each), not at midnight;
    and it is admitted once they are done. Only a budget whose spend leaves no room waits for its window's end."""
    upstream.reset()
    upstream.behaviour.delay_s = 0.5
    gateway = RunningGateway(HELD_CONFIG.format(url=upstream.url, key_sha=sha(HELD_KEY))).start()
    body = {**BODY, "max_tokens": 400}

    async def at_once(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            headers = {"authorization": f"Bearer {HELD_KEY}"}
            return await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body, headers=headers) for _ in range(n))
            )

    try:
        first = asyncio.run(at_once(3))
        settled_limits(gateway, "daily")
        again = asyncio.run(at_once(1))
        upstream.behaviour = Behaviour(usage={"prompt_tokens": 900, "completion_tokens": 0, "total_tokens": 900})
        spender = asyncio.run(at_once(1))
        [before] = settled_limits(gateway, "daily")
        midnight = 86400 - time.time() % 86400
        spent_out = asyncio.run(at_once(1))
    finally:
        gateway.stop()
    statuses = sorted(r.status_code for r in first)
    assert statuses == [200, 200, 429]
    [held] = [r for r in first if r.status_code == 429]
    assert (held.headers["retry-after"], held.headers["retry-after-ms"]) == ("1", "1000"), held.headers
    assert held.headers["x-ratelimit-limit-tokens"] == "1000"
    assert 0 <= int(held.headers["x-ratelimit-remaining-tokens"]) < 1000 // 2  # two worst cases are held
    assert "held by requests in flight" in held.json()["error"]["message"]
    assert [again[0].status_code, spender[0].status_code] == [200, 200]
    [refused] = spent_out
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert abs(int(refused.headers["retry-after"]) - midnight) <= 2
    assert abs(int(refused.headers["retry-after-ms"]) / 1000 - midnight) <= 2
    assert refused.headers["x-ratelimit-remaining-tokens"] == f"{1000 - before.spent:.0f}"
    assert reset_seconds(refused.headers["x-ratelimit-reset-tokens"]) == int(refused.headers["retry-after-ms"]) / 1000
    assert "resets in" in refused.json()["error"]["message"]


PRICED_CONFIG = """
events: {{sqlite_path: "{events}/usage.sqlite", spool_dir: "{events}/spool"}}
providers:
  anthropic: {{type: anthropic, base_url: "{url}", api_key: "sk-ant-priced"}}
  openai: {{type: openai, base_url: "{url}/v1", api_key: "sk-openai-priced"}}
models:
  sonnet: {{deployments: [{{provider: anthropic, model: claude-sonnet-4-5}}], retries: 0}}
  audio: {{deployments: [{{provider: openai, model: gpt-audio}}], retries: 0}}
pricing:
  gpt-audio: {{input: 2.5, output: 10, audio_input: 32, audio_output: 64}}
tenants:
  payer: {{keys: [{{id: p, sha256: "{key_sha}"}}], models: ["*"], budgets: [{{usd: 5, per: month}}]}}
"""
PRICED_KEY = "sk-test-payer-0001"
# Anthropic's usage: input_tokens leaves out what was read from the cache and what was written to it, and
# cache_creation splits the writes by TTL (5 minutes: 1.25x the input price, an hour: 2x; reads 0.1x)
CACHED_USAGE = {
    "input_tokens": 100,
    "cache_read_input_tokens": 1_000,
    "cache_creation_input_tokens": 3_000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
    "output_tokens": 50,
}
# OpenAI's: audio tokens are counted within prompt_tokens and completion_tokens, and billed above text
AUDIO_USAGE = {
    "prompt_tokens": 1_000,
    "completion_tokens": 500,
    "total_tokens": 1_500,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 800},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400},
}
PRICED_CASES = {
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 5-minute write, $6 hour write, $15 output per 1M
    "sonnet": (CACHED_USAGE, (100 * 3.0 + 1_000 * 0.30 + 1_000 * 3.75 + 2_000 * 6.0 + 50 * 15.0) / 1e6, 4_100),
    # gpt-audio as priced in the config: text $2.50 and $10, audio $32 and $64 per 1M
    "audio": (AUDIO_USAGE, (200 * 2.5 + 800 * 32.0 + 100 * 10.0 + 400 * 64.0) / 1e6, 1_000),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", sorted(PRICED_CASES))
def test_each_kind_of_token_is_billed_at_its_price_in_the_event_and_the_budget(
    upstream: MockUpstream, tmp_path: Path, model: str, stream: bool
) -> None:
    """Anthropic bills a write cached for an hour at twice the input price (it was billed at the 5-minute
    write's 1.25x); OpenAI bills audio tokens at their own prices (which `pricing:` could not say). The event's
    cost and the USD budget's charge are that, and the same amount in both."""
    reported, expected, prompt_tokens = PRICED_CASES[model]
    upstream.reset()
    upstream.behaviour = Behaviour(usage=reported)
    config = PRICED_CONFIG.format(url=upstream.url, key_sha=sha(PRICED_KEY), events=tmp_path)
    gateway = RunningGateway(config).start()
    body = {**BODY, "model": model, "stream": stream, "stream_options": {"include_usage": True}}
    if not stream:
        del body["stream_options"]
    try:
        answer = httpx.post(
            gateway.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {PRICED_KEY}"}
        )
        assert answer.status_code == 200, answer.text
        [budget] = settled_limits(gateway, "payer")
    finally:
        gateway.stop()
    if stream:
        [usage_line] = [line for line in answer.text.splitlines() if '"usage":{' in line]
        usage = json.loads(usage_line.removeprefix("data: "))["usage"]
    else:
        usage = answer.json()["usage"]
    assert usage["prompt_tokens"] == prompt_tokens
    if model == "audio":
        assert usage == AUDIO_USAGE  # OpenAI's usage passes on as it came
    with sqlite3.connect(tmp_path / "usage.sqlite") as db:
        [cost] = db.execute("SELECT cost_usd FROM usage_events").fetchone()
    assert cost == pytest.approx(expected, abs=1e-12)
    assert budget.spent == pytest.approx(expected, abs=1e-12)


OUTPUT_LIMIT_CONFIG = """
providers:
  up-openai: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-output-limit"}}
  up-anthropic: {{type: anthropic, base_url: "{url}", api_key: "sk-ant-output-limit"}}
models:
  claude: {{deployments: [{{provider: up-anthropic, model: claude-3-haiku-20240307, max_output_tokens: 4096}}]}}
  gpt: {{deployments: [{{provider: up-openai, model: gpt-4o-mini, max_output_tokens: 4096}}]}}
  mixed:
    deployments: [{{provider: up-anthropic, model: claude-3-haiku-20240307, max_output_tokens: 4096}}]
    fallbacks: [unlimited]
  unlimited: {{deployments: [{{provider: up-openai, model: gpt-4o-mini}}]}}
defaults: {{max_tokens_per_request: 32000}}
tenants:
  roomy: {{keys: [{{id: r, sha256: "{roomy}"}}], models: ["*"], rate_limits: {{tpm: 10000}}}}
  frugal: {{keys: [{{id: f, sha256: "{frugal}"}}], models: ["*"], max_tokens_per_request: 100}}
"""
ROOMY_KEY, FRUGAL_KEY = "sk-test-output-roomy", "sk-test-output-frugal"


@pytest.mark.parametrize(("model", "field"), [("claude", "max_tokens"), ("gpt", "max_completion_tokens")])
def test_the_default_output_limit_sent_is_within_the_deployments_own(
    upstream: MockUpstream, model: str, field: str
) -> None:
    """A key's cap of 32,000 output tokens is above what claude-3-haiku can write (4,096): sent as the default
    max_tokens, Anthropic refuses every request that gives none. The default sent is the smaller of the key's cap
    and the deployment's `max_output_tokens`, and so is the output reserved against the key's tpm (10,000: the
    cap alone could never fit). A request that asks for more itself is passed on as it asked."""
    upstream.reset()
    config = OUTPUT_LIMIT_CONFIG.format(url=upstream.url, roomy=sha(ROOMY_KEY), frugal=sha(FRUGAL_KEY))
    gateway = RunningGateway(config).start()

    def ask(key: str, **extra: object) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})

    try:
        roomy = ask(ROOMY_KEY)
        sent_roomy = upstream.received[-1].body
        frugal = ask(FRUGAL_KEY)
        sent_frugal = upstream.received[-1].body
        explicit = ask(ROOMY_KEY, max_tokens=8000)
        sent_explicit = upstream.received[-1].body
    finally:
        gateway.stop()
    assert roomy.status_code == 200, roomy.text
    assert sent_roomy[field] == 4096
    assert frugal.status_code == 200, frugal.text
    assert sent_frugal[field] == 100  # the key's own cap, when it is the smaller
    assert explicit.status_code == 200, explicit.text
    assert sent_explicit["max_tokens"] == 8000


def test_the_output_reserved_is_the_largest_any_reachable_deployment_may_write() -> None:
    """A fallback with no limit of its own may write up to the key's cap: the reservation must cover it."""
    config = OUTPUT_LIMIT_CONFIG.format(url="http://127.0.0.1:9", roomy=sha(ROOMY_KEY), frugal=sha(FRUGAL_KEY))
    limits = build_runtime(load_text(config)).output_limits
    assert (limits["claude"], limits["gpt"], limits["mixed"], limits["unlimited"]) == (4096, 4096, None, None)


def test_budgets_of_one_unit_and_window_stay_apart_however_close_their_ceilings() -> None:
    """Two budgets of one unit and window are named by their ceilings; a name that rounded the ceiling (to six
    digits) made two different budgets one, and the one kept was the first, not the tighter."""
    config = f"""
providers: {{demo: {{type: mock}}}}
models: {{demo: {{deployments: [{{provider: demo, model: m}}]}}}}
pricing: {{demo: {{input: 1.0, output: 1.0}}}}
tenants:
  t:
    keys: [{{id: k, sha256: "{sha("sk-test-close-ceilings")}"}}]
    models: ["*"]
    budgets: [{{usd: 1000000.5, per: month}}, {{usd: 1000000.25, per: month}}, {{usd: 0.5, per: day}}]
"""
    limits = build_runtime(load_text(config)).tenants["t"].limits
    assert {(spec.unit, spec.window, spec.limit) for spec in limits} == {
        ("usd", "month", 1000000.5),
        ("usd", "month", 1000000.25),
        ("usd", "day", 0.5),
    }
    assert len({spec.name for spec in limits}) == 3
    assert "usd_per_day" in {spec.name for spec in limits}
