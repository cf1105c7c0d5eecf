"""One conformance suite for every adapter in `adapters.registry.ADAPTERS`.

Each provider type has a *kit* (below, in `KITS`) that knows how that provider answers natively: a
response body, a list of raw SSE frames, an error body. Every test is parametrised over the
registry and feeds the kit's native answers through the adapter, then checks the OpenAI shapes
that come out against OpenAI's published OpenAPI document. A new provider module gets the whole
suite by adding one kit; a registered adapter without a kit fails `test_every_adapter_has_a_kit`.

Native shapes are checked too: OpenAI and Azure answers against OpenAI's document (Azure's extra
content-filter fields are allowed by it), Anthropic answers against the `anthropic` SDK's types.
The mock provider is its own upstream (a LocalAdapter): its kit answers by calling `answer()` on
the request the adapter built, and reads the expected values from that native answer.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anthropic
import orjson
import pydantic
import pytest

from adapters.base import (
    JSON,
    Adapter,
    ChatCompletion,
    ChatRequest,
    Embeddings,
    EmbeddingsRequest,
    LocalAdapter,
    ProviderError,
    SSEEvent,
    StreamTranslator,
    Target,
    Unsupported,
    UpstreamRequest,
)
from adapters.registry import ADAPTERS
from adapters.sse import SSEDecoder
from tests.openai_schema import validate

CLIENT_KEY = "sk-gw-client-key-must-never-travel-upstream"
EXTRA_HEADER = ("x-conformance-suite", "1")  # a config `headers:` entry every adapter must send

# ─── scenarios ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the provider answers, in provider-neutral terms; kits render it natively."""

    name: str
    text: str  # the answer text ("" for a tool call)
    pieces: tuple[str, ...]  # how a stream splits the text, or the tool call's arguments
    finish_reason: str  # OpenAI's finish_reason for it
    prompt_tokens: int
    completion_tokens: int


TEXT = Scenario("text", "Hello, world! ✓ — ça va?", ("Hello", ", wor", "ld! ✓", " — ça", " va?"), "stop", 21, 9)
LENGTH = Scenario("length", "The weather in Paris", ("The weather", " in", " Paris"), "length", 21, 5)
TOOL = Scenario("tool", "", ('{"ci', 'ty": ', '"Par', 'is"}'), "tool_calls", 64, 18)
SCENARIOS = {s.name: s for s in (TEXT, LENGTH, TOOL)}

TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"city": "Paris"}
assert orjson.loads("".join(TOOL.pieces)) == TOOL_ARGUMENTS
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
FORCED_TOOL_CHOICE = {"type": "function", "function": {"name": TOOL_NAME}}
EMBEDDING_INPUTS = ["The food was delicious", "ça va très bien"]
EMBEDDING_PROMPT_TOKENS = 11


