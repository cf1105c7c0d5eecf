"""The throwaway servers the suite relies on: PostgreSQL survives a stop/start on the same port, and
Prometheus scrapes a target and answers PromQL about it."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from gateway.state_store import REDIS_CONNECTIONS
from tests.support.gateway import RunningGateway, settled_limits, sha
from tests.support.postgres_server import PostgresServer
from tests.support.prometheus_server import PrometheusError, PrometheusServer
from tests.support.redis_server import RedisServer
from tests.support.scratch_server import free_port


async def fetch_values(dsn: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT value FROM items ORDER BY id")
        return [row["value"] for row in rows]
    finally:
        await connection.close()


async def create_and_insert(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE TABLE items (id serial PRIMARY KEY, value text NOT NULL)")
        await connection.execute("INSERT INTO items (value) VALUES ($1), ($2)", "kept", "also kept")
    finally:
        await connection.close()


def test_postgres_keeps_its_data_across_a_stop_and_start_on_the_same_port() -> None:
    server = PostgresServer()
    with server:
        asyncio.run(create_and_insert(server.dsn))
        port = server.port
        server.stop()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        server.start()
        assert server.port == port
        assert asyncio.run(fetch_values(server.dsn)) == ["kept", "also kept"]
        server.kill()  # no checkpoint: the next start recovers from the WAL
        server.start()
        assert server.psql("SELECT count(*) FROM items") == "2"
    assert not server.directory.exists()


def test_postgres_refuses_to_start_when_its_port_was_taken() -> None:
    with PostgresServer() as server:
        server.stop()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()
            with pytest.raises(RuntimeError, match="already in use"):
                server.start()
        server.start()
        assert server.psql("SELECT 1") == "1"


def test_postgres_fresh_databases_are_empty_and_isolated(postgres_server: PostgresServer) -> None:
    first = postgres_server.fresh_database()
    asyncio.run(create_and_insert(first))
    second = postgres_server.fresh_database()
    assert first != second
    name = first.rsplit("/", 1)[1]
    count_tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert postgres_server.psql(count_tables, database=name) == "1"
    assert postgres_server.psql(count_tables, database=second.rsplit("/", 1)[1]) == "0"
    assert postgres_server.fresh_database(name) == first  # the same name again: dropped and recreated empty
    assert postgres_server.psql(count_tables, database=name) == "0"


@pytest.fixture
def metrics_target() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    hits = Counter("selftest_hits", "Hits counted by the self-test target.", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_prometheus_scrapes_a_target_and_answers_queries(
    prometheus_server: PrometheusServer, metrics_target: tuple[str, Counter]
) -> None:
    target, hits = metrics_target
    hits.inc(3)
    prometheus_server.set_targets([target])
    try:
        prometheus_server.wait_for_scrape(target)
        result = prometheus_server.query(f'selftest_hits_total{{instance="{target}"}}')
        assert [(r["metric"]["job"], r["value"][1]) for r in result] == [("gateway", "3")]

        hits.inc(2)
        prometheus_server.wait_for_scrape(target)  # a scrape that started after the increment
        assert prometheus_server.query_value(f'selftest_hits_total{{instance="{target}"}}') == 5.0

        with pytest.raises(PrometheusError, match="parse error"):
            prometheus_server.query("sum(")
    finally:
        prometheus_server.set_targets([])
        prometheus_server.delete_series()
    assert prometheus_server.query(f'selftest_hits_total{{instance="{target}"}}') == []


def test_settled_limits_reads_a_redis_backed_gateway_on_the_gateway_s_own_connections(
    redis_server: RedisServer,
) -> None:
    """`settled_limits` asks the gateway's store from the test's thread. Run on a loop of its own, it made the store's
    Redis client drop the gateway's connections for new ones of that loop, each left open when the loop ended (stray
    connections until the collector found them; the collector is held off here so that they show)."""
    redis_server.flush()
    config = f"""state: {{redis_url: "{redis_server.url}"}}
providers: {{demo: {{type: mock}}}}
models: {{demo: {{deployments: [{{provider: demo, model: mock-1}}]}}}}
tenants: {{t: {{keys: [{{id: k, sha256: "{sha("k")}"}}], models: ["*"], budgets: [{{tokens: 100, per: day}}]}}}}
"""
    gateway = RunningGateway(config).start()
    gc.disable()
    try:
        for _ in range(3):
            [budget] = settled_limits(gateway, "t")
        connected = redis_server.clients_left(wait_s=0)
    finally:
        gc.enable()
        gateway.stop()
    assert budget.spent == 0
    assert len(connected) <= REDIS_CONNECTIONS, connected
