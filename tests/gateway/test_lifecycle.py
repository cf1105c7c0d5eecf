"""The process lifecycle of `gateway serve`, as a real process: SIGTERM drains (readiness first, then the
listener, then the streams in flight, then the usage events), `workers: 2` share one budget and reload
together, /readyz tells what it checked, and each model request leaves one JSON log line."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import RunningGateway, free_port, sha
from tests.support.redis_server import RedisServer
from tests.support.serve import Served, serve, shut_down, wait_ready
from tests.support.upstream import Behaviour, MockUpstream

KEY = "sk-test-lifecycle-0001"
ADMIN_TOKEN = "admin-test-lifecycle"
STREAMS = 50


def config(upstream: MockUpstream, tmp_path: Path, server: str = "{}", state: str = "{}", tenant: str = "") -> str:
    return f"""
server: {server}
state: {state}
events: {{sqlite_path: '{tmp_path}/usage.sqlite', spool_dir: '{tmp_path}/spool'}}
providers:
  up: {{type: openai, base_url: "{upstream.url}/v1", api_key: "sk-upstream-lifecycle"}}
models:
  gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 30}}
tenants:
  acme:
    keys: [{{id: acme-life, sha256: "{sha(KEY)}"}}]
    models: ["*"]
{tenant}"""


@pytest.fixture
def slow_streams(upstream: MockUpstream) -> Iterator[MockUpstream]:
    upstream.reset()
    upstream.behaviour = Behaviour(chunks=20, chunk_interval_s=0.05)  # each stream lasts about 1 s
    yield upstream
    upstream.reset()


def rows(database: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(database)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM usage_events")]
    finally:
        db.close()


def started(config_text: str, tmp_path: Path) -> tuple[Served, int]:
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    port = free_port()
    process = serve(path, port)
    wait_ready(port, process)
    return process, port


def chat(port: int, key: str = KEY, content: str = "hi") -> httpx.Response:
    return httpx.post(  # a new connection each time: with several workers, the kernel spreads them
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": content}], "max_tokens": 5},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def request_lines(process: Served) -> list[dict[str, Any]]:
    return [line for line in process.log_lines() if line["logger"] == "gateway.requests"]


def test_sigterm_during_50_streams_finishes_and_bills_them_all_then_exits_0(
    slow_streams: MockUpstream, tmp_path: Path
) -> None:
    grace_s, drain_s = 0.5, 10.0
    process, port = started(
        config(slow_streams, tmp_path, server=f"{{readiness_grace_s: {grace_s}, drain_timeout_s: {drain_s}}}"),
        tmp_path,
    )
    try:
        all_streaming = threading.Event()
        seen: list[tuple[str, str, int, int]] = []

        async def streams() -> None:
            client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=30)
            first_chunks = 0

            async def one(index: int) -> None:
                nonlocal first_chunks
                stream = await client.chat.completions.create(
                    model="gpt",
                    messages=[{"role": "user", "content": f"stream {index}"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                text, finish, usage, counted = "", None, None, False
                async for chunk in stream:
                    if not counted:
                        counted, first_chunks = True, first_chunks + 1
                        if first_chunks == STREAMS:
                            all_streaming.set()
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        finish = choice.finish_reason or finish
                    usage = chunk.usage or usage
                assert finish == "stop" and usage is not None and text
                seen.append(
                    (stream.response.headers["x-request-id"], text, usage.prompt_tokens, usage.completion_tokens)
                )

            try:
                await asyncio.gather(*(one(i) for i in range(STREAMS)))
            finally:
                await client.close()

        runner = ThreadPoolExecutor(1).submit(asyncio.run, streams())
        assert all_streaming.wait(20), "the 50 streams did not all start"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        runner.result(timeout=30)  # every stream ends normally, with its finish_reason and usage
        assert process.wait(grace_s + drain_s + 10) == 0
        assert time.monotonic() - signalled < grace_s + drain_s
    finally:
        if process.poll() is None:
            process.kill()
    assert len(seen) == STREAMS
    billed = {r["request_id"]: r for r in rows(tmp_path / "usage.sqlite")}
    assert len(billed) == STREAMS
    for request_id, _, prompt_tokens, completion_tokens in seen:
        row = billed[request_id]
        assert (row["status"], row["streamed"], row["http_status"]) == ("completed", 1, 200)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt_tokens, completion_tokens)
        assert row["cost_usd"] > 0


def turns_unready(url: str, within_s: float = 0.5) -> list[int]:
    """Polls /readyz (a new connection each time) until it answers 503, for at most `within_s`; then three
    more answers. Every answer's status, in order."""
    statuses: list[int] = []
    deadline = time.monotonic() + within_s
    while (status := httpx.get(url + "/readyz").status_code) != 503:
        statuses.append(status)
        assert time.monotonic() < deadline, f"/readyz still answered {status} {within_s} s after SIGTERM"
        time.sleep(0.01)
    return [*statuses, status, *(httpx.get(url + "/readyz").status_code for _ in range(3))]


def connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_readyz_turns_503_at_once_and_the_listener_closes_after_the_grace_period(
    slow_streams: MockUpstream, tmp_path: Path
) -> None:
    slow_streams.behaviour = Behaviour(chunks=30, chunk_interval_s=0.1)  # a 3 s stream keeps the process alive
    grace_s = 1.5
    process, port = started(config(slow_streams, tmp_path, server=f"{{readiness_grace_s: {grace_s}}}"), tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            json={"model": "gpt", "messages": [{"role": "user", "content": "long"}], "stream": True},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=30,
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")  # the stream is under way
            assert httpx.get(url + "/readyz").status_code == 200
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert turns_unready(url)[-4:] == [503] * 4  # new connections, still accepted
            assert httpx.get(url + "/readyz").json()["status"] == "draining"
            assert chat(port).status_code == 200  # still served during the grace period
            while connects(port):
                assert time.monotonic() - signalled < grace_s + 5, "the listener never closed"
                time.sleep(0.05)
            closed_after = time.monotonic() - signalled
            rest = [line for line in lines if line]  # the stream in flight still finishes after the listener closed
        assert rest[-1] == "data: [DONE]"
        assert closed_after >= grace_s * 0.9
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()


def two_workers(upstream: MockUpstream, redis_server: RedisServer, tmp_path: Path, tenant: str = "") -> str:
    return config(
        upstream,
        tmp_path,
        server="{workers: 2, readiness_grace_s: 0}",
        state=f'{{redis_url: "{redis_server.url}"}}',
        tenant=tenant,
    )


def test_two_workers_share_one_token_budget(upstream: MockUpstream, redis_server: RedisServer, tmp_path: Path) -> None:
    upstream.reset()
    redis_server.flush()
    budget_key = "sk-test-lifecycle-budget"
    tenant = f"""  budgeted:
    keys: [{{id: b-1, sha256: "{sha(budget_key)}"}}]
    models: ["*"]
    budgets: [{{tokens: 300, per: day}}]
"""
    process, port = started(two_workers(upstream, redis_server, tmp_path, tenant), tmp_path)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: chat(port, budget_key, f"budget {i}"), range(60)))
    finally:
        shut_down(process)
    admitted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(admitted) + len(refused) == len(answers), {a.status_code for a in answers}
    spent = sum(a.json()["usage"]["total_tokens"] for a in admitted)
    assert admitted and refused
    assert spent <= 300  # one budget for both workers: two separate ones would admit about twice as much
    served_by = {line["pid"] for line in request_lines(process) if line["tenant"] == "budgeted"}
    assert len(served_by) == 2, "both workers should have answered some of the requests"