@dataclass(frozen=True, slots=True)
class Expected:
    """What the adapter's OpenAI output must say, read off the native answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    tool_arguments: JSON | None = None

    @classmethod
    def of(cls, scenario: Scenario) -> Expected:
        arguments = TOOL_ARGUMENTS if scenario is TOOL else None
        return cls(scenario.text, scenario.prompt_tokens, scenario.completion_tokens, arguments)


@dataclass(frozen=True, slots=True)
class Native:
    expected: Expected
    status: int = 200
    body: bytes = b""
    frames: tuple[bytes, ...] = ()


# ─── kits: one per provider type ──────────────────────────────────────────────────────────────


class Kit(ABC):
    """A provider type's native side of the standard scenarios. Subclasses are dataclasses."""

    provider_type: str
    target: Target
    credential_header: str
    forces_tool_choice: bool = False  # the tool scenario forces the function (else tool_choice "auto")

    @property
    def adapter(self) -> Adapter:
        return ADAPTERS[self.provider_type]

    def credential(self, api_key: str) -> str:
        """The credential header's value for `api_key`."""
        return api_key

    @abstractmethod
    def chat_url(self) -> str: ...

    def embeddings_url(self) -> str:
        raise NotImplementedError(f"the {self.provider_type} kit has no embeddings URL")

    @abstractmethod
    def check_stream_request(self, body: JSON) -> None:
        """Asserts the upstream body asks for a stream (and for usage where that must be asked)."""

    def check_plain_request(self, body: JSON) -> None:
        assert body.get("model") == self.target.model

    @abstractmethod
    def chat(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        """The native JSON answer to `upstream` for the scenario."""

    @abstractmethod
    def stream(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        """The native SSE frames answering `upstream` for the scenario."""

    @abstractmethod
    def error_body(self, status: int, upstream: UpstreamRequest) -> bytes:
        """The native error body of an HTTP `status` (400 or 429); skips if the provider has none."""

    @abstractmethod
    def stream_error(self, upstream: UpstreamRequest) -> tuple[bytes, ...]:
        """Native frames of a stream that fails midway with an error event."""

    def with_annotations(self, frames: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """`frames` with the frames that carry no completion data (keep-alives, moderation notes)
        the provider mixes into real streams; skips when the provider sends none."""
        pytest.skip(f"{self.provider_type} sends nothing but completion frames")

    def embeddings(self, upstream: UpstreamRequest) -> Native:
        raise NotImplementedError(f"the {self.provider_type} kit has no native embeddings answer")


def sse(payload: JSON, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


# OpenAI ─────────────────────────────────────────────────────────────────────────────────────────

OPENAI_MODEL_VERSION = "gpt-4o-mini-2024-07-18"
OPENAI_CREATED = 1_735_000_000


def openai_usage(prompt: int, completion: int) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass(frozen=True)
class OpenAIKit(Kit):
    """OpenAI's Chat Completions wire format, as api.openai.com answers it."""

    provider_type: str
    target: Target
    credential_header: str = "authorization"
    null_usage_on_chunks: bool = True  # with include_usage, OpenAI puts `"usage": null` on every chunk
    completion_id: str = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"

    def credential(self, api_key: str) -> str:
        return "Bearer " + api_key

    def chat_url(self) -> str:
        return self.target.base_url + "/chat/completions"

    def embeddings_url(self) -> str:
        return self.target.base_url + "/embeddings"

    def check_stream_request(self, body: JSON) -> None:
        assert body["stream"] is True
        assert body["stream_options"]["include_usage"] is True

    # hooks for dialects (Azure) ------------------------------------------------------------------
    def _choice(self, choice: JSON) -> JSON:
        return choice

    def _response(self, response: JSON) -> JSON:
        return response

    def _chunk_payload(self, choices: list[JSON], usage: JSON | None = None) -> JSON:
        payload: JSON = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": OPENAI_CREATED,
            "model": OPENAI_MODEL_VERSION,
            "service_tier": "default",
            "system_fingerprint": "fp_0aa8d3e20b",
            "choices": choices,
        }
        if usage is not None or self.null_usage_on_chunks:
            payload["usage"] = usage
        validate("CreateChatCompletionStreamResponse", payload)
        return payload

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> bytes:
        choice = self._choice({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason})
        return sse(self._chunk_payload([choice]))

    # native answers ------------------------------------------------------------------------------
    def chat(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        message: JSON = {"role": "assistant", "content": scenario.text or None, "refusal": None, "annotations": []}
        if scenario is TOOL:
            message["tool_calls"] = [
                {
                    "id": "call_62136354",
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": orjson.dumps(TOOL_ARGUMENTS).decode()},
                }
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": scenario.finish_reason}
        response = self._response(
            {
                "id": self.completion_id,
                "object": "chat.completion",
                "created": OPENAI_CREATED,
                "model": OPENAI_MODEL_VERSION,
                "choices": [self._choice(choice)],
                "usage": openai_usage(scenario.prompt_tokens, scenario.completion_tokens),
                "service_tier": "default",
                "system_fingerprint": "fp_0aa8d3e20b",
            }
        )
        validate("CreateChatCompletionResponse", response)
        return Native(Expected.of(scenario), body=orjson.dumps(response))

    def stream(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        frames: list[bytes] = []
        if scenario is TOOL:
            function = {"name": TOOL_NAME, "arguments": ""}
            opening = {"index": 0, "id": "call_62136354", "type": "function", "function": function}
            frames.append(self._chunk({"role": "assistant", "content": None, "tool_calls": [opening], "refusal": None}))
            frames.extend(
                self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for piece in scenario.pieces
            )
        else:
            frames.append(self._chunk({"role": "assistant", "content": "", "refusal": None}))
            frames.extend(self._chunk({"content": piece}) for piece in scenario.pieces)
        frames.append(self._chunk({}, scenario.finish_reason))
        usage = openai_usage(scenario.prompt_tokens, scenario.completion_tokens)
        frames.append(sse(self._chunk_payload([], usage)))
        frames.append(b"data: [DONE]\n\n")
        return Native(Expected.of(scenario), frames=tuple(frames))

    def error_body(self, status: int, upstream: UpstreamRequest) -> bytes:
        errors = {
            400: {
                "message": "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "empty_array",
            },
            429: {
                "message": "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): "
                "Limit 200000, Used 199000, Requested 3000. Please try again in 600ms.",
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            },
        }
        payload = {"error": errors[status]}
        validate("ErrorResponse", payload)
        return orjson.dumps(payload)

    def stream_error(self, upstream: UpstreamRequest) -> tuple[bytes, ...]:
        error = {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        validate("ErrorResponse", error)
        return (
            self._chunk({"role": "assistant", "content": "", "refusal": None}),
            self._chunk({"content": "Once upon"}),
            sse(error),
        )

    def with_annotations(self, frames: tuple[bytes, ...]) -> tuple[bytes, ...]:
        # OpenAI-compatible servers (OpenRouter, proxies) send SSE comments as keep-alives.
        keep_alive = b": OPENROUTER PROCESSING\n\n"
        return (keep_alive, *(f for frame in frames for f in (frame, keep_alive)))

    def embeddings(self, upstream: UpstreamRequest) -> Native:
        response = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.0023064255, -0.009327292, 0.015797347 * (i + 1)]}
                for i in range(len(EMBEDDING_INPUTS))
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": EMBEDDING_PROMPT_TOKENS, "total_tokens": EMBEDDING_PROMPT_TOKENS},
        }
        validate("CreateEmbeddingResponse", response)
        return Native(Expected("", EMBEDDING_PROMPT_TOKENS, 0), body=orjson.dumps(response))


# Azure ──────────────────────────────────────────────────────────────────────────────────────────

AZURE_SAFE = {"filtered": False, "severity": "safe"}
AZURE_CONTENT_FILTER = {"hate": AZURE_SAFE, "self_harm": AZURE_SAFE, "sexual": AZURE_SAFE, "violence": AZURE_SAFE}
AZURE_JAILBREAK = {"filtered": False, "detected": False}
AZURE_PROMPT_FILTER = [
    {"prompt_index": 0, "content_filter_results": {**AZURE_CONTENT_FILTER, "jailbreak": AZURE_JAILBREAK}},
]


@dataclass(frozen=True)
class AzureKit(OpenAIKit):
    """Azure OpenAI: OpenAI's format plus content-filter annotations, and its own error bodies."""

    credential_header: str = "api-key"
    null_usage_on_chunks: bool = False

    def credential(self, api_key: str) -> str:
        return api_key

    def _deployment_url(self, operation: str) -> str:
        version = self.target.api_version or "2024-10-21"
        return f"{self.target.base_url}/openai/deployments/{quote(self.target.model, safe='')}/{operation}" + (
            f"?api-version={version}"
        )

    def chat_url(self) -> str:
        return self._deployment_url("chat/completions")

    def embeddings_url(self) -> str:
        return self._deployment_url("embeddings")

    def check_plain_request(self, body: JSON) -> None:
        pass  # the deployment is named by the URL, checked by the caller

    def _choice(self, choice: JSON) -> JSON:
        return {**choice, "content_filter_results": AZURE_CONTENT_FILTER}

    def _response(self, response: JSON) -> JSON:
        return {**response, "prompt_filter_results": AZURE_PROMPT_FILTER}

    def error_body(self, status: int, upstream: UpstreamRequest) -> bytes:
        if status == 400:  # Azure's content-filter rejection: `type` is null
            error: JSON = {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy. Please modify your prompt and retry.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": AZURE_CONTENT_FILTER},
            }
        else:  # Azure's rate limit: only `code` and `message`
            error = {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
                "Please retry after 6 seconds.",
            }
        return orjson.dumps({"error": error})

    def with_annotations(self, frames: tuple[bytes, ...]) -> tuple[bytes, ...]:
        # With content filtering on (Azure's default), the first frame carries only the prompt's
        # filter results, with empty id/object/model and no choices. With the asynchronous filter, notes on
        # text already streamed follow it, also with empty id/object/model: a choice with no delta (before
        # the usage frame and [DONE]).
        preamble = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": AZURE_PROMPT_FILTER,
        }
        note = {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": None,
                    "content_filter_results": AZURE_CONTENT_FILTER,
                    "content_filter_offsets": {"check_offset": 35, "start_offset": 0, "end_offset": 35},
                }
            ],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
        }
        return (sse(preamble), *frames[:-2], sse(note), *frames[-2:])


# Anthropic ──────────────────────────────────────────────────────────────────────────────────────

ANTHROPIC_MODEL_VERSION = "claude-sonnet-4-5-20250929"
ANTHROPIC_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ANTHROPIC_EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


def anthropic_event(payload: JSON) -> bytes:
    if payload["type"] == "ping":
        assert payload == {"type": "ping"}
    elif payload["type"] == "error":
        anthropic.types.ErrorResponse.model_validate(payload)
    else:
        _ANTHROPIC_EVENT.validate_python(payload)
    return sse(payload, payload["type"])


PING = {"type": "ping"}


@dataclass(frozen=True)
class AnthropicKit(Kit):
    """Anthropic's Messages API."""

    provider_type: str
    target: Target
    credential_header: str = "x-api-key"
    message_id: str = "msg_01Conf0rmance7Yb2pQm4nKc8"
    tool_use_id: str = "toolu_01Conf0rmance9q90qw90lq"

    def chat_url(self) -> str:
        return self.target.base_url + "/v1/messages"

    def check_stream_request(self, body: JSON) -> None:
        assert body["stream"] is True
        assert "stream_options" not in body  # not an Anthropic parameter

    def _usage(self, prompt: int, completion: int) -> JSON:
        return {
            "input_tokens": prompt,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": completion,
            "service_tier": "standard",
        }

    def chat(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        if scenario is TOOL:
            tool_use = {"type": "tool_use", "id": self.tool_use_id, "name": TOOL_NAME, "input": TOOL_ARGUMENTS}
            content: list[JSON] = [tool_use]
        else:
            content = [{"type": "text", "text": scenario.text}]
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL_VERSION,
            "content": content,
            "stop_reason": ANTHROPIC_STOP_REASONS[scenario.finish_reason],
            "stop_sequence": None,
            "usage": self._usage(scenario.prompt_tokens, scenario.completion_tokens),
        }
        anthropic.types.Message.model_validate(message)
        return Native(Expected.of(scenario), body=orjson.dumps(message))

    def _message_start(self, prompt_tokens: int) -> bytes:
        message: JSON = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL_VERSION,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(prompt_tokens, 1),
        }
        return anthropic_event({"type": "message_start", "message": message})

    def stream(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        frames = [self._message_start(scenario.prompt_tokens)]
        if scenario is TOOL:
            block: JSON = {"type": "tool_use", "id": self.tool_use_id, "name": TOOL_NAME, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in ("", *scenario.pieces)]
            # Anthropic's older message_delta usage carries only output_tokens
            final_usage: JSON = {"output_tokens": scenario.completion_tokens}
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in scenario.pieces]
            final_usage = self._usage(scenario.prompt_tokens, scenario.completion_tokens)
            del final_usage["service_tier"]
        frames.append(anthropic_event({"type": "content_block_start", "index": 0, "content_block": block}))
        frames.append(anthropic_event(PING))
        frames.extend(anthropic_event({"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas)
        frames.append(anthropic_event({"type": "content_block_stop", "index": 0}))
        stop = {"stop_reason": ANTHROPIC_STOP_REASONS[scenario.finish_reason], "stop_sequence": None}
        frames.append(anthropic_event({"type": "message_delta", "delta": stop, "usage": final_usage}))
        frames.append(anthropic_event({"type": "message_stop"}))
        return Native(Expected.of(scenario), frames=tuple(frames))

    def error_body(self, status: int, upstream: UpstreamRequest) -> bytes:
        errors = {
            400: ("invalid_request_error", "messages.0.content: Field required"),
            429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
        }
        error_type, message = errors[status]
        payload = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011CSHo"}
        anthropic.types.ErrorResponse.model_validate(payload)
        return orjson.dumps(payload)

    def stream_error(self, upstream: UpstreamRequest) -> tuple[bytes, ...]:
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Once upon"}}
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}
        return (self._message_start(30), anthropic_event(block), anthropic_event(delta), anthropic_event(error))

    def with_annotations(self, frames: tuple[bytes, ...]) -> tuple[bytes, ...]:
        # Anthropic sends pings as keep-alives anywhere in a stream.
        ping = anthropic_event(PING)
        return tuple(f for frame in frames for f in (frame, ping))


# the mock (its own upstream) ────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class LocalKit(OpenAIKit):
    """An in-process provider that speaks OpenAI's format: its native answers are `answer()`'s,
    and the expected values are read off them (it chooses its own text and token counts)."""

    forces_tool_choice: bool = True  # the mock calls a tool only when tool_choice forces it
    null_usage_on_chunks: bool = False

    @property
    def local(self) -> LocalAdapter:
        adapter = self.adapter
        assert isinstance(adapter, LocalAdapter)
        return adapter

    def _expected(self, upstream: UpstreamRequest) -> Expected:
        """Read off the answer to the same request without streaming: one request, one answer."""
        body = orjson.loads(upstream.body)
        body.pop("stream", None)
        body.pop("stream_options", None)
        answer = self.local.answer(UpstreamRequest(upstream.method, upstream.url, upstream.headers, orjson.dumps(body)))
        assert answer.status == 200 and not answer.frames
        response = orjson.loads(answer.body)
        validate("CreateChatCompletionResponse", response)
        message = response["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        arguments = orjson.loads(calls[0]["function"]["arguments"]) if calls else None
        usage = response["usage"]
        return Expected(message["content"] or "", usage["prompt_tokens"], usage["completion_tokens"], arguments)

    def chat(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        answer = self.local.answer(upstream)
        assert not answer.frames
        return Native(self._expected(upstream), answer.status, answer.body)

    def stream(self, scenario: Scenario, upstream: UpstreamRequest) -> Native:
        answer = self.local.answer(upstream)
        assert answer.status == 200 and answer.frames and not answer.body
        return Native(self._expected(upstream), answer.status, frames=tuple(answer.frames))

    def error_body(self, status: int, upstream: UpstreamRequest) -> bytes:
        if status != 400:
            pytest.skip(f"the in-process {self.provider_type} provider never answers HTTP {status}")
        answer = self.local.answer(UpstreamRequest(upstream.method, upstream.url, upstream.headers, b"{not json"))
        assert answer.status == 400
        return answer.body

    def stream_error(self, upstream: UpstreamRequest) -> tuple[bytes, ...]:
        pytest.skip(f"the in-process {self.provider_type} provider never fails in the middle of a stream")

    def with_annotations(self, frames: tuple[bytes, ...]) -> tuple[bytes, ...]:
        pytest.skip(f"the in-process {self.provider_type} provider sends nothing but chunks")

    def embeddings(self, upstream: UpstreamRequest) -> Native:
        answer = self.local.answer(upstream)
        assert answer.status == 200
        usage = orjson.loads(answer.body)["usage"]
        return Native(Expected("", usage["prompt_tokens"], 0), answer.status, answer.body)


def _target(provider: str, model: str, base_url: str, api_version: str | None = None) -> Target:
    api_key = f"sk-{provider}-target-secret-0123456789"
    return Target(provider, model, base_url, api_key, api_version, headers=(EXTRA_HEADER,))


KITS: dict[str, Kit] = {
    "openai": OpenAIKit("openai", _target("up-openai", "gpt-4o-mini", "https://api.openai.com/v1")),
    "azure": AzureKit(
        "azure",
        _target("up-azure", "gpt-4o-mini_prod.v2", "https://acme.openai.azure.com", api_version="2025-01-01-preview"),
    ),
    "anthropic": AnthropicKit("anthropic", _target("up-anthropic", "claude-sonnet-4-5", "https://api.anthropic.com")),
    "mock": LocalKit("mock", _target("demo", "mock-1", "local://mock")),
}


# ─── helpers ──────────────────────────────────────────────────────────────────────────────────


def kit_for(provider_type: str) -> Kit:
    kit = KITS.get(provider_type)
    if kit is None:
        pytest.fail(f"adapter {provider_type!r} has no conformance kit: add one to KITS")
    return kit


def providers(xfail: dict[str, str] | None = None) -> list[Any]:
    """Every registered adapter as a parameter; `xfail` marks known adapter bugs (strictly)."""
    xfail = xfail or {}
    return [
        pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=xfail[name])] if name in xfail else [])
        for name in sorted(ADAPTERS)
    ]


def client_body(kit: Kit, scenario: Scenario, *, stream: bool = False, stream_options: JSON | None = None) -> JSON:
    body: JSON = {
        "model": "gateway-model-alias",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
    }
    if scenario is LENGTH:
        body["max_tokens"] = LENGTH.completion_tokens
    if scenario is TOOL:
        body["tools"] = [WEATHER_TOOL]
        body["tool_choice"] = FORCED_TOOL_CHOICE if kit.forces_tool_choice else "auto"
    if stream:
        body["stream"] = True
    if stream_options is not None:
        body["stream_options"] = stream_options
    validate("CreateChatCompletionRequest", body)
    return body


def chat_request(kit: Kit, scenario: Scenario, *, stream: bool = False, include_usage: bool = False) -> ChatRequest:
    options = {"include_usage": True} if include_usage else None
    body = client_body(kit, scenario, stream=stream, stream_options=options)
    return ChatRequest(body, stream=stream, include_usage=include_usage)


def build(kit: Kit, req: ChatRequest) -> tuple[UpstreamRequest, JSON]:
    upstream = kit.adapter.build_chat(req, kit.target)
    body = orjson.loads(upstream.body)
    assert isinstance(body, dict)
    return upstream, body


def decode(frames: tuple[bytes, ...], seed: str) -> list[SSEEvent]:
    """The frames as one byte stream cut into small random pieces (a seeded RNG), decoded."""
    raw = b"".join(frames)
    rng = random.Random(seed)
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    position = 0
    while position < len(raw):
        size = rng.randint(1, 9)
        events.extend(decoder.feed(raw[position : position + size]))
        position += size
    events.extend(decoder.flush())
    whole = SSEDecoder()
    assert events == [*whole.feed(raw), *whole.flush()]  # the cuts changed nothing
    return events


def translate(kit: Kit, req: ChatRequest, events: list[SSEEvent]) -> tuple[StreamTranslator, list[JSON]]:
    translator = kit.adapter.stream_translator(req, kit.target)
    chunks: list[JSON] = []
    for event in events:
        chunks.extend(translator.feed(event))
        if translator.error is not None:
            break  # the interface: nothing more is fed after an error
    chunks.extend(translator.finish())
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    return translator, chunks


def run_stream(
    kit: Kit, scenario: Scenario, *, include_usage: bool = False, annotated: bool = False
) -> tuple[Native, StreamTranslator, list[JSON]]:
    req = chat_request(kit, scenario, stream=True, include_usage=include_usage)
    upstream, _ = build(kit, req)
    native = kit.stream(scenario, upstream)
    frames = kit.with_annotations(native.frames) if annotated else native.frames
    events = decode(frames, seed=f"{kit.provider_type}/{scenario.name}/{include_usage}/{annotated}")
    translator, chunks = translate(kit, req, events)
    return native, translator, chunks


def finish_reasons(chunks: list[JSON]) -> list[str]:
    return [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"] is not None]


def content_of(chunks: list[JSON]) -> str:
    return "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])


def check_usage(usage: JSON, expected: Expected) -> None:
    assert usage["prompt_tokens"] == expected.prompt_tokens > 0
    assert usage["completion_tokens"] == expected.completion_tokens > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def check_stream_ending(translator: StreamTranslator, chunks: list[JSON], expected: Expected) -> None:
    assert chunks, "the translator emitted nothing"
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1, "chunks disagree on id/created/model"
    assert chunks[0]["id"]
    last = chunks[-1]
    assert last["choices"] == [] and isinstance(last.get("usage"), dict), "the last chunk is not the usage chunk"
    check_usage(last["usage"], expected)
    assert all(chunk["choices"] for chunk in chunks[:-1]), "a chunk without choices before the usage chunk"
    assert translator.done and translator.error is None
    assert translator.usage is not None
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )


def check_text_stream(scenario: Scenario, native: Native, translator: StreamTranslator, chunks: list[JSON]) -> None:
    assert content_of(chunks) == native.expected.text and native.expected.text
    assert finish_reasons(chunks) == [scenario.finish_reason]
    check_stream_ending(translator, chunks, native.expected)


# ─── the registry and the kits ────────────────────────────────────────────────────────────────


def test_every_adapter_has_a_kit() -> None:
    assert sorted(KITS) == sorted(ADAPTERS)
    for name, kit in KITS.items():
        assert kit.provider_type == name
        assert kit.target.api_key and kit.target.api_key not in repr(kit)  # the kit's own repr hides it too


# ─── 1. request line, credentials, body ───────────────────────────────────────────────────────


@pytest.mark.parametrize("provider", providers())
def test_build_chat_plain(provider: str) -> None:
    kit = kit_for(provider)
    api_key = kit.target.api_key
    assert api_key is not None
    upstream, body = build(kit, chat_request(kit, TEXT))

    assert upstream.method == "POST"
    assert upstream.url == kit.chat_url()
    assert upstream.headers[kit.credential_header] == kit.credential(api_key)
    assert upstream.headers.get("content-type") == "application/json"
    assert upstream.headers.get(EXTRA_HEADER[0]) == EXTRA_HEADER[1]
    others = {name: value for name, value in upstream.headers.items() if name != kit.credential_header}
    assert api_key not in repr(others) and api_key not in upstream.url and api_key.encode() not in upstream.body
    everything = repr(upstream.headers) + upstream.url + upstream.body.decode()
    assert CLIENT_KEY not in everything and "gateway-model-alias" not in everything
    kit.check_plain_request(body)
    assert "stream_options" not in body and not body.get("stream")

    for shown in (repr(upstream), str(upstream), repr(kit.target), str(kit.target), f"{kit.target!r}"):
        assert api_key not in shown


# ─── 2. streaming requests ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "stream_options",
    [
        pytest.param(None, id="client-did-not-ask"),
        pytest.param({"include_usage": False}, id="client-said-no"),
        pytest.param({"include_usage": True}, id="client-asked"),
    ],
)
@pytest.mark.parametrize("provider", providers())
def test_build_chat_stream(provider: str, stream_options: JSON | None) -> None:
    kit = kit_for(provider)
    body = client_body(kit, TEXT, stream=True, stream_options=stream_options)
    include_usage = bool(stream_options and stream_options["include_usage"])
    upstream, upstream_body = build(kit, ChatRequest(body, stream=True, include_usage=include_usage))
    assert upstream.url == kit.chat_url()
    kit.check_stream_request(upstream_body)
    assert body.get("stream_options") == stream_options  # the client's body is not mutated


