"""AnthropicAdapter: OpenAI requests -> Messages API requests, and Messages API answers -> OpenAI.

Every Anthropic shape used here is checked against the `anthropic` SDK's types, and every OpenAI
shape the adapter produces against OpenAI's published OpenAPI document.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pydantic
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming

from adapters.anthropic import (
    ANTHROPIC_VERSION,
    CONTINUATION_PLACEHOLDER,
    JSON_OBJECT_INSTRUCTION,
    AnthropicAdapter,
)
from adapters.base import JSON, ChatCompletion, ChatRequest, ProviderError, SSEEvent, Target, Unsupported, Usage
from adapters.sse import SSEDecoder
from tests.openai_schema import validate

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5"
TARGET = Target(
    provider="anthropic",
    model=MODEL,
    base_url="https://api.anthropic.com",
    api_key="sk-ant-secret",
    headers=(("anthropic-beta", "token-efficient-tools-2025-02-19"),),
)
ADAPTER = AnthropicAdapter()

# SDK 2.x targets API version 2026-10-21, which removed the sampling parameters; the adapter pins
# 2023-06-01, where they are still accepted, so they are left out of the SDK comparison.
SAMPLING_PARAMS = ("temperature", "top_p")

PNG_DATA = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature_c": {"type": "number"},
        "conditions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city", "temperature_c", "conditions"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "weather_report", "schema": WEATHER_SCHEMA, "strict": True},
}
RESPONSE_TOOL = {
    "name": "response_format__weather_report",
    "description": "Give your final answer by calling this tool; its input is the answer.",
    "input_schema": WEATHER_SCHEMA,
}


# ─── helpers ──────────────────────────────────────────────────────────────────────────────────


def chat(messages: list[JSON], **extra: Any) -> JSON:
    return {"model": "claude", "messages": messages, **extra}


def expected(messages: list[JSON], **extra: Any) -> JSON:
    return {"model": MODEL, "max_tokens": 4096, "messages": messages, **extra}


def user(content: Any) -> JSON:
    return {"role": "user", "content": content}


def assistant(content: Any, **extra: Any) -> JSON:
    return {"role": "assistant", "content": content, **extra}


def text(value: str, **extra: Any) -> JSON:
    return {"type": "text", "text": value, **extra}


def tool_call(call_id: str, name: str, arguments: str) -> JSON:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@functools.cache
def _request_adapter(streaming: bool) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(MessageCreateParamsStreaming if streaming else MessageCreateParamsNonStreaming)


def _drain(value: Any) -> Any:
    """pydantic validates `Iterable[...]` fields lazily; consuming them validates their items."""
    if isinstance(value, dict):
        return {key: _drain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [_drain(item) for item in value]
    return value


def validate_anthropic_request(payload: JSON) -> None:
    """The body conforms to the SDK's MessageCreateParams, and no key was unknown to it (dropped)."""
    validated = _drain(_request_adapter(bool(payload.get("stream"))).validate_python(payload))
    assert validated == {key: value for key, value in payload.items() if key not in SAMPLING_PARAMS}


def build(body: JSON, *, stream: bool = False, default_max_tokens: int = 4096) -> JSON:
    validate("CreateChatCompletionRequest", body)
    request = ChatRequest(body, stream=stream, default_max_tokens=default_max_tokens)
    upstream = ADAPTER.build_chat(request, TARGET)
    payload: JSON = orjson.loads(upstream.body)
    validate_anthropic_request(payload)
    return payload


def fixture_json(name: str) -> JSON:
    data: JSON = orjson.loads((FIXTURES / name).read_bytes())
    anthropic.types.Message.model_validate(data)
    return data


_STREAM_EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


def validate_stream_event(event: SSEEvent) -> None:
    payload = orjson.loads(event.data)
    assert payload["type"] == event.event
    if payload["type"] == "ping":  # not part of the SDK's event union
        assert payload == {"type": "ping"}
    elif payload["type"] == "error":
        anthropic.types.ErrorResponse.model_validate(payload)
    else:
        _STREAM_EVENT.validate_python(payload)


def fixture_events(name: str) -> list[SSEEvent]:
    raw = (FIXTURES / name).read_bytes()
    decoder = SSEDecoder()
    events = [event for start in range(0, len(raw), 7) for event in decoder.feed(raw[start : start + 7])]
    events.extend(decoder.flush())
    for event in events:
        validate_stream_event(event)
    return events


def check_completion(result: ChatCompletion | ProviderError) -> ChatCompletion:
    assert isinstance(result, ChatCompletion)
    validate("CreateChatCompletionResponse", result.body)
    return result


def run_stream(events: list[SSEEvent], body: JSON | None = None) -> tuple[Any, list[JSON]]:
    request = ChatRequest(body or chat([user("hi")], stream=True), stream=True)
    translator = ADAPTER.stream_translator(request, TARGET)
    chunks: list[JSON] = []
    for event in events:
        chunks.extend(translator.feed(event))
        if translator.error is not None or translator.done:
            break
    chunks.extend(translator.finish())
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    if chunks:
        assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    return translator, chunks


