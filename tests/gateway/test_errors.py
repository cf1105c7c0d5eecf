"""Bad input, upstream failures and admin calls: each gets the right status and an OpenAI error
body that validates against `ErrorResponse`, and no answer ever carries a secret."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.errors import Quota, RateLimited, duration, render
from gateway.middleware.error_boundary import ErrorBoundary
from gateway.request_models import ORJSON_WRITE_DEPTH
from tests.conftest import ACME_KEY, ADMIN_TOKEN, LIMITED_KEY, UPSTREAM_SECRETS, gateway_config
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway, sha
from tests.support.upstream import MockUpstream

AUTH = {"authorization": f"Bearer {ACME_KEY}"}
OK_MESSAGES = [{"role": "user", "content": "hi"}]


def post(gateway: RunningGateway, path: str, content: bytes | str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        gateway.url + path, content=content, headers={"content-type": "application/json", **headers}, timeout=10
    )


def nested(depth: int) -> Any:
    """A JSON value `depth` arrays deep."""
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def body_of(**fields: Any) -> str:
    return json.dumps({"model": "demo", "messages": OK_MESSAGES, **fields})


BAD_INPUTS: list[tuple[str, str, str | bytes, dict[str, str], int, str | None, str | None]] = [
    # (case, path, body, headers, status, code, param)
    ("no key", "/v1/chat/completions", body_of(), {}, 401, "missing_api_key", None),
    ("bad key", "/v1/chat/completions", body_of(), {"authorization": "Bearer sk-nope"}, 401, "invalid_api_key", None),
    (
        "not bearer",
        "/v1/chat/completions",
        body_of(),
        {"authorization": f"Basic {ACME_KEY}"},
        401,
        "invalid_api_key",
        None,
    ),
    (
        "two keys disagree",
        "/v1/chat/completions",
        body_of(),
        {**AUTH, "api-key": LIMITED_KEY},
        400,
        "conflicting_credentials",
        None,
    ),
    ("not json", "/v1/chat/completions", b"{model: demo", AUTH, 400, "invalid_json", None),
    ("five stop sequences", "/v1/chat/completions", body_of(stop=list("abcde")), AUTH, 400, "invalid_value", "stop"),
    (
        "empty content parts",
        "/v1/chat/completions",
        body_of(messages=[{"role": "user", "content": []}]),
        AUTH,
        400,
        "invalid_value",
        "messages[0].content",
    ),
    (
        "empty embeddings input",
        "/v1/embeddings",
        json.dumps({"model": "demo", "input": ""}),
        AUTH,
        400,
        "invalid_value",
        "input",
    ),
    (
        "an empty token list",
        "/v1/embeddings",
        json.dumps({"model": "demo", "input": [[]]}),
        AUTH,
        400,
        "invalid_value",
        "input[0]",
    ),
    (
        "an empty string among the inputs",
        "/v1/embeddings",
        json.dumps({"model": "demo", "input": ["a", ""]}),
        AUTH,
        400,
        "invalid_value",
        "input[1]",
    ),
    (
        "2,049 inputs",
        "/v1/embeddings",
        json.dumps({"model": "demo", "input": ["x"] * 2049}),
        AUTH,
        400,
        "invalid_value",
        "input",
    ),
    ("nested 129 deep", "/v1/chat/completions", body_of(x=nested(128)), AUTH, 400, "invalid_json", None),
    ("nested 300 deep", "/v1/chat/completions", body_of(x=nested(299)), AUTH, 400, "invalid_json", None),
    (
        "tool schema nested 200 deep",
        "/v1/chat/completions",
        body_of(tools=[{"type": "function", "function": {"name": "f", "parameters": nested(200)}}]),
        AUTH,
        400,
        "invalid_json",
        None,
    ),
    (
        "embeddings nested 300 deep",
        "/v1/embeddings",
        json.dumps({"model": "demo", "input": "hi", "x": nested(299)}),
        AUTH,
        400,
        "invalid_json",
        None,
    ),
    ("json array", "/v1/chat/completions", b"[]", AUTH, 400, "invalid_json", None),
    ("empty body", "/v1/chat/completions", b"", AUTH, 400, "invalid_json", None),
    ("invalid utf-8", "/v1/chat/completions", b'{"model": "\xff"}', AUTH, 400, "invalid_json", None),
    (
        "missing model",
        "/v1/chat/completions",
        json.dumps({"messages": OK_MESSAGES}),
        AUTH,
        400,
        "missing_required_parameter",
        "model",
    ),
    (
        "missing messages",
        "/v1/chat/completions",
        json.dumps({"model": "demo"}),
        AUTH,
        400,
        "missing_required_parameter",
        "messages",
    ),
    ("empty messages", "/v1/chat/completions", body_of(messages=[]), AUTH, 400, "empty_array", "messages"),
    ("messages not a list", "/v1/chat/completions", body_of(messages="hi"), AUTH, 400, "invalid_value", "messages"),
    (
        "wrong role",
        "/v1/chat/completions",
        body_of(messages=[{"role": "wizard", "content": "x"}]),
        AUTH,
        400,
        "invalid_value",
        "messages[0].role",
    ),
    (
        "missing role",
        "/v1/chat/completions",
        body_of(messages=[{"content": "x"}]),
        AUTH,
        400,
        "missing_required_parameter",
        "messages[0].role",
    ),
    (
        "content wrong type",
        "/v1/chat/completions",
        body_of(messages=[{"role": "user", "content": 5}]),
        AUTH,
        400,
        "invalid_value",
        "messages[0].content",
    ),
    (
        "bad content part",
        "/v1/chat/completions",
        body_of(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        AUTH,
        400,
        "missing_required_parameter",
        "messages[0].content[0].text",
    ),
    (
        "tool without id",
        "/v1/chat/completions",
        body_of(messages=[{"role": "tool", "content": "x"}]),
        AUTH,
        400,
        "missing_required_parameter",
        "messages[0].tool_call_id",
    ),
    (
        "temperature string",
        "/v1/chat/completions",
        body_of(temperature="hot"),
        AUTH,
        400,
        "invalid_value",
        "temperature",
    ),
    ("temperature too high", "/v1/chat/completions", body_of(temperature=3), AUTH, 400, "invalid_value", "temperature"),
    ("stream not bool", "/v1/chat/completions", body_of(stream="yes"), AUTH, 400, "invalid_value", "stream"),
    *[
        (
            f"{model}: stream_options{stream_field} without stream",
            "/v1/chat/completions",
            body_of(model=model, stream_options={"include_usage": True}, **stream),
            AUTH,
            400,
            "invalid_value",
            "stream_options",
        )
        for model in ("demo", "gpt", "claude")
        for stream_field, stream in (
            ("", {}),
            (", stream false", {"stream": False}),
            (", stream null", {"stream": None}),
        )
    ],
    ("max_tokens zero", "/v1/chat/completions", body_of(max_tokens=0), AUTH, 400, "invalid_value", "max_tokens"),
    (
        "max_tokens over cap",
        "/v1/chat/completions",
        body_of(max_tokens=5000),
        AUTH,
        400,
        "max_tokens_exceeded",
        "max_tokens",
    ),
    (
        "tool_choice bad",
        "/v1/chat/completions",
        body_of(tool_choice="sometimes"),
        AUTH,
        400,
        "invalid_value",
        "tool_choice",
    ),
    (
        "five stop words",
        "/v1/chat/completions",
        body_of(stop=["a", "b", "c", "d", "e"]),
        AUTH,
        400,
        "invalid_value",
        "stop",
    ),
    ("unknown model", "/v1/chat/completions", body_of(model="gpt-9"), AUTH, 404, "model_not_found", "model"),
    (
        "model not allowed",
        "/v1/chat/completions",
        body_of(model="gpt"),
        {"authorization": f"Bearer {LIMITED_KEY}"},
        403,
        "model_not_allowed",
        "model",
    ),
    (
        "over tenant cap",
        "/v1/chat/completions",
        body_of(max_tokens=200),
        {"authorization": f"Bearer {LIMITED_KEY}"},
        400,
        "max_tokens_exceeded",
        "max_tokens",
    ),
    (
        "body too large",
        "/v1/chat/completions",
        body_of(messages=[{"role": "user", "content": "x" * 30000}]),
        AUTH,
        413,
        "request_too_large",
        None,
    ),
    ("unknown path", "/v1/completions-ish", body_of(), AUTH, 404, "not_found", None),
    ("model name too long", "/v1/chat/completions", body_of(model="m" * 257), AUTH, 400, "invalid_value", "model"),
    (
        "embeddings model name too long",
        "/v1/embeddings",
        json.dumps({"model": "m" * 257, "input": "x"}),
        AUTH,
        400,
        "invalid_value",
        "model",
    ),
    (
        "embeddings no input",
        "/v1/embeddings",
        json.dumps({"model": "demo-embed"}),
        AUTH,
        400,
        "missing_required_parameter",
        "input",
    ),
    (
        "embeddings bad format",
        "/v1/embeddings",
        json.dumps({"model": "demo-embed", "input": "x", "encoding_format": "hex"}),
        AUTH,
        400,
        "invalid_value",
        "encoding_format",
    ),
    (
        "embeddings on anthropic",
        "/v1/embeddings",
        json.dumps({"model": "claude", "input": "x"}),
        AUTH,
        400,
        "unsupported_parameter",
        "model",
    ),
    ("anthropic n=2", "/v1/chat/completions", body_of(model="claude", n=2), AUTH, 400, "unsupported_parameter", "n"),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code", "param"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_openai_error(
    gateway: RunningGateway,
    path: str,
    body: str | bytes,
    headers: dict[str, str],
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    response = post(gateway, path, body, headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    validate("ErrorResponse", error)
    assert error["error"]["code"] == code
    assert error["error"]["param"] == param
    assert error["error"]["message"]
    assert "Traceback" not in response.text
    assert ACME_KEY not in response.text and LIMITED_KEY not in response.text


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ([("authorization", f"Bearer {ACME_KEY}"), ("authorization", f"Bearer {LIMITED_KEY}")], 400),
        ([("authorization", "Bearer sk-nope"), ("authorization", f"Bearer {ACME_KEY}")], 400),
        ([("authorization", f"Bearer {ACME_KEY}"), ("authorization", "Bearer sk-nope")], 400),
        ([("api-key", "sk-nope"), ("api-key", ACME_KEY)], 400),
        ([("authorization", f"Bearer {ACME_KEY}"), ("api-key", ACME_KEY), ("api-key", LIMITED_KEY)], 400),
        ([("authorization", f"Bearer {ACME_KEY}"), ("authorization", f"bearer {ACME_KEY}")], 200),
        ([("api-key", ACME_KEY), ("api-key", ACME_KEY)], 200),
    ],
    ids=[
        "two bearers",
        "a wrong bearer first",
        "a wrong bearer last",
        "two api-keys",
        "a bearer and two api-keys",
        "the same bearer twice",
        "the same api-key twice",
    ],
)
def test_a_key_sent_in_several_header_lines_must_be_one_key(
    gateway: RunningGateway, lines: list[tuple[str, str]], status: int
) -> None:
    """Which of two keys a request is billed to must not depend on which line a server reads (a proxy in front
    may check the last one): lines that disagree are refused as an Authorization and an api-key that disagree are."""
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=body_of(),
        headers=[("content-type", "application/json"), *lines],
        timeout=10,
    )
    assert response.status_code == status, response.text
    if status != 200:
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["code"] == "conflicting_credentials"
        assert ACME_KEY not in response.text and LIMITED_KEY not in response.text


def test_a_null_stream_options_without_stream_is_served(gateway: RunningGateway) -> None:
    """A null is no options given (what an SDK sends for an explicit None): only options set need a stream."""
    response = post(gateway, "/v1/chat/completions", body_of(stream=False, stream_options=None), AUTH)
    assert response.status_code == 200, response.text


def test_a_body_nested_to_the_limit_is_served(gateway: RunningGateway) -> None:
    for model in ("demo", "gpt", "claude"):  # in process, and translated for OpenAI's and Anthropic's APIs
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x": nested(123)}}}
        body = body_of(model=model, x=nested(127), tools=[tool])  # 128 levels, with the body itself
        response = post(gateway, "/v1/chat/completions", body, AUTH)
        assert response.status_code == 200, (model, response.text)


def test_orjson_writes_the_depth_the_body_check_counts_on() -> None:
    """The body's depth is told by orjson failing to write it inside enough lists: that needs its exact limit."""
    orjson.dumps(nested(ORJSON_WRITE_DEPTH))
    with pytest.raises(orjson.JSONEncodeError, match="Recursion"):
        orjson.dumps(nested(ORJSON_WRITE_DEPTH + 1))