# ─── 3, 4. plain and truncated answers ────────────────────────────────────────────────────────


@pytest.mark.parametrize("scenario", [pytest.param(TEXT, id="text"), pytest.param(LENGTH, id="length")])
@pytest.mark.parametrize("provider", providers())
def test_parse_chat(provider: str, scenario: Scenario) -> None:
    kit = kit_for(provider)
    upstream, _ = build(kit, chat_request(kit, scenario))
    native = kit.chat(scenario, upstream)
    result = kit.adapter.parse_chat(native.status, native.body)

    assert isinstance(result, ChatCompletion), result
    validate("CreateChatCompletionResponse", result.body)
    (choice,) = result.body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == native.expected.text and native.expected.text
    assert not choice["message"].get("tool_calls")
    assert choice["finish_reason"] == scenario.finish_reason
    check_usage(result.body["usage"], native.expected)
    assert result.usage is not None
    assert result.usage.prompt_tokens == native.expected.prompt_tokens
    assert result.usage.completion_tokens == native.expected.completion_tokens


# ─── 5. tool call ─────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("provider", providers())
def test_parse_chat_tool_call(provider: str) -> None:
    kit = kit_for(provider)
    upstream, _ = build(kit, chat_request(kit, TOOL))
    native = kit.chat(TOOL, upstream)
    result = kit.adapter.parse_chat(native.status, native.body)

    assert isinstance(result, ChatCompletion), result
    validate("CreateChatCompletionResponse", result.body)
    (choice,) = result.body["choices"]
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] and call["type"] == "function"
    assert call["function"]["name"] == TOOL_NAME
    assert orjson.loads(call["function"]["arguments"]) == native.expected.tool_arguments
    assert choice["finish_reason"] == "tool_calls"
    check_usage(result.body["usage"], native.expected)


