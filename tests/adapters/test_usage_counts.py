"""Token counts from a provider are billed only when they are counts: a negative number, a bool, a float or
a string is taken as 0 (a server that reports -5 tokens must not credit a tenant's budget back), on every
provider's answer parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from adapters.anthropic import AnthropicAdapter
from adapters.base import JSON, Adapter, ChatCompletion, Embeddings, Usage
from adapters.openai import OpenAIAdapter


def openai_answer(prompt_tokens: Any) -> JSON:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7, "total_tokens": 18},
    }


def anthropic_answer(prompt_tokens: Any) -> JSON:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": prompt_tokens, "output_tokens": 7},
    }


PROVIDERS: dict[str, tuple[Adapter, Callable[[Any], JSON]]] = {
    "openai": (OpenAIAdapter(), openai_answer),
    "anthropic": (AnthropicAdapter(), anthropic_answer),
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize(
    ("reported", "billed"),
    [(11, 11), (0, 0), (-5, 0), (True, 0), (11.0, 0), ("11", 0)],
)
def test_only_a_count_is_billed(provider: str, reported: Any, billed: int) -> None:
    adapter, answer = PROVIDERS[provider]
    result = adapter.parse_chat(200, orjson.dumps(answer(reported)))
    assert isinstance(result, ChatCompletion) and result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (billed, 7)


@pytest.mark.parametrize(
    ("usage", "billed"),
    [
        ({"prompt_tokens": 5, "total_tokens": 5}, (5, 0)),
        ({"total_tokens": 9}, (9, 0)),  # some OpenAI-style embedding servers report only the total
        ({"prompt_tokens": None, "total_tokens": 9}, (9, 0)),  # null: not reported
        ({"completion_tokens": 3, "total_tokens": 9}, (6, 3)),
        ({}, None),  # no count at all: unreported (charged as the worst case, cost unknown), not 0
        ({"total_tokens": -1}, None),
    ],
)
def test_openai_usage_without_prompt_tokens(usage: JSON, billed: tuple[int, int] | None) -> None:
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}], "usage": usage}
    result = OpenAIAdapter().parse_embeddings(200, orjson.dumps(answer))
    assert isinstance(result, Embeddings)
    counted = None if result.usage is None else (result.usage.prompt_tokens, result.usage.completion_tokens)
    assert counted == billed


def test_openai_audio_tokens_are_read_within_the_prompt_and_completion() -> None:
    answer = {
        **openai_answer(1_000),
        "usage": {
            "prompt_tokens": 1_000,
            "completion_tokens": 500,
            "total_tokens": 1_500,
            "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 800},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400},
        },
    }
    result = OpenAIAdapter().parse_chat(200, orjson.dumps(answer))
    assert isinstance(result, ChatCompletion) and result.usage is not None
    assert result.usage == Usage(1_000, 500, cached_tokens=100, audio_prompt_tokens=800, audio_completion_tokens=400)
    assert result.body["usage"] == answer["usage"]  # passed on as it came