def assemble(chunks: list[JSON]) -> JSON:
    """What a client reconstructs from the chunks."""
    content, reasoning, finish = "", "", []
    calls: dict[int, JSON] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for piece in delta.get("tool_calls", []):
                call = calls.setdefault(piece["index"], {"id": None, "name": None, "arguments": ""})
                call["id"] = piece.get("id", call["id"])
                call["name"] = piece.get("function", {}).get("name", call["name"])
                call["arguments"] += piece.get("function", {}).get("arguments", "")
            if choice["finish_reason"] is not None:
                finish.append(choice["finish_reason"])
    return {"content": content, "reasoning": reasoning, "tool_calls": calls, "finish": finish}


# ─── request: headers and URL ─────────────────────────────────────────────────────────────────


def test_request_line_and_headers() -> None:
    upstream = ADAPTER.build_chat(ChatRequest(chat([user("hi")])), TARGET)
    assert upstream.method == "POST"
    assert upstream.url == "https://api.anthropic.com/v1/messages"
    assert upstream.headers == {
        "x-api-key": "sk-ant-secret",
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        "anthropic-beta": "token-efficient-tools-2025-02-19",
    }
    assert ANTHROPIC_VERSION == "2023-06-01"
    assert "sk-ant-secret" not in repr(upstream)


def test_no_key_header_without_a_key() -> None:
    target = Target(provider="anthropic", model=MODEL, base_url="http://proxy.local")
    upstream = ADAPTER.build_chat(ChatRequest(chat([user("hi")])), target)
    assert "x-api-key" not in upstream.headers
    assert upstream.url == "http://proxy.local/v1/messages"


# ─── request: body translation ────────────────────────────────────────────────────────────────