# ─── 6. streamed text ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("scenario", [pytest.param(TEXT, id="text"), pytest.param(LENGTH, id="length")])
@pytest.mark.parametrize("provider", providers())
def test_stream_text(provider: str, scenario: Scenario) -> None:
    native, translator, chunks = run_stream(kit_for(provider), scenario)
    check_text_stream(scenario, native, translator, chunks)
    assert not any(c["delta"].get("tool_calls") for chunk in chunks for c in chunk["choices"])


# ─── 7. streamed tool call ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("provider", providers())
def test_stream_tool_call(provider: str) -> None:
    native, translator, chunks = run_stream(kit_for(provider), TOOL)
    pieces = [
        piece
        for chunk in chunks
        for choice in chunk["choices"]
        for piece in choice["delta"].get("tool_calls") or []
        if piece["index"] == 0
    ]
    assert pieces, "no tool call deltas"
    first = pieces[0]
    assert first.get("id") and first.get("type") == "function" and first["function"].get("name") == TOOL_NAME
    arguments = "".join(piece.get("function", {}).get("arguments") or "" for piece in pieces)
    assert orjson.loads(arguments) == native.expected.tool_arguments
    deltas = [c["delta"] for chunk in chunks for c in chunk["choices"]]
    assert {piece["index"] for delta in deltas for piece in delta.get("tool_calls") or []} == {0}
    assert finish_reasons(chunks) == ["tool_calls"]
    check_stream_ending(translator, chunks, native.expected)