def test_a_body_of_many_shallow_arrays_is_served(gateway: RunningGateway) -> None:
    """2,048 token arrays are over 128 brackets, but 3 levels deep."""
    body = json.dumps({"model": "embed", "input": [[1]] * 2048})
    assert post(gateway, "/v1/embeddings", body, AUTH).status_code == 200


ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "allow"),
    [
        ("GET", "/v1/chat/completions", AUTH, "POST"),
        ("DELETE", "/v1/embeddings", AUTH, "POST"),
        ("POST", "/v1/models", AUTH, "GET, HEAD"),
        ("DELETE", "/v1/models/demo", AUTH, "GET, HEAD"),
        ("PUT", "/models/demo", AUTH, "GET, HEAD"),
        ("GET", "/openai/deployments/demo/chat/completions?api-version=2024-10-21", AUTH, "POST"),
        ("POST", "/healthz", {}, "GET, HEAD"),
        ("POST", "/admin/tenants/acme", ADMIN, "GET, HEAD"),
        ("GET", "/admin/providers/demo/ping", ADMIN, "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(
    gateway: RunningGateway, method: str, path: str, headers: dict[str, str], allow: str
) -> None:
    """RFC 9110: a 405 names the methods the resource has, whichever part of the gateway answers it."""
    response = httpx.request(method, gateway.url + path, headers=headers, timeout=10)
    assert response.status_code == 405, response.text
    validate("ErrorResponse", response.json())
    assert response.headers["allow"] == allow


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/chat/completions", 405),
        ("PUT", "/v1/embeddings", 405),
        ("POST", "/v1/models", 405),
        ("POST", "/v1/responses", 404),
        ("GET", "/openai/deployments/demo/chat/completions?api-version=2024-10-21", 405),
        ("POST", "/openai/deployments/demo/completions?api-version=2024-10-21", 404),
    ],
)
def test_every_api_error_carries_a_request_id(gateway: RunningGateway, method: str, path: str, status: int) -> None:
    """OpenAI answers every call with x-request-id (the SDKs put it on their errors, support asks for it); so does
    each of the gateway's answers, whichever part of it answers."""
    response = httpx.request(method, gateway.url + path, headers=AUTH, timeout=10)
    assert response.status_code == status, response.text
    validate("ErrorResponse", response.json())
    assert response.headers.get("x-request-id", "").startswith("req_"), response.headers


