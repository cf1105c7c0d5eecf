"""The gateway driven by the official `openai` SDK, sync and async, over real sockets to a mock
provider; every body the gateway returns is checked against OpenAI's published schemas."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ACME_KEY, BYOK_KEY, LIMITED_KEY
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway
from tests.support.upstream import OPENAI_TEXT, MockUpstream

CHAT_MODELS = ["gpt", "azure-gpt", "claude", "demo"]
EXTRA_MODELS = ["flaky", "stormy", "with-fallback", "coinflip"]
MESSAGES: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello."},
]


def client(gateway: RunningGateway, key: str = ACME_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0, timeout=10)


def sse_payloads(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_json_matches_schema_and_reports_usage(gateway: RunningGateway, model: str) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    completion = raw.parse()
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_chunks_match_schema(gateway: RunningGateway, model: str, include_usage: bool) -> None:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {ACME_KEY}"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    usage_chunks = [c for c in chunks if c.get("usage")]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1]["choices"] == []
        assert usage_chunks[0]["usage"]["total_tokens"] > 0
    else:
        assert usage_chunks == []
        assert all("usage" not in c for c in chunks)  # not even the `usage: null` OpenAI adds when asked
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert len({c["id"] for c in chunks}) == 1


def test_gateway_always_asks_openai_upstreams_for_usage(gateway: RunningGateway, upstream: MockUpstream) -> None:
    stream = client(gateway).chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
    list(stream)
    sent = upstream.received[-1]
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["model"] == "gpt-4o-mini"


def test_sdk_stream_with_usage(gateway: RunningGateway) -> None:
    stream = client(gateway).chat.completions.create(
        model="gpt", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 11
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "part0 part1 part2 "


def test_async_client_json_and_stream(gateway: RunningGateway) -> None:
    async def scenario() -> tuple[str | None, str]:
        async with openai.AsyncOpenAI(api_key=ACME_KEY, base_url=gateway.url + "/v1", max_retries=0) as aclient:
            completion, stream = await asyncio.gather(
                aclient.chat.completions.create(model="claude", messages=MESSAGES),
                aclient.chat.completions.create(model="claude", messages=MESSAGES, stream=True),
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return completion.choices[0].message.content, text

    content, streamed = asyncio.run(scenario())
    assert content == "Hello from Claude."
    assert streamed == "part0 part1 part2 "


def test_tool_call_round_trip(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.tool_call = True
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    sdk = client(gateway)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    raw = sdk.chat.completions.with_raw_response.create(model="gpt", messages=messages, tools=tools)
    validate("CreateChatCompletionResponse", json.loads(raw.text))
    first = raw.parse()
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    upstream.behaviour.tool_call = False
    second = sdk.chat.completions.create(model="gpt", messages=messages, tools=tools)
    assert second.choices[0].message.content == OPENAI_TEXT
    sent = upstream.received[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "18C and sunny",
    }

    # the same round trip streamed: arguments arrive in pieces and concatenate to the whole JSON
    upstream.behaviour.tool_call = True
    pieces: dict[int, str] = {}
    for chunk in sdk.chat.completions.create(model="gpt", messages=messages[:1], tools=tools, stream=True):
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            pieces[delta_call.index] = pieces.get(delta_call.index, "") + (delta_call.function.arguments or "")  # type: ignore[union-attr]
    assert json.loads(pieces[0]) == {"city": "Paris"}


def test_mock_provider_parallel_tool_calls(gateway: RunningGateway) -> None:
    tools: list[Any] = [
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {}}}},
    ]
    completion = client(gateway).chat.completions.create(
        model="demo", messages=MESSAGES, tools=tools, tool_choice="required"
    )
    names = [c.function.name for c in completion.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert names == ["a", "b"]


@pytest.mark.parametrize("stream", [False, True])
def test_mock_provider_answers_every_one_of_n_choices(gateway: RunningGateway, stream: bool) -> None:
    """As OpenAI does: n choices, indexed 0..n-1, and usage counting the output of every one (what the budget is
    charged). The mock answered one choice whatever n was, so a client (or a load test) that read choices[1] failed."""
    sdk = client(gateway)
    if stream:
        chunks = list(
            sdk.chat.completions.create(
                model="demo", messages=MESSAGES, n=3, stream=True, stream_options={"include_usage": True}
            )
        )
        for chunk in chunks:
            validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        texts: dict[int, str] = {}
        finished = {}
        for chunk in chunks:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finished[choice.index] = choice.finish_reason
        usage = chunks[-1].usage
        assert finished == {0: "stop", 1: "stop", 2: "stop"}
    else:
        completion = sdk.chat.completions.create(model="demo", messages=MESSAGES, n=3)
        validate("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))
        texts = {c.index: c.message.content or "" for c in completion.choices}
        usage = completion.usage
    assert sorted(texts) == [0, 1, 2] and len(set(texts.values())) == 1 and texts[0]
    single = sdk.chat.completions.create(model="demo", messages=MESSAGES).usage
    assert usage is not None and single is not None
    assert usage.completion_tokens == 3 * single.completion_tokens
    assert usage.prompt_tokens == single.prompt_tokens


@pytest.mark.parametrize("model", ["embed", "azure-embed", "demo-embed"])
def test_embeddings(gateway: RunningGateway, model: str) -> None:
    sdk = client(gateway)
    result = sdk.embeddings.create(model=model, input=["one", "two"])  # the SDK asks for base64 and decodes it
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) > 0 and isinstance(d.embedding[0], float) for d in result.data)
    raw = httpx.post(
        gateway.url + "/v1/embeddings",
        json={"model": model, "input": "hello", "encoding_format": "float"},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    assert raw.status_code == 200
    validate("CreateEmbeddingResponse", raw.json())


def test_azure_request_shape(gateway: RunningGateway, upstream: MockUpstream) -> None:
    client(gateway).chat.completions.create(model="azure-gpt", messages=MESSAGES)
    sent = upstream.received[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-upstream-secret"
    assert "Authorization" not in sent.headers


def test_upstream_sees_provider_key_never_client_key(gateway: RunningGateway, upstream: MockUpstream) -> None:
    client(gateway).chat.completions.create(model="gpt", messages=MESSAGES)
    client(gateway).chat.completions.create(model="claude", messages=MESSAGES)
    openai_sent, anthropic_sent = upstream.received[-2:]
    assert openai_sent.headers["Authorization"] == "Bearer sk-upstream-openai-secret"
    assert anthropic_sent.headers["x-api-key"] == "sk-ant-upstream-secret"
    for sent in (openai_sent, anthropic_sent):
        assert ACME_KEY not in json.dumps(sent.headers) + json.dumps(sent.body)


def test_bring_your_own_key_is_used_for_that_tenant_only(gateway: RunningGateway, upstream: MockUpstream) -> None:
    client(gateway, BYOK_KEY).chat.completions.create(model="gpt", messages=MESSAGES)
    assert upstream.received[-1].headers["Authorization"] == "Bearer sk-byok-tenant-secret"
    client(gateway).chat.completions.create(model="gpt", messages=MESSAGES)
    assert upstream.received[-1].headers["Authorization"] == "Bearer sk-upstream-openai-secret"


def test_models_list_shows_only_allowed_models(gateway: RunningGateway) -> None:
    raw = client(gateway).models.with_raw_response.list()
    validate("ListModelsResponse", json.loads(raw.text))
    assert sorted(m.id for m in raw.parse()) == sorted(
        [*EXTRA_MODELS, "gpt", "gpt-short", "azure-gpt", "claude", "demo", "embed", "azure-embed", "demo-embed"]
    )
    assert [m.id for m in client(gateway, LIMITED_KEY).models.list()] == ["demo"]


@pytest.mark.parametrize("base", ["/v1", ""])
def test_models_retrieve_answers_one_model_with_or_without_v1(gateway: RunningGateway, base: str) -> None:
    """The SDK pointed at the gateway's root calls GET /models/{id}: the model, not the list."""
    sdk = openai.OpenAI(api_key=ACME_KEY, base_url=gateway.url + base, max_retries=0, timeout=10)
    raw = sdk.models.with_raw_response.retrieve("claude")
    validate("Model", json.loads(raw.text))
    assert raw.parse().id == "claude"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")