# ─── 8. error bodies ──────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("status", [400, 429])
@pytest.mark.parametrize("provider", providers())
def test_parse_error(provider: str, status: int) -> None:
    kit = kit_for(provider)
    upstream, _ = build(kit, chat_request(kit, TEXT))
    body = kit.error_body(status, upstream)
    error = kit.adapter.parse_error(status, body)
    assert isinstance(error, ProviderError)
    assert error.status == status
    assert error.message and error.message != f"upstream returned HTTP {status}"  # the provider's own words
    if status == 400:
        assert error.type == "invalid_request_error"
    assert kit.adapter.parse_chat(status, body) == error


@pytest.mark.parametrize("provider", providers())
def test_parse_error_not_json(provider: str) -> None:
    adapter = kit_for(provider).adapter
    body = b"<html>bad gateway</html>"
    error = adapter.parse_error(502, body)
    assert isinstance(error, ProviderError)
    assert error.status == 502 and error.message and "<html>" not in error.message
    assert adapter.parse_chat(502, body) == error


# ─── 9. an error in the middle of a stream ────────────────────────────────────────────────────


@pytest.mark.parametrize("provider", providers())
def test_stream_error_event(provider: str) -> None:
    kit = kit_for(provider)
    req = chat_request(kit, TEXT, stream=True)
    upstream, _ = build(kit, req)
    events = decode(kit.stream_error(upstream), seed=f"{provider}/error")
    translator, chunks = translate(kit, req, events)
    assert translator.error is not None, "the error event was not noticed"
    assert translator.error.status == 0 and translator.error.message
    assert not translator.done
    assert content_of(chunks) == "Once upon"
    assert finish_reasons(chunks) == []


