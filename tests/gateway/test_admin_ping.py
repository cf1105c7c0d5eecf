"""POST /admin/providers/{name}/ping, through real sockets: the gateway pings the MockUpstream's models
lists with each provider type's configured credentials (right, wrong, or pointed at a closed port)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapters.registry import provider_types
from gateway import admin as admin_api
from gateway.runtime import Timeouts
from tests.conftest import ADMIN_TOKEN
from tests.support.gateway import RunningGateway, sha
from tests.support.scratch_server import free_port
from tests.support.upstream import MockUpstream

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
NETWORK_TYPES = ("openai", "azure", "anthropic")  # with `mock` (answered in process): every registered type
GOOD_KEYS = {"openai": "sk-ping-openai-secret", "azure": "azure-ping-secret", "anthropic": "sk-ant-ping-secret"}
WRONG_KEYS = {kind: f"{key}-revoked" for kind, key in GOOD_KEYS.items()}
SECRETS = (*GOOD_KEYS.values(), *WRONG_KEYS.values())
UNSET_ENV = "GATEWAY_TEST_PING_UNSET_KEY"
# what each type's ping asks for: path, query (the Anthropic page size, Azure's api-version), auth header
EXPECTED_PROBES = {
    "openai": ("/v1/models", {}, "authorization"),
    "azure": ("/openai/models", {"api-version": "2024-10-21"}, "api-key"),
    "anthropic": ("/v1/models", {"limit": "1"}, "x-api-key"),
}


def _base_url(kind: str, server: str) -> str:
    return f"{server}/v1" if kind == "openai" else server  # OpenAI's base URL carries its /v1


def _provider(kind: str, server: str, key: str) -> str:
    version = ', api_version: "2024-10-21"' if kind == "azure" else ""
    return f'{{type: {kind}, base_url: "{_base_url(kind, server)}", api_key: "{key}"{version}}}'


def ping_config(upstream_url: str, closed_url: str, admin: bool = True) -> str:
    providers = "\n".join(
        f"  {state}-{kind}: {_provider(kind, url, keys[kind])}"
        for kind in NETWORK_TYPES
        for state, url, keys in (
            ("ok", upstream_url, GOOD_KEYS),
            ("bad", upstream_url, WRONG_KEYS),
            ("down", closed_url, GOOD_KEYS),
        )
    )
    admin_line = f'admin: {{token_sha256: "{sha(ADMIN_TOKEN)}"}}\n' if admin else ""
    return f"""{admin_line}providers:
{providers}
  demo: {{type: mock}}
  off-openai: {{type: openai, api_key: "${{{UNSET_ENV}}}"}}
models:
  gpt: {{deployments: [{{provider: ok-openai, model: gpt-4o-mini}}]}}
  unset-gpt: {{deployments: [{{provider: off-openai, model: gpt-4o-mini}}]}}
