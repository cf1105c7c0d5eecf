"""A provider's 2xx answer that is not shaped as its API's is an error (a 502 to the caller), not relayed:
a client would get something that is not a chat completion, or the gateway would read usage from it."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from adapters.anthropic import AnthropicAdapter
from adapters.base import UNEXPECTED_SHAPE, ChatCompletion, ChatRequest, Embeddings, ProviderError, SSEEvent
from adapters.openai import OpenAIAdapter, OpenAIStreamTranslator

GOOD_CHOICE = {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}


@pytest.mark.parametrize(
    ("answer", "well_formed"),
    [
        ({"choices": [GOOD_CHOICE]}, True),
        ({"choices": []}, True),
        ({"choices": [1, "x"]}, False),
        ({"choices": [{"index": 0, "message": "str"}]}, False),
        ({"choices": [{"index": 0}]}, False),
        ({"choices": {"0": GOOD_CHOICE}}, False),
        ([GOOD_CHOICE], False),
    ],
)
def test_openai_chat_answers(answer: Any, well_formed: bool) -> None:
    result = OpenAIAdapter().parse_chat(200, orjson.dumps(answer))
    assert isinstance(result, ChatCompletion) if well_formed else result == UNEXPECTED_SHAPE


@pytest.mark.parametrize(
    ("answer", "well_formed"),
    [
        ({"data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]}, True),
        ({"data": ["x"]}, False),
        ({"data": None}, False),
    ],
)
def test_openai_embeddings_answers(answer: Any, well_formed: bool) -> None:
    result = OpenAIAdapter().parse_embeddings(200, orjson.dumps(answer))
    assert isinstance(result, Embeddings) if well_formed else result == UNEXPECTED_SHAPE


def test_anthropic_message_with_content_that_is_not_blocks() -> None:
    answer = {"type": "message", "id": "m", "model": "c", "content": ["hi"], "usage": {}}
    assert AnthropicAdapter().parse_chat(200, orjson.dumps(answer)) == UNEXPECTED_SHAPE


@pytest.mark.parametrize("choices", [7, "x", {"0": {}}])
def test_an_openai_stream_chunk_whose_choices_is_not_a_list_is_a_malformed_event(choices: Any) -> None:
    translator = OpenAIStreamTranslator(ChatRequest({}, stream=True))
    assert translator.feed(SSEEvent(None, orjson.dumps({"id": "c", "choices": choices}).decode())) == []
    assert isinstance(translator.error, ProviderError) and "malformed" in translator.error.message


def test_an_anthropic_tool_input_nested_deeper_than_can_be_passed_on_is_the_provider_s_fault() -> None:
    """orjson reads 1,023 levels but writes only 254: the tool's input could be read but not made arguments."""
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {"x": deep}}
    answer = {"type": "message", "id": "m", "model": "c", "content": [block]}
    assert AnthropicAdapter().parse_chat(200, json.dumps(answer).encode()) == UNEXPECTED_SHAPE  # (json: orjson
    # cannot write it either)
