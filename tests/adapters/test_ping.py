"""Every adapter's `build_ping` (pure: data in, data out) and the one reading of a ping's status."""

from __future__ import annotations

import orjson
import pytest

from adapters.anthropic import AnthropicAdapter
from adapters.base import Adapter, LocalAdapter, Target, UpstreamRequest, ping_auth
from adapters.registry import ADAPTERS, DEFAULT_BASE_URLS

KEY = "sk-ping-unit-secret"
EXTRA_HEADER = ("x-extra", "1")
# provider type ─► (base_url, api_version, the ping's URL, the header that carries the key, its value)
EXPECTED: dict[str, tuple[str, str | None, str, str, str]] = {
    "openai": ("https://api.example/v1", None, "https://api.example/v1/models", "authorization", f"Bearer {KEY}"),
    "azure": (
        "https://res.openai.azure.com",
        "2024-06-01",
        "https://res.openai.azure.com/openai/models?api-version=2024-06-01",
        "api-key",
        KEY,
    ),
    "anthropic": ("https://api.anthropic.com", None, "https://api.anthropic.com/v1/models?limit=1", "x-api-key", KEY),
    "mock": (DEFAULT_BASE_URLS["mock"], None, DEFAULT_BASE_URLS["mock"] + "/models", "authorization", f"Bearer {KEY}"),
}


def target(base_url: str, api_version: str | None = None, model: str = "some-model") -> Target:
    return Target("p", model, base_url, KEY, api_version, headers=(EXTRA_HEADER,))


def test_every_registered_adapter_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(ADAPTERS)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_ping_is_a_free_models_list_with_the_credentials(kind: str) -> None:
    base_url, version, url, auth_header, auth_value = EXPECTED[kind]
    adapter = ADAPTERS[kind]
    request = adapter.build_ping(target(base_url, version))
    assert (request.method, request.url, request.body) == ("GET", url, b"")
    assert request.headers[auth_header] == auth_value
    assert request.headers[EXTRA_HEADER[0]] == EXTRA_HEADER[1]  # the config's headers travel too
    assert "content-type" not in request.headers
    assert adapter.ping_probe == "list_models"
    assert KEY not in repr(request)


def test_azure_ping_defaults_the_api_version() -> None:
    request = ADAPTERS["azure"].build_ping(target("https://res.openai.azure.com"))
    assert request.url == "https://res.openai.azure.com/openai/models?api-version=2024-10-21"


def test_anthropic_ping_names_the_api_version() -> None:
    request = ADAPTERS["anthropic"].build_ping(target("https://api.anthropic.com"))
    assert request.headers["anthropic-version"] == "2023-06-01"


def test_the_mock_answers_its_ping_in_process() -> None:
    adapter = ADAPTERS["mock"]
    assert isinstance(adapter, LocalAdapter)
    answer = adapter.answer(adapter.build_ping(target(DEFAULT_BASE_URLS["mock"])))
    assert answer.status == 200
    assert orjson.loads(answer.body)["object"] == "list"
    other = adapter.answer(UpstreamRequest("GET", DEFAULT_BASE_URLS["mock"] + "/files", {}, b""))
    assert other.status == 404


class ChatOnlyAdapter(AnthropicAdapter):
    """An API without a models list: it keeps the base class's ping."""

    ping_probe = Adapter.ping_probe
    build_ping = Adapter.build_ping


def test_without_a_models_list_the_ping_is_a_one_token_chat() -> None:
    adapter = ChatOnlyAdapter()
    request = adapter.build_ping(target("https://api.anthropic.com", model="claude-3-5-haiku-latest"))
    assert (request.method, request.url) == ("POST", "https://api.anthropic.com/v1/messages")
    body = orjson.loads(request.body)
    assert (body["model"], body["max_tokens"]) == ("claude-3-5-haiku-latest", 1)
    assert adapter.ping_probe == "chat_max_tokens_1"


def test_ping_auth_reads_the_status() -> None:
    statuses = {200: "ok", 204: "ok", 401: "rejected", 403: "rejected", 404: "unknown", 429: "unknown", 500: "unknown"}
    assert {status: ping_auth(status) for status in statuses} == statuses
