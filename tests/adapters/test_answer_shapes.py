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


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


ANSWERS_HOLDING = {
    "openai chat": lambda deep: (
        OpenAIAdapter().parse_chat,
        {"choices": [{**GOOD_CHOICE, "message": {"role": "assistant", "content": "hi", "x": deep}}]},
    ),
    "openai embeddings": lambda deep: (
        OpenAIAdapter().parse_embeddings,
        {"data": [{"object": "embedding", "index": 0, "embedding": deep}]},
    ),
    "anthropic": lambda deep: (
        AnthropicAdapter().parse_chat,
        {"type": "message", "id": "m", "model": "c", "content": [{"type": "text", "text": "hi", "x": deep}]},
    ),
}


@pytest.mark.parametrize("answer", sorted(ANSWERS_HOLDING))
@pytest.mark.parametrize(("depth", "well_formed"), [(150, True), (300, False)])
def test_an_answer_nested_deeper_than_can_be_passed_on_is_the_provider_s_fault(
    answer: str, depth: int, well_formed: bool
) -> None:
    """orjson reads 1,023 levels but writes only 254: deeper, the answer could be read but not passed on."""
    parse, body = ANSWERS_HOLDING[answer](nested(depth))
    result = parse(200, json.dumps(body).encode())  # (json: orjson cannot write it either)
    assert isinstance(result, (ChatCompletion, Embeddings)) if well_formed else result == UNEXPECTED_SHAPE