"""


@pytest.fixture(scope="module")
def ping_gateway(upstream: MockUpstream) -> Iterator[RunningGateway]:
    running = RunningGateway(ping_config(upstream.url, f"http://127.0.0.1:{free_port()}")).start()
    yield running
    running.stop()


@pytest.fixture
def pinger(ping_gateway: RunningGateway, upstream: MockUpstream) -> RunningGateway:
    upstream.reset()
    upstream.behaviour.api_keys = tuple(GOOD_KEYS.values())
    return ping_gateway


def ping(gateway: RunningGateway, provider: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response = httpx.post(
        f"{gateway.url}/admin/providers/{provider}/ping", headers=ADMIN if headers is None else headers
    )
    for secret in SECRETS:
        assert secret not in response.text
    return response


def assert_one_models_call(upstream: MockUpstream, kind: str, key: str) -> None:
    """Exactly one request went upstream, and it was the free models list (no chat call, no tokens)."""
    [received] = upstream.received
    path, query, auth_header = EXPECTED_PROBES[kind]
    assert (received.path, received.query, received.body) == (path, query, {})
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers[auth_header] == (f"Bearer {key}" if kind == "openai" else key)
    if kind == "anthropic":
        assert headers["anthropic-version"] == "2023-06-01"


def test_the_tests_cover_every_provider_type() -> None:
    assert sorted((*NETWORK_TYPES, "mock")) == provider_types()


@pytest.mark.parametrize("kind", NETWORK_TYPES)
def test_ping_with_the_right_key(pinger: RunningGateway, upstream: MockUpstream, kind: str) -> None:
    response = ping(pinger, f"ok-{kind}")
    assert response.status_code == 200
    result = response.json()
    latency = result.pop("latency_ms")
    assert isinstance(latency, float) and 0 <= latency < 10_000
    assert result == {
        "provider": f"ok-{kind}",
        "type": kind,
        "probe": "list_models",
        "reachable": True,
        "auth": "ok",
        "status": 200,
        "error": None,
    }
    assert_one_models_call(upstream, kind, GOOD_KEYS[kind])


@pytest.mark.parametrize("kind", NETWORK_TYPES)
def test_ping_with_a_wrong_key(pinger: RunningGateway, upstream: MockUpstream, kind: str) -> None:
    response = ping(pinger, f"bad-{kind}")  # the upstream's 401 body quotes the key: `ping` checks it is not relayed
    assert response.status_code == 200
    result = response.json()
    assert (result["reachable"], result["auth"], result["status"]) == (True, "rejected", 401)
    assert "rejected the credentials" in result["error"]
    assert_one_models_call(upstream, kind, WRONG_KEYS[kind])


@pytest.mark.parametrize("kind", NETWORK_TYPES)
def test_ping_of_an_unreachable_provider(pinger: RunningGateway, upstream: MockUpstream, kind: str) -> None:
    response = ping(pinger, f"down-{kind}")
    assert response.status_code == 200
    result = response.json()
    assert (result["reachable"], result["auth"], result["status"], result["latency_ms"]) == (
        False,
        "unknown",
        None,
        None,
    )
    assert "cannot connect" in result["error"]
    assert upstream.received == []


@pytest.mark.parametrize("kind", NETWORK_TYPES)
def test_ping_answered_with_another_status(pinger: RunningGateway, upstream: MockUpstream, kind: str) -> None:
    upstream.behaviour.status = 503
    result = ping(pinger, f"ok-{kind}").json()
    assert (result["reachable"], result["auth"], result["status"]) == (True, "unknown", 503)
    assert result["error"] == "HTTP 503 from the provider"
    assert len(upstream.received) == 1


def test_ping_is_bounded_by_a_timeout(
    pinger: RunningGateway, upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_api, "PING_TIMEOUTS", Timeouts(connect_s=0.3, first_byte_s=0.3, total_s=0.3))
    upstream.behaviour.delay_s = 2.0
    response = ping(pinger, "ok-openai")
    assert response.status_code == 200
    result = response.json()
    assert (result["reachable"], result["auth"], result["status"]) == (False, "unknown", None)
    assert result["error"] == "no answer within 0.3 s"
    assert response.elapsed.total_seconds() < 1.5


def test_ping_of_the_built_in_mock(pinger: RunningGateway, upstream: MockUpstream) -> None:
    result = ping(pinger, "demo").json()
    assert {k: v for k, v in result.items() if k != "latency_ms"} == {
        "provider": "demo",
        "type": "mock",
        "probe": "list_models",
        "reachable": True,
        "auth": "ok",
        "status": 200,
        "error": None,
    }
    assert upstream.received == []  # answered in process


def test_ping_of_a_disabled_provider(pinger: RunningGateway, upstream: MockUpstream) -> None:
    response = ping(pinger, "off-openai")
    assert response.status_code == 200
    result = response.json()
    assert (result["reachable"], result["auth"], result["status"]) == (False, "unknown", None)
    assert result["error"] == f"disabled: {UNSET_ENV} is not set"
    assert upstream.received == []


def test_ping_of_an_unknown_provider(pinger: RunningGateway) -> None:
    response = ping(pinger, "nobody")
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "provider_not_found"
    for path in ("/admin/providers/ok-openai/pong", "/admin/providers/ping", "/admin/providers/"):
        assert httpx.post(pinger.url + path, headers=ADMIN).status_code == 404


def test_ping_needs_the_admin_token(pinger: RunningGateway, upstream: MockUpstream) -> None:
    assert ping(pinger, "ok-openai", headers={}).status_code == 401
    wrong = ping(pinger, "ok-openai", headers={"authorization": "Bearer not-the-admin-token"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_admin_token"
    assert upstream.received == []


def test_ping_is_a_post(pinger: RunningGateway, upstream: MockUpstream) -> None:
    response = httpx.get(pinger.url + "/admin/providers/ok-openai/ping", headers=ADMIN)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert upstream.received == []


def test_ping_without_the_admin_api(upstream: MockUpstream) -> None:
    upstream.reset()
    running = RunningGateway(ping_config(upstream.url, upstream.url, admin=False)).start()
    try:
        assert ping(running, "ok-openai").status_code == 404
    finally:
        running.stop()
    assert upstream.received == []