def test_a_bug_outside_the_endpoints_is_a_500_with_its_request_id_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def buggy(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": []}
    with caplog.at_level("ERROR", logger="gateway"):
        asyncio.run(ErrorBoundary(buggy)(scope, receive, send))
    assert sent[0]["status"] == 500
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert request_id.startswith("req_") and request_id in caplog.text


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/healthz", {}),
        ("/readyz", {}),
        ("/metrics", {}),
        ("/v1/models", AUTH),
        ("/models/demo", AUTH),
        ("/admin/tenants", ADMIN),
    ],
)
def test_head_is_answered_where_get_is(gateway: RunningGateway, path: str, headers: dict[str, str]) -> None:
    """Uptime monitors (UptimeRobot's default) and load balancers probe with HEAD: it is GET without the body."""
    got = httpx.get(gateway.url + path, headers=headers, timeout=10)
    head = httpx.head(gateway.url + path, headers=headers, timeout=10)
    assert (head.status_code, head.headers["content-type"], head.content) == (200, got.headers["content-type"], b"")


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CHAT_BODY = body_of().encode()
EMBEDDINGS_BODY = json.dumps({"model": "demo-embed", "input": ["one", "two"]}).encode()
HALF = len(CHAT_BODY) // 2


@pytest.mark.parametrize(
    ("path", "encoding", "content", "status", "code"),
    [
        ("/v1/chat/completions", "gzip", gzip.compress(CHAT_BODY), 200, None),
        ("/v1/embeddings", "gzip", gzip.compress(EMBEDDINGS_BODY), 200, None),
        ("/v1/chat/completions", "GZIP", gzip.compress(CHAT_BODY), 200, None),
        ("/v1/chat/completions", "x-gzip", gzip.compress(CHAT_BODY), 200, None),
        ("/v1/chat/completions", "gzip", gzip.compress(CHAT_BODY[:HALF]) + gzip.compress(CHAT_BODY[HALF:]), 200, None),
        ("/v1/chat/completions", "deflate", zlib.compress(CHAT_BODY), 200, None),
        ("/v1/chat/completions", "deflate", raw_deflate(CHAT_BODY), 200, None),
        ("/v1/chat/completions", "identity", CHAT_BODY, 200, None),
        ("/v1/chat/completions", "br", CHAT_BODY, 415, "unsupported_content_encoding"),
        ("/v1/chat/completions", "gzip", CHAT_BODY, 400, "invalid_content_encoding"),
        ("/v1/chat/completions", "gzip", gzip.compress(CHAT_BODY)[:-12], 400, "invalid_content_encoding"),
        ("/v1/chat/completions", "gzip", gzip.compress(CHAT_BODY) + b"junk", 400, "invalid_content_encoding"),
        # each member copies the rest of the body: a 4 MB body of tiny members would cost minutes
        (
            "/v1/chat/completions",
            "gzip",
            gzip.compress(CHAT_BODY) + gzip.compress(b"") * 16,
            400,
            "invalid_content_encoding",
        ),
        # each coding may inflate to the limit again
        (
            "/v1/chat/completions",
            "gzip, gzip, gzip",
            gzip.compress(gzip.compress(gzip.compress(CHAT_BODY))),
            415,
            "unsupported_content_encoding",
        ),
        ("/v1/chat/completions", "gzip, gzip", gzip.compress(gzip.compress(CHAT_BODY)), 200, None),
        # 20 kB is the test gateway's max_body_bytes; a few hundred bytes of gzip inflate past it
        ("/v1/chat/completions", "gzip", gzip.compress(body_of(x="0" * 100_000).encode()), 413, "request_too_large"),
    ],
    ids=[
        "gzip",
        "gzip-embeddings",
        "GZIP",
        "x-gzip",
        "gzip-two-members",
        "deflate",
        "raw-deflate",
        "identity",
        "br",
        "not-gzip",
        "truncated",
        "trailing-junk",
        "seventeen-members",
        "three-codings",
        "two-codings",
        "bomb",
    ],
)
def test_a_compressed_request_body_is_read_as_the_json_it_holds(
    gateway: RunningGateway, path: str, encoding: str, content: bytes, status: int, code: str | None
) -> None:
    """Some clients compress large bodies (Content-Encoding: gzip), as OpenAI's and Anthropic's APIs accept; the
    gateway read the compressed bytes as JSON ('str is not valid UTF-8', a 400)."""
    response = post(gateway, path, content, {**AUTH, "content-encoding": encoding})
    assert response.status_code == status, response.text
    if status == 200:
        validate("CreateChatCompletionResponse" if "chat" in path else "CreateEmbeddingResponse", response.json())
        return
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == code
    if status == 415:
        assert response.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("codings", "content", "status"),
    [
        (["gzip", "gzip"], gzip.compress(gzip.compress(CHAT_BODY)), 200),
        (["deflate", "gzip"], gzip.compress(zlib.compress(CHAT_BODY)), 200),
        (["gzip", "br"], gzip.compress(CHAT_BODY), 415),
        (["gzip", "gzip", "gzip"], gzip.compress(gzip.compress(gzip.compress(CHAT_BODY))), 415),
    ],
    ids=["gzip-twice", "deflate-then-gzip", "gzip-then-br", "three-lines"],
)
def test_content_encoding_in_several_lines_is_one_list_of_codings(
    gateway: RunningGateway, codings: list[str], content: bytes, status: int
) -> None:
    """RFC 9110 5.3: a header's lines are one comma-separated list; the gateway read only the first line, and
    answered a body coded twice as JSON it could not parse."""
    lines = [("content-encoding", coding) for coding in codings]
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=content,
        headers=[("content-type", "application/json"), *AUTH.items(), *lines],
        timeout=10,
    )
    assert response.status_code == status, response.text
    if status == 200:
        validate("CreateChatCompletionResponse", response.json())
    else:
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["code"] == "unsupported_content_encoding"


