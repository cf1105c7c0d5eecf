"""Usage events end to end: one row per request in real Postgres and SQLite, nothing lost when the
database goes away, when the gateway is SIGKILLed, or when it is stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import openai
import pytest

from adapters.base import JSON, SSEEvent
from adapters.openai import OpenAIAdapter, OpenAIStreamTranslator
from gateway.events import postgres_store
from tests.openai_schema import validate
from tests.support.gateway import RunningGateway, free_port, sha, sqlite_usage_rows
from tests.support.postgres_server import PostgresServer
from tests.support.serve import serve, shut_down, wait_ready
from tests.support.upstream import Behaviour, MockUpstream

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-events-0001"
BLOCKED_KEY = "sk-test-events-blocker"
GPT_4O_MINI = (0.15, 0.60)  # the built-in price of the upstream model, USD per 1M tokens


def config(upstream_url: str, events: str) -> str:
    return f"""
events: {events}
providers:
  up: {{type: openai, base_url: "{upstream_url}/v1", api_key: "sk-upstream-events"}}
  demo: {{type: mock}}
models:
  gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 5}}
  free: {{deployments: [{{provider: demo, model: mock-1}}]}}
  unpriced: {{deployments: [{{provider: up, model: no-such-price}}], retries: 0}}
tenants:
  acme:
    keys: [{{id: acme-events, sha256: "{sha(KEY)}"}}]
    models: ["*"]
  strict:
    keys: [{{id: strict-events, sha256: "{sha(BLOCKED_KEY)}"}}]
    models: [free]
    policies: {{pii: {{action: block}}}}
"""


def postgres_events(dsn: str, spool: Path) -> str:
    return f"{{postgres_dsn: '{dsn}', spool_dir: '{spool}'}}"


def sqlite_events(path: Path, spool: Path) -> str:
    return f"{{sqlite_path: '{path}', spool_dir: '{spool}'}}"


def postgres_gateway(
    upstream: MockUpstream, postgres_server: PostgresServer, spool: Path, database: str
) -> tuple[RunningGateway, str]:
    """A started gateway writing its events to a fresh Postgres database, and the database's DSN."""
    upstream.reset()
    dsn = postgres_server.fresh_database(database)
    return RunningGateway(config(upstream.url, postgres_events(dsn, spool))).start(), dsn


def pg_rows(dsn: str, sql: str = "SELECT * FROM usage_events") -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(sql)]
        except asyncpg.UndefinedTableError:
            return []
        finally:
            await conn.close()

    return asyncio.run(fetch())


