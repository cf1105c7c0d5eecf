"""Fixtures shared by the suite: a mock provider and the gateway, both on real loopback sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import RunningGateway, sha
from tests.support.postgres_server import PostgresServer
from tests.support.prometheus_server import PrometheusServer
from tests.support.redis_server import RedisServer
from tests.support.upstream import MockUpstream

ACME_KEY = "sk-test-acme-0001"
LIMITED_KEY = "sk-test-limited-0002"
BYOK_KEY = "sk-test-byok-0003"
BLOCKER_KEY = "sk-test-blocker-0004"
FLAGGER_KEY = "sk-test-flagger-0005"
OPEN_KEY = "sk-test-open-0006"
BUDGET_KEY = "sk-test-budget-0007"
RATE_KEY = "sk-test-rate-0008"
USD_KEY = "sk-test-usd-0009"
ADMIN_TOKEN = "admin-test-token"
UPSTREAM_SECRETS = (
    "sk-upstream-openai-secret",
    "azure-upstream-secret",
    "sk-ant-upstream-secret",
    "sk-byok-tenant-secret",
)


def gateway_config(upstream_url: str, extra_tenants: str = "") -> str:
    return f"""
server: {{max_body_bytes: 20000, body_timeout_s: 10}}
admin: {{token_sha256: "{sha(ADMIN_TOKEN)}"}}
providers:
  up-openai: {{type: openai, base_url: "{upstream_url}/v1", api_key: "sk-upstream-openai-secret"}}
  up-azure: {{type: azure, base_url: "{upstream_url}", api_version: "2024-10-21", api_key: "azure-upstream-secret"}}
  up-anthropic: {{type: anthropic, base_url: "{upstream_url}", api_key: "sk-ant-upstream-secret"}}
  demo: {{type: mock}}
models:
  gpt: {{deployments: [{{provider: up-openai, model: gpt-4o-mini}}], timeout_s: 5}}
  azure-gpt: {{deployments: [{{provider: up-azure, model: my-deployment}}], timeout_s: 5}}
  claude: {{deployments: [{{provider: up-anthropic, model: claude-3-5-haiku-latest}}], timeout_s: 5}}
  demo: {{deployments: [{{provider: demo, model: mock-1}}]}}
  flaky:
    deployments: [{{provider: up-openai, model: flaky-model}}]
    retries: 0
    circuit: {{failures: 3, cooldown_s: 3}}  # long enough for 10 requests on a slow machine
  stormy:
    deployments: [{{provider: up-openai, model: stormy-model}}]
    retries: 2
    circuit: {{failures: 100000, cooldown_s: 1}}
  with-fallback: {{deployments: [{{provider: up-openai, model: gpt-4o-mini}}], retries: 1, fallbacks: [demo]}}
  coinflip:
    deployments: [{{provider: up-openai, model: coinflip-model}}]
    retries: 0
    circuit: {{failures: 100000, cooldown_s: 1}}
  gpt-short: {{deployments: [{{provider: up-openai, model: gpt-4o-mini}}], timeout_s: 1.5, first_byte_timeout_s: 0.5}}
  embed: {{deployments: [{{provider: up-openai, model: text-embedding-3-small}}]}}
  azure-embed: {{deployments: [{{provider: up-azure, model: my-embedding-deployment}}]}}
  demo-embed: {{deployments: [{{provider: demo, model: mock-embedding}}]}}
defaults: {{max_tokens_per_request: 1000}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{sha(ACME_KEY)}"}}]
    models: ["*"]
  limited:
    keys: [{{id: limited-1, sha256: "{sha(LIMITED_KEY)}"}}]
    models: [demo]
    max_tokens_per_request: 100
  byok:
    keys: [{{id: byok-1, sha256: "{sha(BYOK_KEY)}"}}]
    models: [gpt]
    credentials: {{up-openai: {{api_key: "sk-byok-tenant-secret"}}}}
  blocker:
    keys: [{{id: blocker-1, sha256: "{sha(BLOCKER_KEY)}"}}]
    models: ["*"]
    policies: {{pii: {{action: block, entities: [email, credit_card]}}}}
  flagger:
    keys: [{{id: flagger-1, sha256: "{sha(FLAGGER_KEY)}"}}]
    models: ["*"]
    policies: {{injection: {{action: flag}}, pii: {{action: flag}}}}
  open:
    keys: [{{id: open-1, sha256: "{sha(OPEN_KEY)}"}}]
    models: ["*"]
    policies: {{injection: {{action: "off"}}, pii: {{action: "off"}}}}
  budgeted:
    keys: [{{id: budgeted-1, sha256: "{sha(BUDGET_KEY)}"}}]
    models: ["*"]
    budgets: [{{tokens: 10000, per: day}}]
  ratelimited:
    keys: [{{id: ratelimited-1, sha256: "{sha(RATE_KEY)}"}}]
    models: ["*"]
    rate_limits: {{rpm: 3}}
  pennywise:
    keys: [{{id: pennywise-1, sha256: "{sha(USD_KEY)}"}}]
    models: ["*"]
    budgets: [{{usd: 0.0005, per: month}}]
{extra_tenants}
"""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server for the session (installed with apt-get when missing)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(autouse=True)
def no_stray_redis_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that used the session's Redis leaves no connection to it open: one that stays open (a client never
    closed, or one abandoned with the event loop it belonged to) holds a socket until the collector finds it."""
    yield
    if "redis_server" in request.fixturenames:
        server: RedisServer = request.getfixturevalue("redis_server")
        if server.running:
            assert server.clients_left() == [], "Redis connections left open after the test"


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockUpstream]:
    server = MockUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_server(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    path = tmp_path_factory.mktemp("gateway") / "config.yaml"
    running = RunningGateway(gateway_config(upstream.url), config_path=path).start()
    yield running
    running.stop()


@pytest.fixture
def gateway(gateway_server: RunningGateway, upstream: MockUpstream) -> RunningGateway:
    upstream.reset()
    gateway_server.state.reset_failover()  # circuits and the retry budget start fresh for each test
    return gateway_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL 15 for the session, started on first use; `fresh_database()` isolates tests."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    """One throwaway Prometheus for the session, started on first use with no targets (see `set_targets`)."""
    with PrometheusServer() as server:
        yield server