BUILD_CASES = [
    pytest.param(chat([user("Hello")]), expected([user("Hello")]), id="plain-user-string"),
    pytest.param(
        chat(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [text("Answer in French.")]},
                user("Hi"),
                {"role": "system", "content": "Late system note."},
            ]
        ),
        expected([user("Hi")], system="You are terse.\n\nAnswer in French.\n\nLate system note."),
        id="system-and-developer-joined",
    ),
    pytest.param(
        chat(
            [
                {"role": "system", "content": [text("Big cached context", cache_control={"type": "ephemeral"})]},
                {"role": "system", "content": "Be brief."},
                user("Hi"),
            ]
        ),
        expected(
            [user("Hi")],
            system=[text("Big cached context", cache_control={"type": "ephemeral"}), text("Be brief.")],
        ),
        id="system-with-cache-control-stays-blocks",
    ),
    pytest.param(
        chat([user("one"), user([text("two"), text("three")]), assistant("ok"), assistant("more")]),
        expected([user([text("one"), text("two"), text("three")]), assistant([text("ok"), text("more")])]),
        id="consecutive-roles-merged",
    ),
    pytest.param(
        chat([assistant("How can I help?"), user("Tell me a joke")]),
        expected([user(CONTINUATION_PLACEHOLDER), assistant("How can I help?"), user("Tell me a joke")]),
        id="leading-assistant-gets-placeholder-user",
    ),
    pytest.param(
        chat([{"role": "system", "content": "Say hi."}]),
        expected([user(CONTINUATION_PLACEHOLDER)], system="Say hi."),
        id="system-only-gets-placeholder-user",
    ),
    pytest.param(
        chat(
            [
                user(
                    [
                        text("What is in these images?", cache_control={"type": "ephemeral", "ttl": "1h"}),
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                            "cache_control": {"type": "ephemeral"},
                        },
                    ]
                )
            ]
        ),
        expected(
            [
                user(
                    [
                        text("What is in these images?", cache_control={"type": "ephemeral", "ttl": "1h"}),
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA}},
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                            "cache_control": {"type": "ephemeral"},
                        },
                    ]
                )
            ]
        ),
        id="images-and-part-cache-control",
    ),
    pytest.param(
        chat(
            [
                user("Weather in Paris and Rome?"),
                assistant(
                    "Let me check.",
                    tool_calls=[
                        tool_call("toolu_1", "get_weather", '{"city": "Paris"}'),
                        tool_call("toolu_2", "get_weather", '{"city": "Rome"}'),
                    ],
                ),
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, cloudy"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [text("25C, "), text("sunny")]},
                user("And in Celsius?"),
            ],
            tools=[WEATHER_TOOL],
        ),
        expected(
            [
                user("Weather in Paris and Rome?"),
                assistant(
                    [
                        text("Let me check."),
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
                    ]
                ),
                user(
                    [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, cloudy"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [text("25C, "), text("sunny")]},
                        text("And in Celsius?"),
                    ]
                ),
            ],
            tools=[ANTHROPIC_WEATHER_TOOL],
        ),
        id="tool-calls-and-parallel-results-merged",
    ),
    pytest.param(
        chat(
            [
                user("Ping the server"),
                assistant(None, tool_calls=[tool_call("toolu_9", "ping", "")]),
                {"role": "tool", "tool_call_id": "toolu_9", "content": ""},
            ],
            tools=[{"type": "function", "function": {"name": "ping"}}],
        ),
        expected(
            [
                user("Ping the server"),
                assistant([{"type": "tool_use", "id": "toolu_9", "name": "ping", "input": {}}]),
                user([{"type": "tool_result", "tool_use_id": "toolu_9"}]),
            ],
            tools=[{"name": "ping", "input_schema": {"type": "object", "properties": {}}}],
        ),
        id="empty-arguments-empty-result-default-schema",
    ),
    pytest.param(
        chat(
            [
                {"role": "user", "content": "Weather?", "name": "alice"},
                assistant(None, tool_calls=[tool_call("functions.get_weather:0", "get_weather", '{"city": "Oslo"}')]),
                {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "-3C"},
            ],
            tools=[WEATHER_TOOL],
        ),
        expected(
            [
                user("Weather?"),
                assistant(
                    [
                        {
                            "type": "tool_use",
                            "id": "functions_get_weather_0",
                            "name": "get_weather",
                            "input": {"city": "Oslo"},
                        }
                    ]
                ),
                user([{"type": "tool_result", "tool_use_id": "functions_get_weather_0", "content": "-3C"}]),
            ],
            tools=[ANTHROPIC_WEATHER_TOOL],
        ),
        id="foreign-tool-call-ids-sanitized-consistently",
    ),
    pytest.param(
        chat([user("Hi"), assistant(""), user([text(" "), text("again")]), assistant("The answer is ")]),
        expected([user([text("Hi"), text("again")]), assistant("The answer is")]),
        id="blank-text-dropped-prefill-stripped",
    ),
    pytest.param(
        chat(
            [
                {"role": "system", "content": "Long instructions", "cache_control": {"type": "ephemeral"}},
                {"role": "user", "content": "Question", "cache_control": {"type": "ephemeral"}},
            ]
        ),
        expected(
            [user([text("Question", cache_control={"type": "ephemeral"})])],
            system=[text("Long instructions", cache_control={"type": "ephemeral"})],
        ),
        id="message-level-cache-control",
    ),
    pytest.param(
        chat(
            [user("Hi")],
            stop="END",
            temperature=0.2,
            top_p=0.9,
            user="user-1234",
            max_completion_tokens=300,
            max_tokens=999,
        ),
        expected([user("Hi")], stop_sequences=["END"], temperature=0.2, top_p=0.9, metadata={"user_id": "user-1234"})
        | {"max_tokens": 300},
        id="sampling-stop-user-max-completion-tokens",
    ),
    pytest.param(
        chat([user("Hi")], stop=["\n\nHuman:", "END"], max_tokens=50, temperature=1),
        expected([user("Hi")], stop_sequences=["\n\nHuman:", "END"], temperature=1) | {"max_tokens": 50},
        id="stop-list-max-tokens-temperature-passed-through",
    ),
    pytest.param(
        chat([user("Prove it")], reasoning_effort="low", temperature=1.7),
        expected([user("Prove it")], thinking={"type": "enabled", "budget_tokens": 2048}),
        id="reasoning-drops-a-temperature-above-anthropic-s-range",
    ),
    pytest.param(
        chat(
            [user("Hi")],
            n=1,
            seed=7,
            frequency_penalty=0.5,
            presence_penalty=0.1,
            logprobs=False,
            store=False,
            metadata={"team": "a"},
            service_tier="auto",
            stream_options={"include_usage": True},
            reasoning_effort="none",
            response_format={"type": "text"},
            some_future_field={"x": 1},
        ),
        expected([user("Hi")]),
        id="fields-anthropic-cannot-take-ignored",
    ),
    pytest.param(chat([user("Hi")], stream=True), expected([user("Hi")], stream=True), id="stream"),
    pytest.param(
        chat([user("Weather?")], tools=[WEATHER_TOOL], tool_choice="auto"),
        expected([user("Weather?")], tools=[ANTHROPIC_WEATHER_TOOL], tool_choice={"type": "auto"}),
        id="tool-choice-auto",
    ),
    pytest.param(
        chat([user("Weather?")], tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False),
        expected(
            [user("Weather?")],
            tools=[ANTHROPIC_WEATHER_TOOL],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        ),
        id="tool-choice-required-no-parallel",
    ),
    pytest.param(
        chat([user("Weather?")], tools=[WEATHER_TOOL], tool_choice="none", parallel_tool_calls=False),
        expected([user("Weather?")], tools=[ANTHROPIC_WEATHER_TOOL], tool_choice={"type": "none"}),
        id="tool-choice-none",
    ),
    pytest.param(
        chat(
            [user("Weather?")],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ),
        expected(
            [user("Weather?")], tools=[ANTHROPIC_WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"}
        ),
        id="tool-choice-named",
    ),
    pytest.param(
        chat([user("Weather?")], tools=[WEATHER_TOOL], parallel_tool_calls=False),
        expected(
            [user("Weather?")],
            tools=[ANTHROPIC_WEATHER_TOOL],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        ),
        id="parallel-tool-calls-false-alone",
    ),
    pytest.param(
        chat([user("Hi")], tool_choice="none", parallel_tool_calls=True),
        expected([user("Hi")]),
        id="tool-choice-without-tools-dropped",
    ),
    pytest.param(
        chat([user("Weather in Paris?")], response_format=JSON_SCHEMA_FORMAT),
        expected(
            [user("Weather in Paris?")],
            tools=[RESPONSE_TOOL],
            tool_choice={"type": "tool", "name": RESPONSE_TOOL["name"]},
        ),
        id="json-schema-forced-tool",
    ),
    pytest.param(
        chat(
            [user("Weather in Paris?")],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "weather_report", "description": "The report.", "schema": WEATHER_SCHEMA},
            },
            tools=[WEATHER_TOOL],
        ),
        expected(
            [user("Weather in Paris?")],
            tools=[ANTHROPIC_WEATHER_TOOL, RESPONSE_TOOL | {"description": "The report."}],
            tool_choice={"type": "any"},
        ),
        id="json-schema-with-client-tools",
    ),
    pytest.param(
        chat(
            [{"role": "system", "content": "Extract fields."}, user("Bob, 42")], response_format={"type": "json_object"}
        ),
        expected([user("Bob, 42")], system=f"Extract fields.\n\n{JSON_OBJECT_INSTRUCTION}"),
        id="json-object-instruction",
    ),
    pytest.param(
        chat([user("Prove it")], reasoning_effort="medium", temperature=0.3, top_p=0.98),
        expected([user("Prove it")], thinking={"type": "enabled", "budget_tokens": 3072}, top_p=0.98),
        id="reasoning-medium-within-three-quarters-of-the-default-4096-drops-temperature",
    ),
    pytest.param(
        chat([user("Prove it")], reasoning_effort="low", max_completion_tokens=10000),
        expected([user("Prove it")], thinking={"type": "enabled", "budget_tokens": 2048}) | {"max_tokens": 10000},
        id="reasoning-low-its-whole-budget-within-max-tokens",
    ),
    pytest.param(
        chat([user("Prove it")], reasoning_effort="high", max_tokens=100),
        expected([user("Prove it")]) | {"max_tokens": 100},
        id="reasoning-skipped-when-max-tokens-leaves-no-room-never-raised",
    ),
    pytest.param(
        chat([user("Prove it")], reasoning_effort="low", temperature=0.5, top_p=0.5),
        expected([user("Prove it")], thinking={"type": "enabled", "budget_tokens": 2048}),
        id="reasoning-drops-a-top-p-below-0.95",
    ),
    pytest.param(
        chat([user("Prove it"), assistant("The proof:")], reasoning_effort="low"),
        expected([user("Prove it"), assistant("The proof:")]),
        id="reasoning-skipped-with-a-prefilled-answer",
    ),
    pytest.param(
        chat([user("List")], stop=["END", ""]),
        expected([user("List")], stop_sequences=["END"]),
        id="empty-stop-sequences-dropped",
    ),
    pytest.param(
        chat([user("Weather?")], reasoning_effort="high", response_format=JSON_SCHEMA_FORMAT, temperature=0.5),
        expected(
            [user("Weather?")],
            tools=[RESPONSE_TOOL],
            tool_choice={"type": "tool", "name": RESPONSE_TOOL["name"]},
            temperature=0.5,
        ),
        id="reasoning-skipped-with-forced-tool",
    ),
    pytest.param(
        chat(
            [
                user("Weather?"),
                assistant(None, tool_calls=[tool_call("toolu_1", "get_weather", '{"city": "Oslo"}')]),
                {"role": "tool", "tool_call_id": "toolu_1", "content": "-3C"},
            ],
            tools=[WEATHER_TOOL],
            reasoning_effort="high",
        ),
        expected(
            [
                user("Weather?"),
                assistant([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]),
                user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"}]),
            ],
            tools=[ANTHROPIC_WEATHER_TOOL],
        ),
        id="reasoning-skipped-mid-tool-turn",
    ),
]