# ─── 10. embeddings ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("provider", providers())
def test_embeddings(provider: str) -> None:
    kit = kit_for(provider)
    adapter = kit.adapter
    body = {"model": "gateway-embedding-alias", "input": EMBEDDING_INPUTS}
    validate("CreateEmbeddingRequest", body)
    req = EmbeddingsRequest(body)
    if not adapter.capabilities.embeddings:
        with pytest.raises(Unsupported):
            adapter.build_embeddings(req, kit.target)
        return

    api_key = kit.target.api_key
    assert api_key is not None
    upstream = adapter.build_embeddings(req, kit.target)
    assert upstream.method == "POST" and upstream.url == kit.embeddings_url()
    assert upstream.headers[kit.credential_header] == kit.credential(api_key)
    assert api_key not in repr(upstream) and api_key.encode() not in upstream.body
    upstream_body = orjson.loads(upstream.body)
    assert upstream_body["input"] == EMBEDDING_INPUTS
    kit.check_plain_request(upstream_body)

    native = kit.embeddings(upstream)
    result = adapter.parse_embeddings(native.status, native.body)
    assert isinstance(result, Embeddings), result
    validate("CreateEmbeddingResponse", result.body)
    assert [item["index"] for item in result.body["data"]] == list(range(len(EMBEDDING_INPUTS)))
    assert result.usage is not None and result.usage.prompt_tokens == native.expected.prompt_tokens > 0


# ─── 11. usage fields in normal chunks ────────────────────────────────────────────────────────


@pytest.mark.parametrize("include_usage", [pytest.param(False, id="not-asked"), pytest.param(True, id="asked")])
@pytest.mark.parametrize("provider", providers())
def test_stream_usage_field_only_where_asked(provider: str, include_usage: bool) -> None:
    """The gateway always asks upstream for usage; a client that did not must not see `usage` keys
    in the normal chunks (it only loses the final usage chunk, which the gateway drops)."""
    native, translator, chunks = run_stream(kit_for(provider), TEXT, include_usage=include_usage)
    check_text_stream(TEXT, native, translator, chunks)
    for chunk in chunks[:-1]:
        if include_usage:
            assert chunk.get("usage") is None
        else:
            assert "usage" not in chunk, chunk


# ─── 12. frames that carry no completion data ─────────────────────────────────────────────────


@pytest.mark.parametrize("provider", providers())
def test_stream_annotation_frames_are_not_chunks(provider: str) -> None:
    """Keep-alives and moderation notes the provider mixes into a stream yield no invalid chunk."""
    native, translator, chunks = run_stream(kit_for(provider), TEXT, annotated=True)
    check_text_stream(TEXT, native, translator, chunks)
