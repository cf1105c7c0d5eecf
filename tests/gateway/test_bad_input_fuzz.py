"""Generated bad input, end to end through the served app: whatever a client sends to the model endpoints, the
answer is OpenAI's (an `ErrorResponse` with a 4xx status when it is refused, never a 500 nor a hang), carries no
secret, and the request leaves exactly one usage event."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ACME_KEY, BYOK_KEY, LIMITED_KEY, UPSTREAM_SECRETS
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway

AUTH = {"authorization": f"Bearer {ACME_KEY}", "content-type": "application/json"}
SECRETS = (*UPSTREAM_SECRETS, ACME_KEY, LIMITED_KEY, BYOK_KEY)
# A refusal is the client's (400 body, 401 key, 403 policy, 404 model, 413 size); anything 5xx would be the gateway's
# fault or an upstream's, and the mock upstream answers every well-formed request.
CLIENT_STATUSES = {400, 401, 403, 404, 413}
FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the suite stays reproducible; the tables in test_errors carry the cases known to matter
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",  # bidi override
    "\u200b\u200d\ufeff",  # zero-width, BOM
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a ZWJ emoji
    "\U000e0069\U000e0067\U000e006e",  # tag characters
    "\uffff\ufffe",
    "مرحبا",
    "x" * 5000,
    "demo",
    "gpt",
    "user",
    "function",
    "{}",
    "data:image/png;base64,@@",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
    | st.sampled_from(ODD_STRINGS)
)
FIELD_NAMES = ["type", "role", "content", "text", "name", "function", "parameters", "include_usage", "url", "schema"]
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
# Tokens no JSON encoder writes, sent as they are in a field's place.
RAW_LITERALS = ["1e309", "-1e309", "NaN", "Infinity", "-0", "-0.0", "1e-400", "1" * 40, '"\\ud800"', '"\\udfff"']

CHAT_MODELS = ["demo", "gpt", "claude", "azure-gpt", "no-such-model"]
EMBEDDING_MODELS = ["demo-embed", "embed", "azure-embed", "claude", "no-such-model"]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CHAT_FIELDS: list[tuple[str | int, ...]] = [
    ("model",),
    ("messages",),
    ("messages", 0),
    ("messages", 0, "role"),
    ("messages", 0, "content"),
    ("messages", 0, "content", 0),
    ("messages", 0, "content", 0, "type"),
    ("messages", 0, "content", 0, "text"),
    ("messages", 0, "name"),
    ("messages", 0, "tool_calls"),
    ("messages", 0, "tool_call_id"),
    ("stream",),
    ("stream_options",),
    ("stream_options", "include_usage"),
    ("n",),
    ("temperature",),
    ("top_p",),
    ("max_tokens",),
    ("max_completion_tokens",),
    ("stop",),
    ("seed",),
    ("user",),
    ("logprobs",),
    ("top_logprobs",),
    ("logit_bias",),
    ("metadata",),
    ("tools",),
    ("tools", 0),
    ("tools", 0, "type"),
    ("tools", 0, "function"),
    ("tools", 0, "function", "name"),
    ("tools", 0, "function", "parameters"),
    ("tools", 0, "function", "parameters", "properties"),
    ("tool_choice",),
    ("parallel_tool_calls",),
    ("response_format",),
    ("response_format", "json_schema"),
    ("reasoning_effort",),
    ("prediction",),
    ("modalities",),
]
EMBEDDING_FIELDS: list[tuple[str | int, ...]] = [
    ("model",),
    ("input",),
    ("input", 0),
    ("encoding_format",),
    ("dimensions",),
    ("user",),
]


def chat_base(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [json.loads(json.dumps(TOOL))],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
    }
    if stream:
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    return body


def embeddings_base(model: str) -> dict[str, Any]:
    return {"model": model, "input": ["one", "two"]}


MARK = "\x01raw\x01"  # stands in a field's place until the raw literal replaces it in the written body


def put(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    """Sets `path` in `body` to `value`, making the containers on the way where they are missing (or not one)."""
    node: Any = body
    for step, following in itertools.pairwise(path):
        child = node[step] if _holds(node, step) else None
        if not isinstance(child, (dict, list)) or (isinstance(following, int) and not isinstance(child, list)):
            child = [{}] if isinstance(following, int) else {}
            _assign(node, step, child)
        node = child
    _assign(node, path[-1], value)


def _holds(node: Any, step: str | int) -> bool:
    return (isinstance(node, dict) and step in node) or (
        isinstance(node, list) and isinstance(step, int) and step < len(node)
    )


def _assign(node: Any, step: str | int, value: Any) -> None:
    if isinstance(node, list) and isinstance(step, int):
        while len(node) <= step:
            node.append({})
    node[step] = value


def written(body: dict[str, Any], raw: str | None) -> bytes:
    text = json.dumps(body, ensure_ascii=False)  # odd characters go as UTF-8; escaped ones come as raw literals
    if raw is not None:
        text = text.replace(json.dumps(MARK), raw)
    return text.encode()


@pytest.fixture
def usage_rows(gateway: RunningGateway) -> Iterator[list[str]]:
    """Request ids a test saw answered; each must leave exactly one usage row in the gateway's SQLite store."""
    seen: list[str] = []
    yield seen
    path = Path(gateway.state.runtime.config.events.sqlite_path)
    deadline = time.monotonic() + 20
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = rows_per_request(path, seen)
        if len(counts) == len(set(seen)):
            break
        time.sleep(0.1)
    missing = [request_id for request_id in seen if request_id not in counts]
    doubled = {request_id: n for request_id, n in counts.items() if n != 1}
    assert not missing and not doubled, (missing[:5], doubled)


