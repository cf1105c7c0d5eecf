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