@pytest.mark.parametrize(("body", "anthropic_body"), BUILD_CASES)
def test_build_chat_body(body: JSON, anthropic_body: JSON) -> None:
    assert build(body, stream=bool(body.get("stream"))) == anthropic_body


def test_default_max_tokens_comes_from_the_request() -> None:
    assert build(chat([user("Hi")]), default_max_tokens=1234)["max_tokens"] == 1234


def test_client_body_is_not_mutated() -> None:
    body = chat(
        [{"role": "system", "content": "S"}, user("Hi")],
        tools=[WEATHER_TOOL],
        parallel_tool_calls=False,
        response_format=JSON_SCHEMA_FORMAT,
    )
    snapshot = orjson.dumps(body)
    build(body)
    assert orjson.dumps(body) == snapshot


UNSUPPORTED_CASES = [
    pytest.param(chat([user("Hi")], n=2), "n", id="n"),
    pytest.param(chat([user("Hi")], temperature=1.7), "temperature", id="temperature-above-1"),
    pytest.param(
        chat([user("Hi")], temperature=1.5, reasoning_effort="low", max_tokens=100),
        "temperature",
        id="temperature-above-1-where-thinking-has-no-room",
    ),
    pytest.param(
        chat([user([text("Listen"), {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}])]),
        "messages[0].content[1]",
        id="input-audio",
    ),
    pytest.param(
        chat([user("Hi"), assistant("ok"), user([{"type": "file", "file": {"file_id": "file-abc"}}])]),
        "messages[2].content[0]",
        id="file",
    ),
    pytest.param(
        chat([user([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}])]),
        "messages[0].content[0]",
        id="image-media-type",
    ),
    pytest.param(
        chat([user([{"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}])]),
        "messages[0].content[0]",
        id="image-url-scheme",
    ),
    pytest.param(
        chat([user("Hi"), assistant(None, tool_calls=[tool_call("t1", "f", '{"a": ')])]),
        "messages[1].tool_calls[0].function.arguments",
        id="invalid-json-arguments",
    ),
    pytest.param(
        chat([user("Hi"), assistant(None, tool_calls=[tool_call("t1", "f", "[1, 2]")])]),
        "messages[1].tool_calls[0].function.arguments",
        id="non-object-arguments",
    ),
    pytest.param(
        chat([user("Hi"), {"role": "function", "name": "f", "content": "42"}]),
        "messages[1].role",
        id="function-role",
    ),
    pytest.param(
        chat([user("Hi")], tools=[{"type": "custom", "custom": {"name": "grammar"}}]),
        "tools[0]",
        id="custom-tool",
    ),
    pytest.param(
        chat(
            [user("Hi")],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
        ),
        "tool_choice",
        id="allowed-tools-choice",
    ),
    pytest.param(chat([user("List")], stop=["END", "\n"]), "stop", id="whitespace-stop-sequence"),
    pytest.param(chat([user("Hi")], logprobs=True), "logprobs", id="logprobs"),
    pytest.param(chat([user("Hi")], functions=[WEATHER_TOOL["function"]]), "functions", id="legacy-functions"),
    pytest.param(
        chat([user([{"type": "file", "file": {"file_id": "file-abc"}}])]), "messages[0].content[0]", id="file-id"
    ),
    pytest.param(
        chat([user([{"type": "file", "file": {"file_data": "data:text/csv;base64,YQ=="}}])]),
        "messages[0].content[0]",
        id="file-not-pdf",
    ),
]


@pytest.mark.parametrize(("body", "param"), UNSUPPORTED_CASES)
def test_build_chat_unsupported(body: JSON, param: str) -> None:
    with pytest.raises(Unsupported) as caught:
        ADAPTER.build_chat(ChatRequest(body), TARGET)
    assert caught.value.param == param
    assert caught.value.message


@pytest.mark.parametrize(("spelled", "media_type"), [("image/jpg", "image/jpeg"), ("IMAGE/PNG", "image/png")])
def test_image_data_url_types_are_read_as_openai_reads_them(spelled: str, media_type: str) -> None:
    body = chat([user([{"type": "image_url", "image_url": {"url": f"data:{spelled};base64,{PNG_DATA}"}}])])
    [block] = build(body)["messages"][0]["content"]
    assert block["source"] == {"type": "base64", "media_type": media_type, "data": PNG_DATA}


# ─── response ─────────────────────────────────────────────────────────────────────────────────

RESPONSE_CASES = [
    pytest.param(
        "message_text.json",
        {"role": "assistant", "content": "Hello! How can I help you today?", "refusal": None},
        "stop",
        Usage(prompt_tokens=12 + 1500 + 3000, completion_tokens=14, cached_tokens=3000, cache_write_tokens=1500),
        id="text-with-cache-usage",
    ),
    pytest.param(
        "message_tool_use.json",
        {
            "role": "assistant",
            "content": "I'll check the weather in both cities.",
            "refusal": None,
            "tool_calls": [
                tool_call(
                    "toolu_01A09q90qw90lq917835lq9",
                    "get_weather",
                    '{"location":"San Francisco, CA","unit":"celsius"}',
                ),
                tool_call(
                    "toolu_01B18r81rx81mr828746mr8", "get_weather", '{"location":"New York, NY","unit":"celsius"}'
                ),
            ],
        },
        "tool_calls",
        Usage(prompt_tokens=472, completion_tokens=112),
        id="parallel-tool-use",
    ),
    pytest.param(
        "message_thinking.json",
        {
            "role": "assistant",
            "content": "27 × 453 = 12,231",
            "refusal": None,
            "reasoning_content": "27 * 453: 27 * 400 = 10800, 27 * 53 = 1431, total 12231.",
        },
        "stop",
        Usage(prompt_tokens=41, completion_tokens=356, reasoning_tokens=301),
        id="thinking",
    ),
    pytest.param(
        "message_json_schema.json",
        {
            "role": "assistant",
            "content": '{"city":"Paris","temperature_c":18.5,"conditions":["cloudy","light rain"]}',
            "refusal": None,
        },
        "stop",
        Usage(prompt_tokens=389, completion_tokens=61),
        id="json-schema-answer-becomes-content",
    ),
    pytest.param(
        "message_refusal.json",
        {"role": "assistant", "content": "", "refusal": None},
        "content_filter",
        Usage(prompt_tokens=25, completion_tokens=3),
        id="refusal",
    ),
]


@pytest.mark.parametrize(("fixture", "message", "finish_reason", "usage"), RESPONSE_CASES)
def test_parse_chat(fixture: str, message: JSON, finish_reason: str, usage: Usage) -> None:
    upstream = fixture_json(fixture)
    result = check_completion(ADAPTER.parse_chat(200, orjson.dumps(upstream)))
    body = result.body
    assert isinstance(body["created"], int) and body["created"] > 1_700_000_000
    assert body == {
        "id": upstream["id"],
        "object": "chat.completion",
        "created": body["created"],
        "model": upstream["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage.to_openai(),
    }
    assert result.usage == usage


def test_json_schema_answer_parses_to_the_tool_input() -> None:
    upstream = fixture_json("message_json_schema.json")
    result = check_completion(ADAPTER.parse_chat(200, orjson.dumps(upstream)))
    assert orjson.loads(result.body["choices"][0]["message"]["content"]) == upstream["content"][0]["input"]


def test_cache_usage_rendered_as_prompt_tokens_details() -> None:
    result = check_completion(ADAPTER.parse_chat(200, orjson.dumps(fixture_json("message_text.json"))))
    assert result.body["usage"] == {
        "prompt_tokens": 4512,
        "completion_tokens": 14,
        "total_tokens": 4526,
        "prompt_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 1500},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("tool_use", "stop"),  # no client tool was called (the text fixture has none)
    ],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    upstream = fixture_json("message_text.json") | {"stop_reason": stop_reason}
    anthropic.types.Message.model_validate(upstream)
    result = check_completion(ADAPTER.parse_chat(200, orjson.dumps(upstream)))
    assert result.body["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>502 Bad Gateway</html>", id="not-json"),
        pytest.param(b"[]", id="json-list"),
        pytest.param(b'{"type": "completion", "completion": "hi"}', id="other-object"),
        pytest.param(b'{"type": "message", "id": "msg_1"}', id="message-without-content"),
        pytest.param(b'{"type": "error", "error": {"type": "api_error", "message": "boom"}}', id="error-in-200"),
    ],
)
def test_parse_chat_unexpected_success_body(body: bytes) -> None:
    result = ADAPTER.parse_chat(200, body)
    assert isinstance(result, ProviderError)
    assert result.status == 0  # no error status of the provider's: a failing provider to the failover
    assert result.type == "api_error"


def test_parse_chat_error_status_uses_parse_error() -> None:
    body = b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}'
    assert ADAPTER.parse_chat(404, body) == ProviderError(404, "model: claude-9", "not_found_error")


# ─── errors ───────────────────────────────────────────────────────────────────────────────────


def anthropic_error_body(error_type: str, message: str) -> bytes:
    payload = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011CSHoE"}
    anthropic.types.ErrorResponse.model_validate(payload)
    return orjson.dumps(payload)


ERROR_CASES = [
    pytest.param(400, "invalid_request_error", "invalid_request_error", None, id="invalid-request"),
    pytest.param(401, "authentication_error", "authentication_error", None, id="authentication"),
    pytest.param(402, "billing_error", "insufficient_quota", "insufficient_quota", id="billing"),
    pytest.param(403, "permission_error", "permission_error", None, id="permission"),
    pytest.param(404, "not_found_error", "not_found_error", None, id="not-found"),
    pytest.param(429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded", id="rate-limit"),
    pytest.param(500, "api_error", "api_error", None, id="api-error"),
    pytest.param(504, "timeout_error", "api_error", "timeout", id="timeout"),
    pytest.param(529, "overloaded_error", "api_error", "overloaded", id="overloaded"),
]


@pytest.mark.parametrize(("status", "anthropic_type", "openai_type", "code"), ERROR_CASES)
def test_parse_error(status: int, anthropic_type: str, openai_type: str, code: str | None) -> None:
    error = ADAPTER.parse_error(status, anthropic_error_body(anthropic_type, "what went wrong"))
    assert error == ProviderError(status, "what went wrong", openai_type, code)


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 208310 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input length or "
        "`max_tokens` and try again",
    ],
)
def test_a_prompt_past_the_context_window_is_context_length_exceeded(message: str) -> None:
    """OpenAI's code for it, which clients act on (trimming the history and asking again)."""
    parsed = ADAPTER.parse_error(400, anthropic_error_body("invalid_request_error", message))
    assert parsed == ProviderError(400, message, "invalid_request_error", "context_length_exceeded", "messages")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(
            400,
            {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                "to upgrade or purchase credits.",
            },
            id="credit-balance-too-low",
        ),
        pytest.param(
            400,
            {
                "type": "invalid_request_error",
                "message": "You have reached your specified API usage limits. You will regain access on 2026-12-01 at "
                "00:00 UTC.",
            },
            id="organization-spend-limit",
        ),
        pytest.param(
            400,
            {
                "type": "invalid_request_error",
                "message": "You have reached your specified workspace API usage limits. You will regain access on "
                "2026-12-01 at 00:00 UTC.",
            },
            id="workspace-spend-limit",
        ),
        pytest.param(
            429,
            {
                "type": "rate_limit_error",
                "message": "You have reached your monthly spend limit.",
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
            id="tier-spend-cap",
        ),
    ],
)
def test_refusals_of_the_account_read_as_out_of_credit(status: int, error: JSON) -> None:
    """Anthropic refuses an account out of credit or past a spend limit with a 400 invalid_request_error (or, for the
    usage tier's monthly cap, a 429 rate_limit_error no wait lifts): about the gateway's account, not the request."""
    body = orjson.dumps({"type": "error", "error": error, "request_id": "req_011CSHoE"})
    parsed = ADAPTER.parse_error(status, body)
    assert parsed == ProviderError(status, error["message"], "insufficient_quota", "insufficient_quota")