@pytest.mark.parametrize("asked_by", ["SIGHUP to the supervisor", "POST /admin/reload to one worker"])
def test_a_reload_reaches_every_worker(
    upstream: MockUpstream, redis_server: RedisServer, tmp_path: Path, asked_by: str
) -> None:
    upstream.reset()
    admin = f'admin: {{token_sha256: "{sha(ADMIN_TOKEN)}"}}\n'
    process, port = started(admin + two_workers(upstream, redis_server, tmp_path), tmp_path)
    newcomer = "sk-test-lifecycle-newcomer"
    try:
        assert chat(port, newcomer).status_code == 401
        newcomer_tenant = f'  newcomer:\n    keys: [{{id: n-1, sha256: "{sha(newcomer)}"}}]\n    models: ["*"]\n'
        (tmp_path / "config.yaml").write_text(admin + two_workers(upstream, redis_server, tmp_path, newcomer_tenant))
        if asked_by.startswith("SIGHUP"):
            process.send_signal(signal.SIGHUP)
        else:
            answer = httpx.post(
                f"http://127.0.0.1:{port}/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["all_workers"] is True
        deadline = time.monotonic() + 10
        while (
            len(
                reloaded := {
                    line["pid"] for line in process.log_lines() if line["message"].startswith("config reloaded")
                }
            )
            < 2
        ):
            assert time.monotonic() < deadline, f"only {len(reloaded)} worker(s) reloaded"
            time.sleep(0.1)
        # new connections until both workers have answered one: the kernel's spread is not even on a busy machine
        # (once, all of 20 went to one worker), and request-log lines reach stderr in batches
        answers: list[httpx.Response] = []
        served_by: set[int] = set()
        deadline = time.monotonic() + 30
        while served_by != reloaded and time.monotonic() < deadline:
            answers.extend(chat(port, newcomer) for _ in range(10))
            time.sleep(0.1)
            served_by = {line["pid"] for line in request_lines(process) if line["tenant"] == "newcomer"}
    finally:
        shut_down(process)
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert served_by == reloaded, "requests on new connections reach both workers, and both know the new tenant"


@pytest.mark.parametrize(
    ("on_error", "code", "status"), [("fail_closed", 503, "not_ready"), ("fail_open", 200, "degraded")]
)
def test_readyz_reports_an_unreachable_redis_by_the_declared_mode(
    upstream: MockUpstream, tmp_path: Path, on_error: str, code: int, status: str
) -> None:
    nobody = free_port()  # nothing listens there
    text = config(upstream, tmp_path, state=f'{{redis_url: "redis://127.0.0.1:{nobody}/0", on_error: {on_error}}}')
    gateway = RunningGateway(text).start()
    try:
        answer = httpx.get(gateway.url + "/readyz", timeout=10)
    finally:
        gateway.stop()
    assert answer.status_code == code
    assert answer.json()["status"] == status
    assert answer.json()["checks"]["redis"] == "unreachable"


def test_readyz_with_redis_reachable_is_ready(
    upstream: MockUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    gateway = RunningGateway(config(upstream, tmp_path, state=f'{{redis_url: "{redis_server.url}"}}')).start()
    try:
        deadline = time.monotonic() + 10
        while (answer := httpx.get(gateway.url + "/readyz", timeout=10)).json()["status"] != "ready":
            assert time.monotonic() < deadline, answer.text  # the event store may still be migrating
            time.sleep(0.05)
    finally:
        gateway.stop()
    assert answer.status_code == 200
    assert answer.json()["checks"] == {"config": "ok", "redis": "ok", "events": "ok"}


def test_each_model_request_leaves_one_json_log_line_without_content_or_keys(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    upstream.reset()
    blocked_key = "sk-test-lifecycle-pii"
    tenant = f"""  strict:
    keys: [{{id: strict-1, sha256: "{sha(blocked_key)}"}}]
    models: ["*"]
    policies: {{pii: {{action: block}}}}
"""
    process, port = started(config(upstream, tmp_path, tenant=tenant), tmp_path)
    secret_words = "my mail is jane.doe@example.com and the plan is tangerine"
    try:
        answers = [
            chat(port, KEY, secret_words),
            chat(port, blocked_key, secret_words),
            chat(port, "sk-test-lifecycle-unknown", secret_words),
        ]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # not a model request: no line
    finally:
        shut_down(process)
    lines = request_lines(process)
    assert [line["request_id"] for line in lines] == [a.headers["x-request-id"] for a in answers]
    assert [(line["status"], line["outcome"], line["tenant"]) for line in lines] == [
        (200, "completed", "acme"),
        (403, "blocked", "strict"),
        (401, "blocked", None),
    ]
    assert lines[0]["model"] == "gpt" and lines[0]["provider"] == "up" and lines[0]["latency_ms"] > 0
    assert lines[0]["prompt_tokens"] == answers[0].json()["usage"]["prompt_tokens"]
    assert lines[1]["blocked_by"] == "pii"
    output = process.output()
    for secret in ("tangerine", "jane.doe", KEY, blocked_key, sha(KEY), "sk-upstream-lifecycle"):
        assert secret not in output


def test_with_two_workers_sigterm_also_turns_readyz_503_then_closes_the_port(
    upstream: MockUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The supervisor passes SIGTERM on to both workers and lets go of its own copy of the listening socket:
    the port closes once the workers close theirs, after the grace period."""
    upstream.reset()
    text = two_workers(upstream, redis_server, tmp_path).replace("readiness_grace_s: 0", "readiness_grace_s: 1.5")
    process, port = started(text, tmp_path)
    try:
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        answers = turns_unready(f"http://127.0.0.1:{port}")
        assert answers[-4:] == [503] * 4, answers  # whichever worker answers: both were told at once
        while connects(port):
            assert time.monotonic() - signalled < 10, "the port never closed"
            time.sleep(0.05)
        assert time.monotonic() - signalled >= 1.4
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_a_sighup_while_the_workers_start_reaches_them_once_they_have_started(
    upstream: MockUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Until a worker's lifespan has set up the reload, SIGHUP would end it: a worker is spawned with SIGHUP
    blocked and takes it once it can reload. (A SIGHUP before any worker exists has no one to reach: the workers
    read the file as it is when they start. So the test waits for the reloads boundedly, and what it asserts is
    that no worker died of the signal and was replaced.)"""
    upstream.reset()
    path = tmp_path / "config.yaml"
    path.write_text(two_workers(upstream, redis_server, tmp_path))
    port = free_port()
    process = serve(path, port)
    try:
        deadline = time.monotonic() + 30
        while not any(line["message"].startswith("Started parent process") for line in process.log_lines()):
            assert time.monotonic() < deadline and process.poll() is None, process.output()
            time.sleep(0.01)
        process.send_signal(signal.SIGHUP)  # the workers are being spawned now
        wait_ready(port, process)
        settled = time.monotonic() + 5
        while time.monotonic() < settled:  # each worker that was there to be told reloads once it has started
            if len({line["pid"] for line in process.log_lines() if line["message"].startswith("config reloaded")}) == 2:
                break
            time.sleep(0.05)
        started = {line["pid"] for line in process.log_lines() if line["message"].startswith("Started server process")}
    finally:
        shut_down(process)
    assert len(started) == 2, "no worker died and was replaced"


@pytest.mark.parametrize(
    ("stream", "behaviour", "answered"),
    [
        (True, Behaviour(chunks=80, chunk_interval_s=0.1), 200),  # 8 s streams: a 200 and a cut stream
        (False, Behaviour(delay_s=8), 503),  # the provider still at work: no status line went out
    ],
    ids=["stream", "json"],
)
def test_requests_cut_by_the_drain_timeout_are_charged_as_unreported(
    upstream: MockUpstream, tmp_path: Path, stream: bool, behaviour: Behaviour, answered: int
) -> None:
    """The provider had the request and may bill it: cost unknown (NULL), not 0.0, as for a client leaving. The
    client is told why its request ended: a 503 server_shutdown error (OpenAI's shape, its request id), or, for a
    stream, a last error event saying so; never the server's plain-text 500 or a stream cut without a word, and
    no traceback in the log (the drain is a planned stop, not a bug)."""
    upstream.reset()
    upstream.behaviour = behaviour  # 1 s drain
    path = tmp_path / "config.yaml"
    path.write_text(f"""server: {{readiness_grace_s: 0, drain_timeout_s: 1}}
events: {{sqlite_path: '{tmp_path}/usage.sqlite', spool_dir: '{tmp_path}/spool'}}
providers: {{up: {{type: openai, base_url: "{upstream.url}/v1", api_key: "sk-upstream"}}}}
models: {{gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 60}}}}
pricing: {{gpt-4o-mini: {{input: 0.15, output: 0.6}}}}
tenants: {{acme: {{keys: [{{id: a, sha256: "{sha(KEY)}"}}], models: ["*"]}}}}
""")
    port = free_port()
    process = serve(path, port)
    wait_ready(port, process)
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": stream}
    answers: list[tuple[int, str | None, str]] = []  # status, x-request-id, the body's last line

    def ask() -> None:
        try:
            with httpx.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"authorization": f"Bearer {KEY}"},
                json=body,
                timeout=30,
            ) as answer:
                lines = [line for line in answer.iter_lines() if line]
                answers.append((answer.status_code, answer.headers.get("x-request-id"), lines[-1] if lines else ""))
        except httpx.HTTPError as exc:
            answers.append((0, None, repr(exc)))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    for client in clients:
        client.join()
    db = sqlite3.connect(tmp_path / "usage.sqlite")
    rows = db.execute("SELECT request_id, status, http_status, error_code, cost_usd FROM usage_events").fetchall()
    assert len(rows) == 3
    for _, status, http_status, code, cost in rows:
        assert (status, http_status, code) == ("failed", answered, "server_shutdown")
        assert cost is None, "the provider was at work and reported nothing: cost unknown (NULL), not 0.0"
    for status, _, last in answers:
        assert status == answered, last
        error = json.loads(last.removeprefix("data: "))["error"]
        assert (error["type"], error["code"]) == ("server_error", "server_shutdown")
    assert sorted(str(request_id) for _, request_id, _ in answers) == sorted(row[0] for row in rows)
    assert "Exception in ASGI application" not in process.output()