def wait_for(fetch: Callable[[], list[dict[str, Any]]], count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows = fetch()
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = fetch()
    return rows


def journal_rows(spool: Path) -> int:
    return sum(1 for path in spool.glob("journal-*.jsonl") for line in path.read_bytes().splitlines() if line.strip())


def cost(prompt: int, completion: int, price: tuple[float, float] = GPT_4O_MINI) -> float:
    return (prompt * price[0] + completion * price[1]) / 1_000_000


async def drive(url: str, total: int, concurrency: int, on_done: Callable[[int], None] | None = None) -> list[Any]:
    """`total` chat requests (every tenth streamed) through the openai SDK; returns what each client saw."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=20)
    seen: list[Any] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with slots:
            messages: Any = [{"role": "user", "content": f"request {index}"}]
            if index % 10 == 0:
                stream = await client.chat.completions.create(
                    model="gpt", messages=messages, stream=True, stream_options={"include_usage": True}
                )
                usage = None
                request_id = stream.response.headers["x-request-id"]
                async for chunk in stream:
                    usage = chunk.usage or usage
                seen.append((request_id, usage.prompt_tokens, usage.completion_tokens, True))
            else:
                raw = await client.chat.completions.with_raw_response.create(model="gpt", messages=messages)
                completion = raw.parse()
                assert completion.usage is not None
                usage = completion.usage
                seen.append((raw.headers["x-request-id"], usage.prompt_tokens, usage.completion_tokens, False))
            if on_done is not None:
                on_done(len(seen))

    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        await client.close()
    return seen


def test_a_thousand_requests_give_a_thousand_rows_with_the_usage_clients_were_told(
    upstream: MockUpstream, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    gateway, dsn = postgres_gateway(upstream, postgres_server, tmp_path / "spool", "events_thousand")
    try:
        seen = asyncio.run(drive(gateway.url, 1000, 32))
        rows = wait_for(lambda: pg_rows(dsn), 1000)
    finally:
        gateway.stop()
    assert len(seen) == 1000
    assert len(rows) == 1000
    by_id = {row["request_id"]: row for row in rows}
    assert len(by_id) == 1000
    for request_id, prompt, completion, streamed in seen:
        row = by_id[request_id]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
        assert row["cost_usd"] == pytest.approx(cost(prompt, completion), rel=1e-12)
        assert row["streamed"] is streamed
        assert (row["status"], row["http_status"], row["tenant"], row["key_id"]) == (
            "completed",
            200,
            "acme",
            "acme-events",
        )
        assert (row["model_alias"], row["provider"], row["upstream_model"]) == ("gpt", "up", "gpt-4o-mini")
        assert row["price_version"] and row["latency_ms"] > 0
        assert json.loads(row["fallback_path"]) == ["gpt"] and json.loads(row["attempts"]) == ["up/gpt-4o-mini"]
        assert row["prompt_content"] is None and row["completion_content"] is None  # no log_content
        if streamed:
            assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]
    partitions = pg_rows(dsn, "SELECT inhrelid::regclass::text AS name FROM pg_inherits")
    assert partitions and all(p["name"].startswith("usage_events_") for p in partitions)
    assert journal_rows(tmp_path / "spool") == 0


def test_postgres_stopped_mid_run_loses_nothing_and_duplicates_nothing(
    upstream: MockUpstream, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    gateway, dsn = postgres_gateway(upstream, postgres_server, spool, "events_outage")
    outage: list[float] = []

    def on_done(done: int) -> None:
        # from the client's event loop: the gateway runs in its own thread, so pausing here is fine
        if done == 300:
            postgres_server.stop(mode="immediate")
            outage.append(time.monotonic())
        elif done == 700:
            outage.append(journal_rows(spool))
            postgres_server.start()

    try:
        seen = asyncio.run(drive(gateway.url, 1000, 16, on_done))
        rows = wait_for(lambda: pg_rows(dsn), 1000, timeout_s=60)
        spooled_during_outage = outage[1]
        pipeline = gateway.state.pipeline
        assert pipeline is not None
        stats = pipeline.stats
    finally:
        if not postgres_server.running:
            postgres_server.start()
        gateway.stop()
    assert spooled_during_outage >= 300  # the rows of the outage were on disk, not in memory
    assert stats.write_failures >= 1 and stats.replayed >= 300
    assert len(rows) == 1000
    assert {row["request_id"] for row in rows} == {s[0] for s in seen}
    counted = pg_rows(dsn, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM usage_events")
    assert counted == [{"n": 1000, "d": 1000}]
    assert journal_rows(spool) == 0  # the spool was emptied


def test_readyz_says_spooling_for_the_whole_of_a_hung_postgres_outage(
    upstream: MockUpstream, postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres hangs (SIGSTOP): once the first write has missed its deadline, /readyz (and the store-health gauge)
    say spooling until the spool has been replayed, also while a replay attempt waits on the hung server; and
    every answered request still has its one row once the server wakes up."""
    monkeypatch.setattr(postgres_store, "CALL_TIMEOUT_S", 0.5)  # each attempt waits this long on the hung server
    monkeypatch.setattr(postgres_store, "CONNECT_TIMEOUT_S", 0.5)
    gateway, dsn = postgres_gateway(upstream, postgres_server, tmp_path / "spool", "events_hung")
    pipeline = gateway.state.pipeline
    assert pipeline is not None
    answered: list[str] = []

    def ask(count: int) -> None:
        for index in range(count):
            response = httpx.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "gpt", "messages": [{"role": "user", "content": f"hi {index}"}]},
                headers={"authorization": f"Bearer {KEY}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            answered.append(response.headers["x-request-id"])

    try:
        ask(5)
        assert len(wait_for(lambda: pg_rows(dsn), 5)) == 5
        with postgres_server.hung():
            ask(5)  # answered at once: their events are journaled
            deadline = time.monotonic() + 10
            while pipeline.stats.write_failures == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pipeline.stats.write_failures > 0
            seen = set()
            until = time.monotonic() + 2.5  # two retries at least, each waiting CALL_TIMEOUT_S on the server
            while time.monotonic() < until:
                readiness = httpx.get(gateway.url + "/readyz").json()
                seen.add((readiness["status"], readiness["checks"]["events"]))
                time.sleep(0.02)
            metrics = httpx.get(gateway.url + "/metrics").text
        rows = wait_for(lambda: pg_rows(dsn), 10)
        deadline = time.monotonic() + 10
        while httpx.get(gateway.url + "/readyz").json()["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.05)
        after = httpx.get(gateway.url + "/readyz").json()
    finally:
        gateway.stop()
    assert seen == {("degraded", "spooling")}
    assert 'gateway_event_store_healthy{store="postgres"} 0.0' in metrics
    assert after == {"status": "ready", "checks": {"config": "ok", "events": "ok"}}
    assert sorted(row["request_id"] for row in rows) == sorted(answered)


def hammer(port: int, stop: threading.Event, answered: list[str]) -> None:
    """Sends requests until `stop`; keeps the request id of every response that arrived whole."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        index = 0
        while not stop.is_set():
            index += 1
            body: dict[str, Any] = {"model": "gpt", "messages": [{"role": "user", "content": f"hi {index}"}]}
            try:
                if index % 5 == 0:
                    body["stream"] = True
                    with client.stream(
                        "POST", "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
                    ) as response:
                        text = "".join(response.iter_text())
                        if response.status_code == 200 and text.rstrip().endswith("data: [DONE]"):
                            answered.append(response.headers["x-request-id"])
                else:
                    response = client.post(
                        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
                    )
                    if response.status_code == 200 and response.json()["usage"]["total_tokens"] > 0:
                        answered.append(response.headers["x-request-id"])
            except (httpx.HTTPError, json.JSONDecodeError):
                return  # the gateway is gone


@pytest.mark.parametrize("postgres_down", [False, True], ids=["postgres-up", "postgres-down-at-kill"])
def test_sigkill_mid_run_then_restart_replays_every_answered_request_once(
    upstream: MockUpstream, postgres_server: PostgresServer, tmp_path: Path, postgres_down: bool
) -> None:
    """Killed while rows wait in the queue (Postgres up), or while they exist only in the journal
    (Postgres down since mid-run): either way the next process replays every answered request."""
    upstream.reset()
    upstream.behaviour = Behaviour(delay_s=0.005)
    dsn = postgres_server.fresh_database("events_sigkill")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(config(upstream.url, postgres_events(dsn, tmp_path / "spool")))
    port = free_port()
    process = serve(config_path, port)
    answered: list[str] = []
    try:
        wait_ready(port, process)
        stop = threading.Event()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(hammer, port, stop, answered)
            deadline = time.monotonic() + 30
            while len(answered) < 200 and time.monotonic() < deadline:
                time.sleep(0.01)
            if postgres_down:
                postgres_server.stop(mode="immediate")
            while len(answered) < 400 and time.monotonic() < deadline:
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)  # mid-run: 8 clients have requests in flight
            process.wait(10)
            stop.set()
        assert len(answered) >= 400
        if postgres_down:
            postgres_server.start()
            in_database_at_kill = {row["request_id"] for row in pg_rows(dsn)}
            assert set(answered) - in_database_at_kill, "every row was written before the kill: nothing to prove"
        process = serve(config_path, port)  # the same spool: it adopts the dead process's journal
        wait_ready(port, process)
        rows = wait_for(lambda: pg_rows(dsn), len(answered), timeout_s=30)
    finally:
        if not postgres_server.running:
            postgres_server.start()
        shut_down(process)
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids))  # no duplicates
    missing = set(answered) - set(ids)
    assert not missing, f"{len(missing)} answered requests have no row"
    assert journal_rows(tmp_path / "spool") == 0


def test_sigterm_writes_the_queue_before_exit(upstream: MockUpstream, tmp_path: Path) -> None:
    upstream.reset()
    database = tmp_path / "usage.sqlite"
    config_path = tmp_path / "config.yaml"
    served_config = config(upstream.url, sqlite_events(database, tmp_path / "spool"))
    config_path.write_text("server: {readiness_grace_s: 0.2}\n" + served_config)
    port = free_port()
    process = serve(config_path, port)
    try:
        wait_ready(port, process)
        seen = asyncio.run(drive(f"http://127.0.0.1:{port}", 200, 16))
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    rows = sqlite_usage_rows(database)
    assert sorted(r["request_id"] for r in rows) == sorted(s[0] for s in seen)
    assert journal_rows(tmp_path / "spool") == 0


@pytest.fixture
def sqlite_gateway(upstream: MockUpstream, tmp_path: Path) -> Iterator[tuple[RunningGateway, Path]]:
    upstream.reset()
    database = tmp_path / "usage.sqlite"
    gateway = RunningGateway(config(upstream.url, sqlite_events(database, tmp_path / "spool"))).start()
    try:
        yield gateway, database
    finally:
        gateway.stop()


def post(gateway: RunningGateway, body: Any, key: str = KEY) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def test_every_outcome_leaves_exactly_one_row_saying_what_happened(
    sqlite_gateway: tuple[RunningGateway, Path], upstream: MockUpstream
) -> None:
    gateway, database = sqlite_gateway
    hello = [{"role": "user", "content": "hello"}]
    expected: dict[str, dict[str, Any]] = {}

    def check(response: httpx.Response, **fields: Any) -> None:
        expected[response.headers["x-request-id"]] = fields

    check(post(gateway, {"model": "gpt", "messages": hello}), status="completed", http_status=200, prompt_tokens=11)
    check(post(gateway, {"model": "free", "messages": hello}), status="completed", http_status=200, cost_usd=0.0)
    check(
        post(gateway, {"model": "unpriced", "messages": hello}),
        status="completed",
        cost_usd=None,  # tokens with no known price: unknown, not zero
        price_version=None,
        prompt_tokens=11,
    )
    check(
        post(gateway, {"model": "gpt", "messages": hello}, key="sk-wrong"),
        status="blocked",
        http_status=401,
        blocked_by="auth",
        tenant=None,
        key_id=None,
    )
    check(
        post(gateway, {"model": "nope", "messages": hello}),
        status="failed",
        http_status=404,
        error_code="model_not_found",
        model_requested="nope",
    )
    check(post(gateway, {"model": "gpt"}), status="failed", http_status=400)
    check(
        post(
            gateway,
            {"model": "free", "messages": [{"role": "user", "content": "mail me at a.b@example.com"}]},
            key=BLOCKED_KEY,
        ),
        status="blocked",
        http_status=403,
        blocked_by="pii",
        error_code="pii_detected",
        tenant="strict",
    )
    upstream.behaviour = Behaviour(status=500)
    check(post(gateway, {"model": "gpt", "messages": hello}), status="failed", http_status=502, model_alias="gpt")
    deep = "[" * 300 + "1" + "]" * 300  # read by orjson, but deeper than it writes: the provider's fault
    message = f'{{"role": "assistant", "content": "hi", "x": {deep}}}'
    upstream.behaviour = Behaviour(json_body=f'{{"choices": [{{"index": 0, "message": {message}}}]}}'.encode())
    check(post(gateway, {"model": "gpt", "messages": hello}), status="failed", http_status=502)
    upstream.behaviour = Behaviour()

    rows = wait_for(lambda: sqlite_usage_rows(database), len(expected))
    assert len(rows) == len(expected)
    by_id = {row["request_id"]: row for row in rows}
    for request_id, fields in expected.items():
        row = by_id[request_id]
        for name, value in fields.items():
            assert row[name] == value, (name, row)
        assert json.loads(row["pii_counts"]) == ({"email": 1} if row["blocked_by"] == "pii" else {})


def test_a_client_that_leaves_mid_stream_leaves_a_cancelled_row(
    sqlite_gateway: tuple[RunningGateway, Path], upstream: MockUpstream
) -> None:
    gateway, database = sqlite_gateway
    upstream.behaviour = Behaviour(chunks=50, chunk_interval_s=0.05)
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    ) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_bytes())
    [row] = wait_for(lambda: sqlite_usage_rows(database), 1)
    assert (row["request_id"], row["status"], row["http_status"], row["streamed"]) == (request_id, "cancelled", 499, 1)


def test_log_content_keeps_prompts_and_answers_with_pii_redacted(upstream: MockUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.behaviour = Behaviour(echo=True)
    database = tmp_path / "usage.sqlite"
    text = config(upstream.url, sqlite_events(database, tmp_path / "spool")).replace(
        '    models: ["*"]\n', '    models: ["*"]\n    log_content: true\n    policies: {pii: {action: flag}}\n', 1
    )
    gateway = RunningGateway(text).start()
    try:
        said = "call me on +1 415 555 0100 or write to jane.doe@example.com"
        answer = post(gateway, {"model": "gpt", "messages": [{"role": "user", "content": said}]})
        assert answer.status_code == 200
        assert "jane.doe@example.com" in answer.json()["choices"][0]["message"]["content"]  # flag: passed on
        [row] = wait_for(lambda: sqlite_usage_rows(database), 1)
    finally:
        gateway.stop()
    assert row["prompt_content"] and row["completion_content"]
    for logged in (row["prompt_content"], row["completion_content"]):
        assert "jane.doe@example.com" not in logged and "555 0100" not in logged
        assert "call me on" in logged or "call me on" in json.dumps(logged)


def test_a_bug_is_answered_500_with_the_request_id_and_leaves_a_row_saying_so(
    sqlite_gateway: tuple[RunningGateway, Path], upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever escapes the endpoints (here, an adapter made to fail) is still one usage row and an
    OpenAI-shaped answer carrying the request id; a stream already under way ends with an error event."""
    gateway, database = sqlite_gateway

    def broken(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("a bug")

    hello = [{"role": "user", "content": "hello"}]
    with monkeypatch.context() as patch:
        patch.setattr(OpenAIAdapter, "build_chat", broken)
        answer = post(gateway, {"model": "gpt", "messages": hello})
    feed = OpenAIStreamTranslator.feed

    def broken_after_the_first_chunk(self: OpenAIStreamTranslator, event: SSEEvent) -> list[JSON]:
        if event.data.startswith('{"id"') and '"role"' not in event.data:
            raise RuntimeError("a bug")
        return feed(self, event)

    upstream.behaviour.chunk_interval_s = 0.05  # the first chunk arrives alone, and the response starts with it
    with monkeypatch.context() as patch:
        patch.setattr(OpenAIStreamTranslator, "feed", broken_after_the_first_chunk)
        streamed = post(gateway, {"model": "gpt", "messages": hello, "stream": True})

    assert answer.status_code == 500 and answer.json()["error"]["type"] == "server_error"
    validate("ErrorResponse", answer.json())
    assert streamed.status_code == 200
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["type"] == "server_error"
    rows = {row["request_id"]: row for row in wait_for(lambda: sqlite_usage_rows(database), 2)}
    assert (rows[answer.headers["x-request-id"]]["status"], rows[answer.headers["x-request-id"]]["http_status"]) == (
        "failed",
        500,
    )
    streamed_row = rows[streamed.headers["x-request-id"]]
    assert (streamed_row["status"], streamed_row["http_status"], streamed_row["error_type"]) == (
        "failed",
        200,
        "server_error",
    )
    assert len(rows) == 2