@pytest.mark.parametrize(
    ("status", "body", "expected_error"),
    [
        pytest.param(
            413,
            b'{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}',
            ProviderError(413, "Request exceeds the maximum size", "invalid_request_error", "request_too_large"),
            id="request-too-large",
        ),
        pytest.param(
            418,
            b'{"type":"error","error":{"type":"teapot_error","message":"short and stout"}}',
            ProviderError(418, "short and stout", "api_error"),
            id="unknown-type-falls-back-to-status",
        ),
        pytest.param(
            429,
            b'{"type":"error","error":{"type":"new_limit_error","message":""}}',
            ProviderError(429, "upstream returned HTTP 429", "rate_limit_error"),
            id="empty-message",
        ),
        pytest.param(
            502,
            b"<html><body>Bad Gateway</body></html>",
            ProviderError(502, "upstream returned HTTP 502", "api_error"),
            id="html",
        ),
        pytest.param(401, b"", ProviderError(401, "upstream returned HTTP 401", "authentication_error"), id="empty"),
        pytest.param(
            400,
            b'{"error": "bad"}',
            ProviderError(400, "upstream returned HTTP 400", "invalid_request_error"),
            id="foreign-shape",
        ),
    ],
)
def test_parse_error_fallbacks(status: int, body: bytes, expected_error: ProviderError) -> None:
    assert ADAPTER.parse_error(status, body) == expected_error