@pytest.mark.parametrize("path", ["/v1/models/", "/models/", "/v1/models/demo/", "/models/demo/"])
def test_models_paths_with_a_trailing_slash(gateway: RunningGateway, path: str) -> None:
    response = httpx.get(gateway.url + path, headers={"authorization": f"Bearer {ACME_KEY}"}, timeout=10)
    assert response.status_code == 200, response.text
    if path.endswith("/models/"):
        validate("ListModelsResponse", response.json())
    else:
        validate("Model", response.json())
        assert response.json()["id"] == "demo"


def test_api_key_header_authenticates_like_azure_clients(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "demo", "messages": MESSAGES},
        headers={"api-key": ACME_KEY},
    )
    assert response.status_code == 200
    validate("CreateChatCompletionResponse", response.json())


def test_azure_sdk_client_against_gateway(gateway: RunningGateway) -> None:
    """AzureOpenAI posts to /openai/deployments/{model}/... with an api-key header."""
    azure = openai.AzureOpenAI(api_key=ACME_KEY, azure_endpoint=gateway.url, api_version="2024-10-21", max_retries=0)
    completion = azure.chat.completions.create(model="demo", messages=MESSAGES)
    assert completion.choices[0].message.content
    chunks = list(azure.chat.completions.create(model="claude", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "part0 part1 part2 "
    embedding = azure.embeddings.create(model="demo-embed", input="hi")
    assert len(embedding.data[0].embedding) > 0
    with pytest.raises(openai.PermissionDeniedError):
        openai.AzureOpenAI(
            api_key=LIMITED_KEY, azure_endpoint=gateway.url, api_version="2024-10-21", max_retries=0
        ).chat.completions.create(model="gpt", messages=MESSAGES)


def test_azure_sdk_client_lists_and_retrieves_models(gateway: RunningGateway) -> None:
    """AzureOpenAI's models.list() and retrieve() call /openai/models[/{id}]?api-version=...: the tenant's models."""
    azure = openai.AzureOpenAI(api_key=LIMITED_KEY, azure_endpoint=gateway.url, api_version="2024-10-21", max_retries=0)
    assert [m.id for m in azure.models.list()] == ["demo"]
    assert azure.models.retrieve("demo").id == "demo"
    with pytest.raises(openai.NotFoundError):
        azure.models.retrieve("claude")  # exists, but not for this tenant


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_streams_reuse_upstream_connections(gateway: RunningGateway, upstream: MockUpstream, model: str) -> None:
    """The body's end arrives after the last event: the client has its [DONE] at once, and the connection goes
    back to the pool once the body has ended (a request meanwhile takes another one)."""
    upstream.behaviour.linger_s = 0.05
    known_before = set(upstream.peers_ever)
    sdk = client(gateway)
    for _ in range(8):
        list(sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True))
        time.sleep(0.15)  # the body has ended by then
    new_connections = {r.peer for r in upstream.received} - known_before
    assert len(new_connections) <= 2, new_connections  # streams gave their connections back to the pool


def test_azure_content_filter_details_reach_azure_clients(gateway: RunningGateway, upstream: MockUpstream) -> None:
    """Azure's 400 content_filter carries which category fired in `innererror`: an Azure client reads it there.
    Only identifiers, booleans and numbers pass (a provider's text, or our key quoted in it, does not)."""
    result = {
        "hate": {"filtered": False, "severity": "safe"},
        "jailbreak": {"filtered": True, "detected": True},
        "custom_blocklists": {"filtered": False, "details": []},
    }
    upstream.behaviour.status = 400
    upstream.behaviour.error_body = {
        "error": {
            "message": "The prompt was filtered.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": result,
                "note": "the key was azure-upstream-secret",
            },
        }
    }
    azure = openai.AzureOpenAI(api_key=ACME_KEY, azure_endpoint=gateway.url, api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model="azure-gpt", messages=MESSAGES)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "content_filter"
    assert error["innererror"] == {
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": result,
        "note": None,  # free text: not passed on
    }
    validate("ErrorResponse", {"error": error})


def test_azure_error_details_past_a_few_kilobytes_are_dropped(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.status = 400
    bulky = {f"k{i}": [{f"f{j}": True for j in range(32)}] * 16 for i in range(32)}  # 32 x 16 x 32 facts
    upstream.behaviour.error_body = {
        "error": {"message": "no", "type": "invalid_request_error", "param": None, "code": "x", "innererror": bulky}
    }
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "azure-gpt", "messages": MESSAGES},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    assert response.status_code == 400
    assert "innererror" not in response.json()["error"]