def rows_per_request(path: Path, request_ids: list[str]) -> dict[str, int]:
    if not path.exists() or not request_ids:
        return {}
    db = sqlite3.connect(path)
    try:
        wanted = sorted(set(request_ids))
        counts: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT request_id, count(*) FROM usage_events WHERE request_id IN ({marks}) GROUP BY request_id"
            counts.update(dict(db.execute(sql, batch).fetchall()))
        return counts
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def check_answer(response: httpx.Response, seen: list[str], streamed: bool) -> None:
    """The rules every answer keeps, whatever it was asked."""
    assert response.status_code == 200 or response.status_code in CLIENT_STATUSES, response.text[:500]
    for secret in SECRETS:
        assert secret not in response.text
    assert "Traceback" not in response.text
    seen.append(response.headers["x-request-id"])
    if response.status_code != 200:
        assert response.headers["content-type"] == "application/json"
        error = response.json()
        validate("ErrorResponse", error)
        assert error["error"]["message"]
    elif streamed and response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.rstrip().endswith("data: [DONE]"), response.text[-300:]


def send(client: httpx.Client, gateway: RunningGateway, path: str, content: bytes) -> httpx.Response:
    return client.post(gateway.url + path, content=content, headers=AUTH)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as opened:
        yield opened


def test_any_chat_body_gets_an_openai_answer_and_one_usage_event(
    gateway: RunningGateway, client: httpx.Client, usage_rows: list[str]
) -> None:
    @FUZZ_SETTINGS
    @given(
        model=st.sampled_from(CHAT_MODELS),
        azure_path=st.booleans(),
        stream=st.booleans(),
        path=st.sampled_from(CHAT_FIELDS),
        value=json_values,
        raw=st.none() | st.sampled_from(RAW_LITERALS),
    )
    def probe(
        model: str, azure_path: bool, stream: bool, path: tuple[str | int, ...], value: Any, raw: str | None
    ) -> None:
        body = chat_base(model, stream)
        put(body, path, MARK if raw is not None else value)
        url = f"/openai/deployments/{model}/chat/completions?api-version=2024-10-21" if azure_path else ""
        response = send(client, gateway, url or "/v1/chat/completions", written(body, raw))
        check_answer(response, usage_rows, streamed=body.get("stream") is True)

    probe()


def test_any_embeddings_body_gets_an_openai_answer_and_one_usage_event(
    gateway: RunningGateway, client: httpx.Client, usage_rows: list[str]
) -> None:
    @FUZZ_SETTINGS
    @given(
        model=st.sampled_from(EMBEDDING_MODELS),
        path=st.sampled_from(EMBEDDING_FIELDS),
        value=json_values,
        raw=st.none() | st.sampled_from(RAW_LITERALS),
    )
    def probe(model: str, path: tuple[str | int, ...], value: Any, raw: str | None) -> None:
        body = embeddings_base(model)
        put(body, path, MARK if raw is not None else value)
        response = send(client, gateway, "/v1/embeddings", written(body, raw))
        check_answer(response, usage_rows, streamed=False)

    probe()


def test_any_bytes_in_a_body_get_an_openai_answer_and_one_usage_event(
    gateway: RunningGateway, client: httpx.Client, usage_rows: list[str]
) -> None:
    """Invalid UTF-8, truncations and stray bytes spliced into a valid body."""
    valid = json.dumps(chat_base("demo", False)).encode()

    @FUZZ_SETTINGS
    @given(
        at=st.integers(min_value=0, max_value=len(valid)),
        cut=st.integers(min_value=0, max_value=8),
        spliced=st.binary(max_size=6)
        | st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00", b"\\u0000", b"\\"]),
        path=st.sampled_from(["/v1/chat/completions", "/v1/embeddings"]),
    )
    def probe(at: int, cut: int, spliced: bytes, path: str) -> None:
        response = send(client, gateway, path, valid[:at] + spliced + valid[at + cut :])
        check_answer(response, usage_rows, streamed=False)

    probe()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer", 401),
        ("Bearer\tBearer", 401),
        ("bearer " + ACME_KEY, 200),
        ("BEARER " + ACME_KEY, 200),
        ("Bearer  " + ACME_KEY, 200),  # (trailing whitespace is the server's to strip: h11 sends none)
        (f"Bearer {ACME_KEY} {LIMITED_KEY}", 401),
        (f"Bearer {ACME_KEY},{LIMITED_KEY}", 401),
        (ACME_KEY, 401),
        ("Basic " + ACME_KEY, 401),
        ("Bearer " + "k" * 8000, 401),
        ("Bearer sk-\xe9\xff", 401),
    ],
)
def test_any_authorization_form_gets_an_openai_answer_and_one_usage_event(
    gateway: RunningGateway, client: httpx.Client, usage_rows: list[str], authorization: str, status: int
) -> None:
    """The scheme is case-insensitive (RFC 9110 11.1); anything but one key after it is a 401 that names no key."""
    body = json.dumps(chat_base("demo", False)).encode()
    headers = [("content-type", "application/json"), ("authorization", authorization.encode("latin-1"))]
    response = client.post(gateway.url + "/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == status, response.text
    check_answer(response, usage_rows, streamed=False)