# ─── streaming ────────────────────────────────────────────────────────────────────────────────


def test_stream_text() -> None:
    translator, chunks = run_stream(fixture_events("stream_text.sse"))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["id"] == "msg_01StrTxt8sV2gGqEtKcZ4xQ1"
    assert chunks[0]["model"] == "claude-sonnet-4-5-20250929"
    assembled = assemble(chunks)
    assert assembled["content"] == "Hello, world! ✓"
    assert assembled["reasoning"] == ""
    assert assembled["tool_calls"] == {}
    assert assembled["finish"] == ["stop"]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["object"] == "chat.completion.chunk"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 25 + 2048,
        "completion_tokens": 15,
        "total_tokens": 2088,
        "prompt_tokens_details": {"cached_tokens": 2048},
    }
    assert translator.done and translator.error is None
    assert translator.usage == Usage(prompt_tokens=2073, completion_tokens=15, cached_tokens=2048)


def test_stream_parallel_tool_calls() -> None:
    events = fixture_events("stream_parallel_tools.sse")
    argument_events = [e for e in events if '"input_json_delta"' in e.data and '"index":1' in e.data]
    assert len(argument_events) >= 3  # the arguments really arrive split mid-token
    translator, chunks = run_stream(events)
    assembled = assemble(chunks)
    assert assembled["content"] == "Checking both cities."
    calls = assembled["tool_calls"]
    assert sorted(calls) == [0, 1, 2]  # OpenAI counts tool calls, not Anthropic content blocks
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and calls[0]["name"] == "get_weather"
    assert orjson.loads(calls[0]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert calls[1]["id"] == "toolu_01VqWZ5bNkx1Ba9VQpEw1Jw3" and calls[1]["name"] == "get_time"
    assert orjson.loads(calls[1]["arguments"]) == {"tz": "America/New_York", "format": 24}
    assert calls[2]["name"] == "list_cities" and orjson.loads(calls[2]["arguments"]) == {}
    assert assembled["finish"] == ["tool_calls"]

    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    opening = [d for d in tool_deltas if "id" in d]
    assert opening == [
        {
            "index": 0,
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "toolu_01VqWZ5bNkx1Ba9VQpEw1Jw3",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
        {
            "index": 2,
            "id": "toolu_01NoArgs0000000000000000",
            "type": "function",
            "function": {"name": "list_cities", "arguments": ""},
        },
    ]
    for delta in tool_deltas:
        if "id" not in delta:
            assert delta.keys() == {"index", "function"} and delta["function"].keys() == {"arguments"}
            assert delta["function"]["arguments"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
    assert translator.done


def test_stream_thinking_then_text() -> None:
    translator, chunks = run_stream(fixture_events("stream_thinking.sse"))
    assembled = assemble(chunks)
    assert assembled["reasoning"] == "27 * 453: 27 * 400 = 10800, 27 * 53 = 1431, total 12231."
    assert assembled["content"] == "27 × 453 = 12,231"
    assert assembled["finish"] == ["length"]
    assert not any("signature" in orjson.dumps(chunk).decode() for chunk in chunks)
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 41,
        "completion_tokens": 356,
        "total_tokens": 397,
        "completion_tokens_details": {"reasoning_tokens": 301},
    }
    assert translator.usage == Usage(prompt_tokens=41, completion_tokens=356, reasoning_tokens=301)


def test_stream_json_schema_answer_becomes_content() -> None:
    body = chat([user("Weather in Paris?")], stream=True, response_format=JSON_SCHEMA_FORMAT)
    translator, chunks = run_stream(fixture_events("stream_json_schema.sse"), body)
    assembled = assemble(chunks)
    assert orjson.loads(assembled["content"]) == {
        "city": "Paris",
        "temperature_c": 18.5,
        "conditions": ["cloudy", "light rain"],
    }
    assert assembled["tool_calls"] == {}
    assert assembled["finish"] == ["stop"]
    assert translator.done


def test_stream_error_event() -> None:
    events = fixture_events("stream_error.sse")
    request = ChatRequest(chat([user("Tell me a story")], stream=True), stream=True)
    translator = ADAPTER.stream_translator(request, TARGET)
    chunks = [chunk for event in events[:-1] for chunk in translator.feed(event)]
    assert assemble(chunks)["content"] == "Once upon"
    assert translator.feed(events[-1]) == []
    assert translator.error == ProviderError(0, "Overloaded", "api_error", "overloaded")
    assert not translator.done
    # what Anthropic reported before the stream broke off, for accounting: at once, since the gateway stops
    # reading after an error event (and a client that leaves stops it anywhere)
    assert translator.usage == Usage(prompt_tokens=30, completion_tokens=1)
    assert translator.finish() == []
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)


def test_stream_ping_and_unknown_events_emit_nothing() -> None:
    request = ChatRequest(chat([user("hi")], stream=True), stream=True)
    translator = ADAPTER.stream_translator(request, TARGET)
    assert translator.feed(SSEEvent("ping", '{"type": "ping"}')) == []
    assert translator.feed(SSEEvent("future_event", '{"type": "future_event", "x": 1}')) == []
    assert translator.feed(SSEEvent(None, "")) == []
    assert translator.error is None and not translator.done and translator.usage is None


def test_stream_malformed_event_is_an_error() -> None:
    translator = ADAPTER.stream_translator(ChatRequest(chat([user("hi")]), stream=True), TARGET)
    assert translator.feed(SSEEvent("content_block_delta", "{not json")) == []
    assert translator.error is not None and translator.error.status == 0


def _event(payload: JSON) -> SSEEvent:
    event = SSEEvent(payload["type"], orjson.dumps(payload).decode())
    validate_stream_event(event)
    return event


def test_stream_message_delta_usage_is_cumulative_and_overrides() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_01Cum",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-1-20250805",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
    }
    events = [
        _event(start),
        _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        _event({"type": "content_block_stop", "index": 0}),
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {
                    "input_tokens": 12,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 50,
                    "output_tokens": 7,
                },
            }
        ),
        _event({"type": "message_stop"}),
    ]
    translator, chunks = run_stream(events)
    assert assemble(chunks)["finish"] == ["stop"]
    assert translator.usage == Usage(prompt_tokens=162, completion_tokens=7, cached_tokens=100, cache_write_tokens=50)
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 50}