def test_sdk_raises_typed_errors(gateway: RunningGateway) -> None:
    sdk = openai.OpenAI(api_key="sk-wrong", base_url=gateway.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="demo", messages=OK_MESSAGES)  # type: ignore[arg-type]
    sdk = openai.OpenAI(api_key=ACME_KEY, base_url=gateway.url + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope", messages=OK_MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="demo", messages=[{"role": "wizard", "content": "x"}])  # type: ignore[list-item]


UPSTREAM_FAILURES: list[tuple[str, int, dict[str, Any] | None, int, str | None]] = [
    # (model, upstream status, upstream error body, gateway status, code)
    ("gpt", 500, None, 502, "upstream_error"),
    ("gpt", 503, None, 502, "upstream_error"),
    (
        "gpt",
        401,
        {
            "error": {
                "message": "Incorrect API key provided: sk-upstr*****cret",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
        502,
        "upstream_auth_failed",
    ),
    (
        "gpt",
        400,
        {
            "error": {
                "message": "context too long",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        400,
        "context_length_exceeded",
    ),
    (
        "gpt",
        429,
        {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
        429,
        "rate_limit_exceeded",
    ),
    (  # the gateway's own OpenAI account out of credit: no use waiting, and not the caller's quota
        "gpt",
        429,
        {
            "error": {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
        502,
        "upstream_payment_required",
    ),
    (
        "claude",
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        502,
        "upstream_error",
    ),
    (
        "claude",
        400,
        {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}},
        400,
        None,
    ),
    (  # the gateway's own account with the provider is out of credit: not the caller's fault, tried elsewhere
        "claude",
        402,
        {"type": "error", "error": {"type": "billing_error", "message": "Your credit balance is too low"}},
        502,
        "upstream_payment_required",
    ),
    (
        "claude",
        401,
        {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
        502,
        "upstream_auth_failed",
    ),
    (  # the prompt past the model's context window: OpenAI's code for it, which clients act on
        "claude",
        400,
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"},
        },
        400,
        "context_length_exceeded",
    ),
    (  # Anthropic's credit refusal, as it sends it: a 400 invalid_request_error about the gateway's account
        "claude",
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                "to upgrade or purchase credits.",
            },
        },
        502,
        "upstream_payment_required",
    ),
    (  # a spend limit set on the gateway's organization or workspace: a 400 too
        "claude",
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "You have reached your specified workspace API usage limits. You will regain access on "
                "2026-12-01 at 00:00 UTC.",
            },
        },
        502,
        "upstream_payment_required",
    ),
    (  # the usage tier's monthly spend cap: a 429 that no Retry-After lifts before the month ends
        "claude",
        429,
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "You have reached your monthly spend limit for your usage tier.",
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
        },
        502,
        "upstream_payment_required",
    ),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "up_status", "up_body", "status", "code"), UPSTREAM_FAILURES)
def test_upstream_failure_before_first_byte(
    gateway: RunningGateway,
    upstream: MockUpstream,
    stream: bool,
    model: str,
    up_status: int,
    up_body: dict[str, Any] | None,
    status: int,
    code: str | None,
) -> None:
    upstream.behaviour.status = up_status
    upstream.behaviour.error_body = up_body
    upstream.behaviour.retry_after = "7" if up_status == 429 else None
    response = post(gateway, "/v1/chat/completions", body_of(model=model, stream=stream), AUTH)
    assert response.status_code == status, response.text
    error = response.json()
    validate("ErrorResponse", error)
    if code is not None:
        assert error["error"]["code"] == code
    if status == 429:
        assert response.headers["retry-after"] == "7"
    for secret in UPSTREAM_SECRETS:
        assert secret not in response.text
    assert "sk-upstr" not in response.text  # not even the provider's masked echo of our key


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_upstream_failure_mid_stream_becomes_error_event(
    gateway: RunningGateway, upstream: MockUpstream, model: str
) -> None:
    upstream.behaviour.fail_mid_stream = True
    sdk = openai.OpenAI(api_key=ACME_KEY, base_url=gateway.url + "/v1", max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk.chat.completions.create(model=model, messages=OK_MESSAGES, stream=True):  # type: ignore[arg-type]
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["part0 "]  # what arrived before the failure reached the client
    assert "overloaded" in str(caught.value).lower()
    raw = post(gateway, "/v1/chat/completions", body_of(model=model, stream=True), AUTH)
    events = [line[6:] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] != "[DONE]"
    validate("ErrorResponse", json.loads(events[-1]))


def test_upstream_timeout_is_504(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.delay_s = 6  # the model's timeout_s is 5
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt"), AUTH)
    assert response.status_code == 504
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_timeouts_are_retried_within_the_total(
    gateway: RunningGateway, upstream: MockUpstream, stream: bool
) -> None:
    upstream.behaviour.delay_s = 3  # gpt-short: first_byte_timeout_s 0.5, timeout_s 1.5, retries 2
    started = time.monotonic()
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt-short", stream=stream), AUTH)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert len(upstream.received) >= 2  # each attempt gave up after 0.5 s and the next one was tried
    assert elapsed < 2.2  # the model's timeout_s bounds all attempts together, not each one


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b""], ids=["html", "empty"])
def test_a_stream_with_no_event_is_a_failed_attempt_answered_before_the_stream_starts(
    gateway: RunningGateway, upstream: MockUpstream, body: bytes
) -> None:
    """Nothing was promised to the client yet: a 502 saying the stream ended short (the provider was reached,
    so not "could not be reached"), not retried, as a provider that answered a JSON body may have done the
    work."""
    upstream.behaviour.stream_body = body
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt", stream=True), AUTH)
    assert response.status_code == 502, response.text
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "upstream_error"
    assert "ended its stream before the answer was complete" in response.json()["error"]["message"]
    assert len(upstream.received) == 1


STREAMED_BAD_REQUESTS = {
    "openai": {
        "message": "too long",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    },
    "vllm": {"object": "error", "message": "too long", "type": "BadRequestError", "param": None, "code": 400},
    "azure content filter": {"message": "filtered", "type": None, "param": "prompt", "code": "content_filter"},
}


@pytest.mark.parametrize("told", sorted(STREAMED_BAD_REQUESTS))
def test_a_bad_request_told_as_a_stream_s_first_event_is_a_400_not_retried_not_held_against_the_provider(
    gateway: RunningGateway, upstream: MockUpstream, told: str
) -> None:
    """Servers that stream their errors (vLLM, OpenRouter) put the request's own fault in an event: it is the
    client's 400, not a provider failure to retry, and the circuit stays closed for everyone else."""
    error = STREAMED_BAD_REQUESTS[told]
    upstream.behaviour.stream_body = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
    for _ in range(6):  # flaky opens its circuit after 3 failures
        response = post(gateway, "/v1/chat/completions", body_of(model="flaky", stream=True), AUTH)
        assert response.status_code == 400, response.text
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["code"] == str(error["code"])
    assert len(upstream.received) == 6  # one attempt each
    upstream.behaviour.stream_body = None
    assert post(gateway, "/v1/chat/completions", body_of(model="flaky"), AUTH).status_code == 200


def test_a_stream_cut_short_after_its_first_chunk_ends_with_an_error_event(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    upstream.behaviour.stream_body = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    )
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt", stream=True), AUTH)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    last = json.loads(events[-1])
    validate("ErrorResponse", last)
    assert last["error"]["code"] == "upstream_error"
    assert "ended its stream before the answer was complete" in last["error"]["message"]


@pytest.mark.parametrize("model", ["gpt", "with-fallback"])
def test_an_error_as_a_stream_s_first_event_is_retried_or_handed_to_a_fallback(
    gateway: RunningGateway, upstream: MockUpstream, model: str
) -> None:
    """A 200 whose first event is an error (Anthropic's overloaded_error, say) has promised the client
    nothing: it is a failed attempt like a 5xx, retried and then passed to a fallback."""
    overloaded = {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}}
    upstream.behaviour.stream_body = b"data: " + json.dumps(overloaded).encode() + b"\n\n"
    response = post(gateway, "/v1/chat/completions", body_of(model=model, stream=True), AUTH)
    assert len(upstream.received) > 1  # retried
    if model == "gpt":
        assert response.status_code == 502, response.text
        validate("ErrorResponse", response.json())
        assert "Overloaded" in response.json()["error"]["message"]
    else:  # the in-process mock answers
        assert response.status_code == 200
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and not any('"error"' in event for event in events)


