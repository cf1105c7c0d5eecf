"""Azure OpenAI API versions: what a streamed request may carry to each."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from adapters.azure import AzureAdapter
from adapters.base import ChatRequest, Target

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("api_version", "asked", "sent"),
    [
        # before 2024-09-01 Azure refuses stream_options with a 400, the client's own included: it is not sent
        ("2024-06-01", {"include_usage": True}, None),
        ("2024-06-01", {"include_usage": False}, None),
        ("2024-06-01", None, None),
        # from then on usage is always asked for (the gateway hides it from a client that did not ask)
        ("2024-10-21", None, {"include_usage": True}),
        ("2024-10-21", {"include_usage": False}, {"include_usage": True}),
        ("2024-10-21", {"include_usage": True}, {"include_usage": True}),
    ],
)
def test_stream_options_reach_only_the_api_versions_that_accept_them(
    api_version: str, asked: dict[str, Any] | None, sent: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {"model": "alias", "messages": MESSAGES, "stream": True}
    if asked is not None:
        body["stream_options"] = asked
    req = ChatRequest(body, stream=True, include_usage=bool(asked and asked["include_usage"]))
    target = Target("az", "my-deployment", "https://res.openai.azure.com", "key", api_version)
    upstream = orjson.loads(AzureAdapter().build_chat(req, target).body)
    assert upstream.get("stream_options") == sent


@pytest.mark.parametrize(
    ("api_version", "asked", "sent"),
    [
        # before 2024-09-01 Azure knows only max_tokens, and refuses max_completion_tokens (a 400, "Unrecognized
        # request argument supplied"), which the OpenAI SDK and most frameworks now send: it goes as max_tokens
        ("2024-06-01", {"max_completion_tokens": 50}, {"max_tokens": 50}),
        ("2024-08-01-preview", {"max_completion_tokens": 50}, {"max_tokens": 50}),
        ("2024-06-01", {"max_tokens": 50}, {"max_tokens": 50}),
        ("2024-06-01", {"max_tokens": 50, "max_completion_tokens": None}, {"max_tokens": 50}),
        # from then on each is sent as the client sent it
        ("2024-10-21", {"max_completion_tokens": 50}, {"max_completion_tokens": 50}),
        ("2024-10-21", {"max_tokens": 50}, {"max_tokens": 50}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_the_output_limit_reaches_each_api_version_under_the_name_it_knows(
    api_version: str, asked: dict[str, Any], sent: dict[str, Any], stream: bool
) -> None:
    body: dict[str, Any] = {"model": "alias", "messages": MESSAGES, "stream": stream, **asked}
    req = ChatRequest(body, stream=stream)
    target = Target("az", "my-deployment", "https://res.openai.azure.com", "key", api_version)
    upstream = orjson.loads(AzureAdapter().build_chat(req, target).body)
    assert {key: upstream[key] for key in ("max_tokens", "max_completion_tokens") if key in upstream} == sent


def test_both_limits_reach_an_old_api_version_as_the_lower_one() -> None:
    body: dict[str, Any] = {"model": "alias", "messages": MESSAGES, "max_tokens": 80, "max_completion_tokens": 50}
    target = Target("az", "my-deployment", "https://res.openai.azure.com", "key", "2024-06-01")
    upstream = orjson.loads(AzureAdapter().build_chat(ChatRequest(body), target).body)
    assert upstream["max_tokens"] == 50 and "max_completion_tokens" not in upstream