CACHE_BY_TTL = {
    "input_tokens": 20,
    "cache_read_input_tokens": 300,
    "cache_creation_input_tokens": 1_500,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1_000},
    "output_tokens": 9,
}
CACHE_BY_TTL_USAGE = Usage(
    prompt_tokens=1_820, completion_tokens=9, cached_tokens=300, cache_write_tokens=1_500, cache_write_1h_tokens=1_000
)


@pytest.mark.parametrize("stream", [False, True])
def test_cache_writes_are_told_apart_by_ttl(stream: bool) -> None:
    """cache_creation splits the writes into 5-minute and hour-long ones, billed at different prices; the client's
    usage still counts them all as cache_write_tokens, within prompt_tokens."""
    message = {**fixture_json("message_text.json"), "usage": CACHE_BY_TTL}
    anthropic.types.Message.model_validate(message)
    if stream:
        start = {**message, "content": [], "stop_reason": None, "usage": {**CACHE_BY_TTL, "output_tokens": 1}}
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        translator, chunks = run_stream(
            [
                _event({"type": "message_start", "message": start}),
                _event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 9}}),
                _event({"type": "message_stop"}),
            ]
        )
        usage, reported = translator.usage, chunks[-1]["usage"]
    else:
        result = check_completion(ADAPTER.parse_chat(200, orjson.dumps(message)))
        usage, reported = result.usage, result.body["usage"]
    assert usage == CACHE_BY_TTL_USAGE
    assert reported == {
        "prompt_tokens": 1_820,
        "completion_tokens": 9,
        "total_tokens": 1_829,
        "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 1_500},
    }


def test_stream_message_stop_without_stop_reason_still_finishes() -> None:
    start = orjson.loads(fixture_events("stream_text.sse")[0].data)
    events = [
        _event(start),
        _event({"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 3}}),
        _event({"type": "message_stop"}),
    ]
    translator, chunks = run_stream(events)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, "stop"]
    assert chunks[-1]["choices"] == [] and translator.done
