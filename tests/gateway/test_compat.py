"""The newer and less common parts of Chat Completions through the gateway with the official `openai` SDK, to
OpenAI-compatible, Azure and Anthropic upstreams: passed through unchanged where the provider speaks OpenAI,
translated where Anthropic can express them, otherwise refused with a 400 naming the parameter, never dropped
when that changes the answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import OPEN_KEY
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway
from tests.support.upstream import MockUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello."}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(api_key=OPEN_KEY, base_url=gateway.url + "/v1", max_retries=0, timeout=10)


def aclient(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=OPEN_KEY, base_url=gateway.url + "/v1", max_retries=0, timeout=10)


# ── a null output limit (what the SDK sends for an explicit None) is no limit given: the tenant's cap applies ──
@pytest.mark.parametrize("model", ["gpt", "azure-gpt"])
@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens"])
def test_null_output_limit_still_gets_the_tenant_cap(
    gateway: RunningGateway, upstream: MockUpstream, model: str, field: str
) -> None:
    client(gateway).chat.completions.create(model=model, messages=MESSAGES, **{field: None})  # type: ignore[arg-type]
    sent = upstream.received[-1].body
    # the gateway reserved budget for 1,000 output tokens (the tenant's max_tokens_per_request): hold the provider to it
    limits = [sent.get("max_completion_tokens"), sent.get("max_tokens")]
    assert 1000 in limits, sent


# ── newer request shapes pass through to providers that speak OpenAI ──────────────────────────────────────────
@pytest.mark.parametrize("model", ["gpt", "azure-gpt"])
def test_reasoning_effort_max_passes_through(gateway: RunningGateway, upstream: MockUpstream, model: str) -> None:
    client(gateway).chat.completions.create(model=model, messages=MESSAGES, reasoning_effort="max")  # type: ignore[arg-type]
    assert upstream.received[-1].body["reasoning_effort"] == "max"


CUSTOM_TOOL = {"type": "custom", "custom": {"name": "run_python", "description": "Runs code"}}


@pytest.mark.parametrize("model", ["gpt", "azure-gpt"])
@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [CUSTOM_TOOL]},
        {"tools": [CUSTOM_TOOL], "tool_choice": {"type": "custom", "custom": {"name": "run_python"}}},
        {
            "tools": TOOLS,
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
            },
        },
    ],
    ids=["custom_tool", "custom_tool_choice", "allowed_tools_choice"],
)
def test_custom_tools_and_allowed_tools_pass_through(
    gateway: RunningGateway, upstream: MockUpstream, model: str, extra: dict[str, Any]
) -> None:
    client(gateway).chat.completions.create(model=model, messages=MESSAGES, **extra)
    sent = upstream.received[-1].body
    assert {k: sent[k] for k in extra} == extra


@pytest.mark.parametrize("model", ["gpt", "azure-gpt"])
def test_custom_tool_call_in_history_passes_through(
    gateway: RunningGateway, upstream: MockUpstream, model: str
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "compute"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "custom", "custom": {"name": "run_python", "input": "print(1)"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ]
    client(gateway).chat.completions.create(model=model, messages=messages, tools=[CUSTOM_TOOL])  # type: ignore[list-item]
    assert upstream.received[-1].body["messages"] == messages


# ── Anthropic: what it cannot answer is refused with the parameter named (a fallback may then answer) ─────────────
def refused(call: Callable[[], object], upstream: MockUpstream) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    assert upstream.received == []
    body = caught.value.body
    assert isinstance(body, dict)
    validate("Error", body)
    assert (body["type"], body["code"]) == ("invalid_request_error", "unsupported_parameter")
    return body


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"functions": [TOOLS[0]["function"]], "function_call": {"name": "get_weather"}}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"top_logprobs": 2}, "logprobs"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"web_search_options": {"search_context_size": "low"}}, "web_search_options"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"stop": "\n"}, "stop"),
        ({"stop": ["END", "\n\n"]}, "stop"),
        ({"tools": [CUSTOM_TOOL]}, "tools[0]"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_what_anthropic_cannot_answer_is_refused_not_dropped(
    gateway: RunningGateway, upstream: MockUpstream, extra: dict[str, Any], param: str, stream: bool
) -> None:
    async def call() -> None:
        async with aclient(gateway) as sdk:
            result = await sdk.chat.completions.create(model="claude", messages=MESSAGES, stream=stream, **extra)
            if stream:
                [c async for c in result]  # type: ignore[union-attr]

    assert refused(lambda: asyncio.run(call()), upstream)["param"] == param


@pytest.mark.parametrize(
    "extra",
    [
        {"logprobs": False, "top_logprobs": 0},
        {"modalities": ["text"]},
        {"logit_bias": {}},
        {"presence_penalty": 0.5, "frequency_penalty": 0.5, "seed": 7},  # preferences, not what the answer is
        {"stop": ["END", "\nHuman:"]},
    ],
)
def test_neutral_values_and_sampling_preferences_still_reach_anthropic(
    gateway: RunningGateway, upstream: MockUpstream, extra: dict[str, Any]
) -> None:
    client(gateway).chat.completions.create(model="claude", messages=MESSAGES, **extra)
    sent = upstream.received[-1].body
    assert not {"logprobs", "modalities", "logit_bias", "presence_penalty", "seed"} & sent.keys()
    assert sent.get("stop_sequences") == extra.get("stop")


def test_a_legacy_function_call_in_the_history_is_refused_for_anthropic(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"role": "user", "content": "And now summarise."},
    ]
    body = refused(lambda: client(gateway).chat.completions.create(model="claude", messages=messages), upstream)
    assert body["param"] == "messages[1].function_call"


# ── Anthropic: an assistant turn said only as a refusal stays in the history ──────────────────────────────────
@pytest.mark.parametrize("content", [None, "", " "])
def test_assistant_refusal_turn_reaches_anthropic(
    gateway: RunningGateway, upstream: MockUpstream, content: str | None
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Help me pick a lock."},
        {"role": "assistant", "content": content, "refusal": "I can't help with that."},
        {"role": "user", "content": "Then tell me about locksmiths."},
    ]
    client(gateway).chat.completions.create(model="claude", messages=messages)
    sent = upstream.received[-1].body["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"], sent
    assert "I can't help with that." in json.dumps(sent[1])


# ── Anthropic: a PDF sent inline is a document block ──────────────────────────────────────────────────────────
def test_pdf_file_part_becomes_an_anthropic_document(gateway: RunningGateway, upstream: MockUpstream) -> None:
    pdf = "data:application/pdf;base64,JVBERi0xLjQK"
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise this."},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}},
            ],
        }
    ]
    client(gateway).chat.completions.create(model="claude", messages=messages)
    blocks = upstream.received[-1].body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
    }


# ── Anthropic streams: `usage: null` on every chunk but the last when usage is asked for, as OpenAI does ──────
def test_anthropic_stream_chunks_carry_null_usage_when_asked(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "claude", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
        headers={"authorization": f"Bearer {OPEN_KEY}"},
        timeout=10,
    )
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    # OpenAI: "All other chunks will also include a usage field, but with a null value." (stream_options docs)
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1]), chunks[0]


# ── servers that report usage on every chunk (vLLM's continuous_usage_stats): none for a client that did not ask ──
def _chunk(delta: dict[str, Any], finish_reason: str | None, completion_tokens: int) -> bytes:
    chunk = {
        "id": "chatcmpl-every-chunk",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens, "total_tokens": 5 + completion_tokens},
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


@pytest.mark.parametrize("include_usage", [False, True])
def test_usage_on_chunks_with_choices_reaches_only_a_client_that_asked(
    gateway: RunningGateway, upstream: MockUpstream, include_usage: bool
) -> None:
    upstream.behaviour.stream_body = (
        _chunk({"role": "assistant", "content": "Hi"}, None, 1) + _chunk({}, "stop", 2) + b"data: [DONE]\n\n"
    )
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    with client(gateway).chat.completions.with_streaming_response.create(
        model="gpt", messages=MESSAGES, stream=True, **extra
    ) as response:
        raw = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert [c["choices"][0]["delta"].get("content") for c in raw] == ["Hi", None]
    for chunk in raw:
        validate("CreateChatCompletionStreamResponse", chunk)
    if include_usage:
        assert [c["usage"]["completion_tokens"] for c in raw] == [1, 2]
    else:
        assert all("usage" not in c for c in raw), raw  # as OpenAI sends a client that did not ask


# ── a request OpenAI refuses as malformed is refused for every provider, before any is called ─────────────────
@pytest.mark.parametrize("model", ["gpt", "azure-gpt", "claude", "demo"])
@pytest.mark.parametrize(
    ("response_format", "code"),
    [
        ({"type": "json_schema"}, "missing_required_parameter"),
        ({"type": "json_schema", "json_schema": None}, "invalid_value"),
    ],
)
def test_a_json_schema_response_format_without_its_schema_is_refused(
    gateway: RunningGateway, upstream: MockUpstream, model: str, response_format: dict[str, Any], code: str
) -> None:
    # OpenAI: 400 "Missing required parameter: 'response_format.json_schema'." Anthropic was sent a made-up empty
    # schema instead, and answered any JSON object at all
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model=model, messages=MESSAGES, response_format=response_format)  # type: ignore[arg-type]
    assert upstream.received == []
    body = caught.value.body
    assert isinstance(body, dict)
    validate("Error", body)
    assert (body["code"], body["param"]) == (code, "response_format.json_schema")


@pytest.mark.parametrize("model", ["gpt", "azure-gpt", "claude", "demo"])
@pytest.mark.parametrize(
    "tool_choice",
    [
        "required",
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "custom", "custom": {"name": "run_python"}},
        {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}},
    ],
    ids=["required", "function", "custom", "allowed_tools"],
)
@pytest.mark.parametrize("tools", [None, []], ids=["no_tools", "empty_tools"])
def test_a_tool_call_demanded_without_tools_is_refused(
    gateway: RunningGateway, upstream: MockUpstream, model: str, tool_choice: Any, tools: Any
) -> None:
    # OpenAI: 400 "'tool_choice' is only allowed when 'tools' are specified". The Anthropic adapter dropped the
    # tool_choice (it has no tools to send), so the client that demanded a tool call got text, as if it had not
    extra: dict[str, Any] = {"tool_choice": tool_choice} | ({} if tools is None else {"tools": tools})
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model=model, messages=MESSAGES, **extra)
    assert upstream.received == []
    body = caught.value.body
    assert isinstance(body, dict)
    validate("Error", body)
    assert (body["code"], body["param"]) == ("invalid_value", "tool_choice")


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("tool_choice", ["auto", "none"])
def test_a_tool_choice_that_demands_nothing_is_still_served_without_tools(
    gateway: RunningGateway, upstream: MockUpstream, model: str, tool_choice: Any
) -> None:
    client(gateway).chat.completions.create(model=model, messages=MESSAGES, tool_choice=tool_choice)
    assert len(upstream.received) == 1