def test_total_timeout_mid_stream_ends_with_error_event(gateway: RunningGateway, upstream: MockUpstream) -> None:
    upstream.behaviour.chunks = 50
    upstream.behaviour.chunk_interval_s = 0.2  # 10 s of stream against timeout_s 1.5
    started = time.monotonic()
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt-short", stream=True), AUTH)
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert any("part0" in e for e in events)
    error = json.loads(events[-1])
    validate("ErrorResponse", error)
    assert error["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 3


def test_unreachable_upstream_is_502(upstream: MockUpstream, tmp_path: Any) -> None:
    from tests.support.gateway import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    running = RunningGateway(gateway_config(dead)).start()
    try:
        response = post(running, "/v1/chat/completions", body_of(model="gpt"), AUTH)
        assert response.status_code == 502
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["code"] == "upstream_unreachable"
    finally:
        running.stop()


def admin(gateway: RunningGateway, token: str | None = ADMIN_TOKEN) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(gateway.url + "/admin/reload", headers=headers, timeout=10)


def test_admin_reload_rejects_bad_config_and_keeps_serving(gateway: RunningGateway, upstream: MockUpstream) -> None:
    assert gateway.state.config_path is not None
    path = gateway.state.config_path
    good = path.read_text()
    assert admin(gateway, None).status_code == 401
    assert admin(gateway, "wrong").status_code == 401
    try:
        path.write_text(good.replace("per: day", "per: fortnight") + "\nnonsense_key: 1\n")
        response = admin(gateway)
        assert response.status_code == 400
        validate("ErrorResponse", response.json())
        assert "nonsense_key: unknown field" in response.json()["error"]["message"]
        assert post(gateway, "/v1/chat/completions", body_of(), AUTH).status_code == 200  # old config serves

        for emptied in ("", "# nothing but a comment\n", good.split("tenants:")[0]):  # truncated writes
            path.write_text(emptied)
            response = admin(gateway)
            assert response.status_code == 400, response.text
            assert "tenants" in response.json()["error"]["message"]
            assert post(gateway, "/v1/chat/completions", body_of(), AUTH).status_code == 200
            assert admin(gateway, "wrong").status_code == 401  # the admin API stays up to fix it

        new_key = "sk-test-newcomer"
        path.write_text(good + f'  newcomer:\n    keys: [{{id: n-1, sha256: "{sha(new_key)}"}}]\n    models: [demo]\n')
        assert (
            post(gateway, "/v1/chat/completions", body_of(), {"authorization": f"Bearer {new_key}"}).status_code == 401
        )
        response = admin(gateway)
        assert response.status_code == 200, response.text
        assert (
            post(gateway, "/v1/chat/completions", body_of(), {"authorization": f"Bearer {new_key}"}).status_code == 200
        )
    finally:
        path.write_text(good)
        assert admin(gateway).status_code == 200


def test_health_and_readiness(gateway: RunningGateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/readyz").status_code == 200


@pytest.mark.parametrize("value", ["inf", "1e309", "-5", "soon", None])
def test_a_provider_429_without_a_usable_retry_after_gets_one_second_not_a_crash(
    gateway: RunningGateway, upstream: MockUpstream, value: str | None
) -> None:
    """Every 429 of the gateway's carries Retry-After: clients back off by it."""
    upstream.behaviour.status = 429
    upstream.behaviour.retry_after = value
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt"), AUTH)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("retry_after_ms", "retry_after", "passed"),
    # (waits above the gateway's own longest, so that it passes them on rather than waiting them out)
    [("6500", None, "7"), ("9000", "6", "9"), ("soon", "8", "8"), ("-1", "8", "8"), ("inf", None, "1")],
)
@pytest.mark.parametrize("model", ["gpt", "azure-gpt"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_429_s_retry_after_ms_is_read_before_its_retry_after(
    gateway: RunningGateway,
    upstream: MockUpstream,
    stream: bool,
    model: str,
    retry_after_ms: str,
    retry_after: str | None,
    passed: str,
) -> None:
    """OpenAI and Azure send retry-after-ms, which the OpenAI SDK reads before retry-after: so does the gateway,
    when it is a usable number, for the wait it passes on."""
    upstream.behaviour.status = 429
    upstream.behaviour.retry_after_ms = retry_after_ms
    upstream.behaviour.retry_after = retry_after
    response = post(gateway, "/v1/chat/completions", body_of(model=model, stream=stream), AUTH)
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == passed


@pytest.mark.parametrize(
    ("up_type", "passed_type"), [("tokens", "tokens"), ("requests", "requests"), (None, "requests")]
)
def test_a_provider_429_keeps_which_limit_it_hit(
    gateway: RunningGateway, upstream: MockUpstream, up_type: str | None, passed_type: str
) -> None:
    """OpenAI types a rate limit's 429 by the limit reached ("tokens" for TPM, "requests" for RPM), as the gateway
    types its own: a provider's says the same, not always "requests"."""
    upstream.behaviour.status = 429
    upstream.behaviour.retry_after = "2"
    message = "Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit 30000, Used 29800, Requested 900."
    error = {"message": message, "type": up_type, "param": None, "code": "rate_limit_exceeded"}
    upstream.behaviour.error_body = {"error": error}
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt"), AUTH)
    assert response.status_code == 429
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["type"] == passed_type


@pytest.mark.parametrize(("path", "model"), [("/v1/chat/completions", "azure-gpt"), ("/v1/embeddings", "azure-embed")])
def test_an_azure_429_is_coded_rate_limit_exceeded_as_openai_codes_it(
    gateway: RunningGateway, upstream: MockUpstream, path: str, model: str
) -> None:
    """Azure's 429 says only `code: "429"` (its status again): the client reads OpenAI's `rate_limit_exceeded`,
    the code it tells a rate limit (wait) from `insufficient_quota` (do not) by, not a number no OpenAI error has."""
    upstream.behaviour.status = 429
    upstream.behaviour.retry_after = "2"
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded "
        "token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds."
    )
    upstream.behaviour.error_body = {"error": {"code": "429", "message": message}}
    body = json.dumps({"model": model, "input": "hi"}) if "embeddings" in path else body_of(model=model)
    response = post(gateway, path, body, AUTH)
    assert response.status_code == 429
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "2"
    azure = openai.AzureOpenAI(api_key=ACME_KEY, azure_endpoint=gateway.url, api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        azure.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "rate_limit_exceeded"


def six_clients_400s(gateway: RunningGateway, upstream: MockUpstream, path: str, body: str, message: str) -> None:
    """Six requests the provider refuses with `message` as not served by the model (more than the circuit's default
    5 failures): each the client's 400 naming `model`, each one attempt."""
    for _ in range(6):
        response = post(gateway, path, body, AUTH)
        assert response.status_code == 400, response.text
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["message"] == message
        assert response.json()["error"]["param"] == "model"
    assert len(upstream.received) == 6  # one attempt each


def test_embeddings_from_a_chat_model_are_the_client_s_400_not_a_broken_provider(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    """OpenAI refuses embeddings from a chat model with a 403 ("You are not allowed to generate embeddings from this
    model"): the request's fault, as Azure's 400 OperationNotSupported and the gateway's own 400 for Anthropic say.
    Not the gateway's credentials: not retried, and no number of such requests opens the model's circuit for the
    chat requests it serves."""
    message = "You are not allowed to generate embeddings from this model"
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    upstream.behaviour.status = 403
    upstream.behaviour.error_body = {"error": error}
    six_clients_400s(gateway, upstream, "/v1/embeddings", json.dumps({"model": "gpt", "input": "hi"}), message)
    upstream.behaviour.status = 200
    assert post(gateway, "/v1/chat/completions", body_of(model="gpt"), AUTH).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "message",
    [
        "This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did you mean to use "
        "v1/completions?",
        "This model is only supported in v1/responses and not in v1/chat/completions.",
    ],
)
def test_chat_with_a_model_that_does_not_chat_is_the_client_s_400_not_a_broken_provider(
    gateway: RunningGateway, upstream: MockUpstream, message: str, stream: bool
) -> None:
    """OpenAI answers chat asked of a model that does not chat (an embedding model, a Responses-only one) with a
    404 naming `model`: the request's fault, not a model name the config got wrong. Not retried, and no number of
    such requests opens the circuit of the deployment (an embedding model, say) for the requests it does serve."""
    error = {"message": message, "type": "invalid_request_error", "param": "model", "code": None}
    upstream.behaviour.status = 404
    upstream.behaviour.error_body = {"error": error}
    six_clients_400s(gateway, upstream, "/v1/chat/completions", body_of(model="embed", stream=stream), message)
    upstream.behaviour.status = 200
    assert post(gateway, "/v1/embeddings", json.dumps({"model": "embed", "input": "hi"}), AUTH).status_code == 200


def test_a_provider_408_is_its_timeout_handed_to_a_fallback_or_a_504(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    """Azure answers 408 ("The operation was timeout.") when the model took too long: the provider's timeout, as the
    gateway's own is, not a client too slow to send its request (the 408 the gateway answers for that). It is
    retried, handed to a fallback, and else a 504 upstream_timeout."""
    error = {"code": "Timeout", "message": "The operation was timeout."}
    upstream.behaviour.status = 408
    upstream.behaviour.error_body = {"error": error}
    response = post(gateway, "/v1/chat/completions", body_of(model="azure-gpt"), AUTH)
    assert response.status_code == 504, response.text
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert len(upstream.received) == 3  # the first attempt and the model's 2 retries
    gateway.state.reset_failover()  # a fresh retry budget for the fallback
    response = post(gateway, "/v1/chat/completions", body_of(model="with-fallback"), AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "mock-1"  # the fallback (demo) answered


def test_upstream_redirect_is_not_followed(gateway: RunningGateway, upstream: MockUpstream) -> None:
    """Following it would hand our provider credentials to whatever host the redirect names."""
    upstream.behaviour.status = 307
    upstream.behaviour.redirect_to = f"http://localhost:{upstream.port}/v1/chat/completions"
    response = post(gateway, "/v1/chat/completions", body_of(model="azure-gpt"), AUTH)
    assert response.status_code == 502
    assert len(upstream.received) == 1


def test_slow_request_body_gets_408(upstream: MockUpstream) -> None:
    import socket

    config = gateway_config(upstream.url).replace("body_timeout_s: 10", "body_timeout_s: 0.5")
    running = RunningGateway(config).start()
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                + f"authorization: Bearer {ACME_KEY}\r\ncontent-length: 100\r\n\r\n".encode()
                + b'{"model": "demo"'
            )
            started = time.monotonic()
            answer = sock.recv(4096).decode()
    finally:
        running.stop()
    assert answer.startswith("HTTP/1.1 408")
    assert time.monotonic() - started < 2.5  # body_timeout_s is 0.5


def test_models_retrieve(gateway: RunningGateway) -> None:
    sdk = openai.OpenAI(api_key=ACME_KEY, base_url=gateway.url + "/v1", max_retries=0)
    model = sdk.models.retrieve("claude")
    assert model.id == "claude" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")
    limited = openai.OpenAI(api_key=LIMITED_KEY, base_url=gateway.url + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        limited.models.retrieve("claude")  # exists, but not for this tenant
    raw = httpx.get(gateway.url + "/v1/models/demo", headers=AUTH)
    validate("Model", raw.json())
    assert raw.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/openai/deployments/a%252Fb/chat/completions?api-version=2024-10-21", "a%2Fb"),
        ("/openai/deployments/a%2Fb/chat/completions?api-version=2024-10-21", "a/b"),
        ("/v1/models/a%252Fb", "a%2Fb"),
        ("/admin/tenants/a%252Fb", "a%2Fb"),
    ],
)
def test_a_name_in_the_path_is_percent_decoded_once(gateway: RunningGateway, path: str, named: str) -> None:
    """The server has decoded the path once already: `a%252Fb` names `a%2Fb`, and an encoded slash stays
    inside the name instead of splitting the path."""
    headers = {**AUTH, "authorization": f"Bearer {ADMIN_TOKEN}"} if path.startswith("/admin") else AUTH
    method = "GET" if path.startswith(("/v1/models", "/admin")) else "POST"
    response = httpx.request(method, gateway.url + path, headers=headers, content=body_of(), timeout=10)
    assert response.status_code == 404, response.text
    validate("ErrorResponse", response.json())
    assert f"'{named}'" in response.json()["error"]["message"]


def test_a_provider_s_refusal_passes_on_its_code_null_included(gateway: RunningGateway, upstream: MockUpstream) -> None:
    """OpenAI answers many a 400 with `"code": null`; a client must see it as OpenAI sent it."""
    upstream.behaviour.status = 400
    upstream.behaviour.error_body = {
        "error": {"message": "bad value", "type": "invalid_request_error", "param": "temperature", "code": None}
    }
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt"), AUTH)
    assert response.status_code == 400
    validate("ErrorResponse", response.json())
    assert response.json()["error"] == {
        "message": "bad value",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": None,
    }


@pytest.mark.parametrize(("path", "model"), [("/v1/chat/completions", "gpt"), ("/v1/embeddings", "embed")])
def test_an_answer_nested_deeper_than_can_be_passed_on_is_the_provider_s_fault(
    gateway: RunningGateway, upstream: MockUpstream, path: str, model: str
) -> None:
    """orjson reads 1,023 levels but writes only 254: such an answer is a 502, not a 500 (a bug of ours)."""
    deep = "[" * 300 + "1" + "]" * 300
    if model == "embed":
        answer = f'{{"data": [{{"object": "embedding", "index": 0, "embedding": {deep}}}], "usage": {{}}}}'
        body = json.dumps({"model": model, "input": "hi"})
    else:
        answer = f'{{"choices": [{{"index": 0, "message": {{"role": "assistant", "x": {deep}}}}}]}}'
        body = body_of(model=model)
    upstream.behaviour.json_body = answer.encode()
    response = post(gateway, path, body, AUTH)
    assert response.status_code == 502, response.text
    validate("ErrorResponse", response.json())


@pytest.mark.parametrize(
    ("code", "status", "answered_code"),
    [
        # OpenAI's: the gateway's own account is out of credit, its problem, not the caller's
        ("insufficient_quota", 502, "upstream_payment_required"),
        # typed insufficient_quota with another code (a gateway chained behind this one, out of its budget): a 429,
        # as it would have been answered, not rejected credentials (403) nor the gateway's own account
        ("budget_exceeded", 429, "budget_exceeded"),
    ],
    ids=["out-of-credit", "chained-budget"],
)
def test_a_quota_error_told_in_a_stream_is_judged_by_its_code(
    gateway: RunningGateway, upstream: MockUpstream, code: str, status: int, answered_code: str
) -> None:
    error = {"message": "Quota exceeded", "type": "insufficient_quota", "param": None, "code": code}
    upstream.behaviour.stream_body = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt", stream=True), AUTH)
    assert response.status_code == status, response.text
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == answered_code


def test_a_streamed_chunk_nested_deeper_than_can_be_passed_on_ends_the_stream_as_the_provider_s_fault(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None, "x": deep}]}  # fmt: skip
    upstream.behaviour.odd_chunks = (chunk,)
    response = post(gateway, "/v1/chat/completions", body_of(model="gpt", stream=True), AUTH)
    assert response.status_code == 200
    last = json.loads([line[6:] for line in response.text.splitlines() if line.startswith("data: ")][-1])
    validate("ErrorResponse", last)
    assert (last["error"]["type"], last["error"]["code"]) == ("api_error", "upstream_error")  # not a bug of ours


@pytest.mark.parametrize(
    ("method", "path", "content", "headers"),
    [
        ("POST", "/v1/chat/completions", body_of(), AUTH),  # an answer (the in-process mock provider)
        ("POST", "/v1/chat/completions", body_of(model="gpt"), AUTH),  # an answer from a provider on a socket
        ("POST", "/v1/chat/completions", body_of(), {"authorization": "Bearer sk-nobody"}),  # an error
        ("GET", "/v1/models", "", AUTH),
        ("GET", "/healthz", "", {}),
    ],
    ids=["mock-answer", "provider-answer", "error", "models", "healthz"],
)
def test_a_whole_answer_says_its_length_and_is_not_chunked(
    gateway: RunningGateway, method: str, path: str, content: str, headers: dict[str, str]
) -> None:
    response = httpx.request(
        method, gateway.url + path, content=content, headers={"content-type": "application/json", **headers}
    )
    assert "transfer-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(response.content)) and response.content


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (0.0, "0ms"),
        (0.0201, "21ms"),
        (1.5, "1.5s"),
        (59.9985, "59.999s"),
        (59.9994, "1m0s"),
        (360, "6m0s"),
        (7205.25, "2h0m5.25s"),
    ],
)
def test_a_reset_is_written_as_openai_writes_its_x_ratelimit_reset(seconds: float, written: str) -> None:
    assert duration(seconds) == written


def test_a_token_limit_s_429_carries_openai_s_token_headers_to_the_millisecond() -> None:
    """A tpm (or a budget of tokens) refuses with the -tokens variants, its remaining room rounded down."""
    refusal = RateLimited("Rate limit reached", retry_after=12.3456, quota=Quota("tokens", 2000.0, 123.9, 12.3456))
    status, headers, _ = render(refusal)
    assert status == 429
    assert dict(headers) | {b"content-type": b""} == {
        b"content-type": b"",
        b"retry-after": b"13",
        b"retry-after-ms": b"12346",
        b"x-ratelimit-limit-tokens": b"2000",
        b"x-ratelimit-remaining-tokens": b"123",
        b"x-ratelimit-reset-tokens": b"12.346s",
    }
