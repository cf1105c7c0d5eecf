"""Tool calls end to end through the gateway, read by the official `openai` SDK (its stream helper rebuilds the
calls from the deltas): OpenAI passed through, Anthropic translated both ways, PII put back into arguments."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import ACME_KEY, OPEN_KEY
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway
from tests.support.upstream import MockUpstream

EMAIL = "jane.doe@example.com"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time", "ping")
]
# what the model calls: a city with multi-byte characters (2, 3 and 4 bytes in UTF-8), then a call without arguments
CALLS = [
    ("toolu_01A", "get_weather", '{"city": "Zürich — 東京 🌧"}'),
    ("toolu_01B", "get_time", '{"city": "Paris"}'),
    ("toolu_01C", "ping", "{}"),
]
PREFACE = "Let me check. "


def client(gateway: RunningGateway, key: str = OPEN_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0, timeout=10)


def pieces(text: str) -> list[str]:
    """`text` cut into pieces of one, two and three characters in turn."""
    cut, start, size = [], 0, 1
    while start < len(text):
        cut.append(text[start : start + size])
        start, size = start + size, size % 3 + 1
    return cut


def anthropic_event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def anthropic_stream(calls: list[tuple[str, str, str]], preface: str = PREFACE) -> bytes:
    usage = {"input_tokens": 10, "output_tokens": 1}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    frames = [anthropic_event({"type": "message_start", "message": message})]
    index = 0
    if preface:
        frames.append(
            anthropic_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        )
        frames.append(
            anthropic_event(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": preface}}
            )
        )
        frames.append(anthropic_event({"type": "content_block_stop", "index": 0}))
        index = 1
    for call_id, name, arguments in calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        frames.append(anthropic_event({"type": "content_block_start", "index": index, "content_block": block}))
        for piece in [""] + (pieces(arguments) if arguments != "{}" else []):
            delta = {"type": "input_json_delta", "partial_json": piece}
            frames.append(anthropic_event({"type": "content_block_delta", "index": index, "delta": delta}))
        frames.append(anthropic_event({"type": "content_block_stop", "index": index}))
        index += 1
    frames.append(
        anthropic_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 30},
            }
        )
    )
    frames.append(anthropic_event({"type": "message_stop"}))
    return b"".join(frames)


def anthropic_message(calls: list[tuple[str, str, str]], preface: str = PREFACE) -> bytes:
    content: list[Any] = [{"type": "text", "text": preface}] if preface else []
    content += [{"type": "tool_use", "id": i, "name": n, "input": json.loads(a)} for i, n, a in calls]
    return json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": content,
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 30},
        }
    ).encode()


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def openai_stream(calls: list[tuple[str, str, str]], preface: str = PREFACE) -> bytes:
    frames = [openai_chunk({"role": "assistant", "content": "" if preface else None})]  # as OpenAI streams
    frames += [openai_chunk({"content": piece}) for piece in pieces(preface)]
    for k, (call_id, name, arguments) in enumerate(calls):
        head = {"index": k, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        frames.append(openai_chunk({"tool_calls": [head]}))
        frames += [
            openai_chunk({"tool_calls": [{"index": k, "function": {"arguments": p}}]}) for p in pieces(arguments)
        ]
    frames.append(openai_chunk({}, "tool_calls"))
    return b"".join(frames) + b"data: [DONE]\n\n"


def streamed_completion(sdk: openai.OpenAI, model: str, **extra: Any) -> Any:
    with sdk.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, **extra
    ) as stream:
        for event in stream:
            if event.type == "chunk":
                validate("CreateChatCompletionStreamResponse", event.chunk.model_dump(exclude_unset=True))
        return stream.get_final_completion()


def read_calls(message: Any) -> list[tuple[str, str, str, str]]:
    return [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls or []]


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_parallel_tool_calls_after_text_reach_the_sdk_whole(
    gateway: RunningGateway, upstream: MockUpstream, model: str, stream: bool
) -> None:
    if model == "claude":
        upstream.behaviour.stream_body = anthropic_stream(CALLS)
        upstream.behaviour.json_body = None if stream else anthropic_message(CALLS)
    elif stream:
        upstream.behaviour.stream_body = openai_stream(CALLS)
    else:
        calls = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in CALLS]
        upstream.behaviour.json_body = json.dumps(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": PREFACE, "refusal": None, "tool_calls": calls},
                        "logprobs": None,
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            }
        ).encode()
    sdk = client(gateway)
    if stream:
        completion = streamed_completion(sdk, model)
    else:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS
        )
        validate("CreateChatCompletionResponse", json.loads(raw.text))
        completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == PREFACE
    got = read_calls(choice.message)
    if model == "claude" and not stream:  # Anthropic sends the input as an object, written back as compact JSON
        got = [(i, t, n, json.dumps(json.loads(a), ensure_ascii=False)) for i, t, n, a in got]
        assert got == [(i, "function", n, json.dumps(json.loads(a), ensure_ascii=False)) for i, n, a in CALLS]
    else:
        assert got == [(i, "function", n, a) for i, n, a in CALLS]


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_placeholders_cut_across_argument_deltas_are_put_back(
    gateway: RunningGateway, upstream: MockUpstream, model: str
) -> None:
    """The model writes the redacted address into two parallel calls' arguments, in pieces of 1-3 characters: the
    SDK rebuilds both calls with the address itself."""
    calls = [
        ("toolu_01A", "get_weather", '{"to": "[EMAIL_1]", "n": [1]}'),
        ("toolu_01B", "get_time", '{"cc":"[EMAIL_1]"}'),
    ]
    upstream.behaviour.stream_body = anthropic_stream(calls) if model == "claude" else openai_stream(calls)
    sdk = client(gateway, ACME_KEY)
    with sdk.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": f"Mail {EMAIL}"}], tools=TOOLS
    ) as stream:
        completion = stream.get_final_completion()
    assert "[EMAIL_1]" in json.dumps(upstream.received[-1].body)
    assert read_calls(completion.choices[0].message) == [
        (i, "function", n, a.replace("[EMAIL_1]", EMAIL)) for i, n, a in calls
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_a_tool_round_trip_becomes_tool_use_and_tool_result_blocks(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    assistant = {
        "role": "assistant",
        "content": PREFACE,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in CALLS],
    }
    results = [{"role": "tool", "tool_call_id": i, "content": f"result {k}"} for k, (i, _, _) in enumerate(CALLS)]
    messages: list[Any] = [{"role": "user", "content": "Weather?"}, assistant, *results]
    client(gateway).chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    sent = upstream.received[-1].body["messages"]
    assert sent == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": PREFACE}]
            + [{"type": "tool_use", "id": i, "name": n, "input": json.loads(a)} for i, n, a in CALLS],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": i, "content": f"result {k}"} for k, (i, _, _) in enumerate(CALLS)
            ],
        },
    ]


NAMED = {"type": "function", "function": {"name": "get_time"}}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("none", None, {"type": "none"}),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        (NAMED, None, {"type": "tool", "name": "get_time"}),
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (NAMED, False, {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_tool_choice_and_parallel_tool_calls_reach_the_provider(
    gateway: RunningGateway, upstream: MockUpstream, model: str, choice: Any, parallel: Any, expected: Any
) -> None:
    extra: dict[str, Any] = {}
    if choice is not None:
        extra["tool_choice"] = choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    client(gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, **extra
    )
    sent = upstream.received[-1].body
    if model == "gpt":
        assert sent.get("tool_choice") == choice and sent.get("parallel_tool_calls") == parallel
    else:
        assert sent.get("tool_choice") == expected
        assert [tool["name"] for tool in sent["tools"]] == ["get_weather", "get_time", "ping"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_mock_provider_makes_one_call_when_parallel_calls_are_off(gateway: RunningGateway, stream: bool) -> None:
    """As OpenAI: `parallel_tool_calls: false` means at most one call; the mock called every tool on "required"."""
    sdk = client(gateway)
    extra: dict[str, Any] = {"tool_choice": "required", "parallel_tool_calls": False}
    if stream:
        completion = streamed_completion(sdk, "demo", **extra)
    else:
        completion = sdk.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, **extra
        )
    assert [call[2] for call in read_calls(completion.choices[0].message)] == ["get_weather"]
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_answer_of_tool_calls_only_has_no_content(
    gateway: RunningGateway, upstream: MockUpstream, model: str, stream: bool
) -> None:
    """As OpenAI: content is null when the model only calls tools, streamed (the first delta says
    `"content": null`) as in JSON; the Anthropic stream's role chunk said "" (and the SDK rebuilt content "")."""
    if model == "claude":
        upstream.behaviour.stream_body = anthropic_stream(CALLS, preface="")
        upstream.behaviour.json_body = None if stream else anthropic_message(CALLS, preface="")
    elif stream:
        upstream.behaviour.stream_body = openai_stream(CALLS, preface="")
    else:
        upstream.behaviour.tool_call = True
    sdk = client(gateway)
    if stream:
        completion = streamed_completion(sdk, model)
    else:
        completion = sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS
        )
    message = completion.choices[0].message
    assert message.tool_calls and message.content is None
