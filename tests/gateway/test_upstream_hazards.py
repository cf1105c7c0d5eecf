"""What the upstream side of the connection can do to the gateway, on real sockets with the official SDK as the
client (tests/support/raw_upstream.py plays providers that close, trickle, or never stop): pooled connections
closed under a request are resent without a trace, and no answer can take the worker's memory."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.conftest import ACME_KEY
from tests.support.gateway import RunningGateway, settled_limits, sha
from tests.support.raw_upstream import Conn, Handler, RawUpstream, completion, ok

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-canary-0001"{extra}}}
models:
  gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}], timeout_s: 8}}
  once: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 8}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{key_sha}"}}]
    models: ["*"]
"""
MESSAGES = [{"role": "user", "content": "hi"}]
FIRST = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"first"},"finish_reason":null}]}\n\n'
)
LAST = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def start(handler: Handler, extra: str = "") -> tuple[RawUpstream, RunningGateway, list[object]]:
    upstream = RawUpstream(handler).start()
    gateway = RunningGateway(CONFIG.format(url=upstream.url, extra=extra, key_sha=sha(ACME_KEY))).start()
    events: list[object] = []
    emit = gateway.state.events.emit
    gateway.state.events.emit = lambda record: (events.append(record), emit(record))  # type: ignore[method-assign]
    return upstream, gateway, events


def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=60)


def peak_growth_mb(run: Callable[[], None]) -> float:
    """Peak RSS growth of this process (gateway and upstream threads) while `run()` runs."""

    def read(field: str) -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))

    base = read("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM
    run()
    return read("VmHWM") - base


# ── a pooled connection the upstream closed as the next request went out ─────────────────────────────


async def close_racing_the_second_request(conn: Conn) -> None:
    """Answers the first request of a connection (keep-alive), then drops the connection when the next one
    arrives, unanswered: an idle-timeout close crossing the request on the wire."""
    await conn.request()
    await asyncio.sleep(0.3)  # so that concurrent first requests each open their own connection
    await conn.write(ok(completion()))
    await conn.request()
    conn.close()


def test_a_stale_pooled_connection_is_retried_at_once_without_a_user_visible_error() -> None:
    upstream, gateway, _ = start(close_racing_the_second_request)
    try:
        client = sdk(gateway)
        client.chat.completions.create(model="once", messages=MESSAGES)  # leaves a pooled connection
        answer = client.chat.completions.create(model="once", messages=MESSAGES)  # (raises InternalServerError 502)
    finally:
        gateway.stop()
        upstream.stop()
    assert answer.choices[0].message.content == "hi"


def test_a_wave_of_stale_pooled_connections_does_not_open_the_circuit() -> None:
    """Default retries (2) and circuit (5 failures): 8 pooled connections all found closed by the next wave."""
    upstream, gateway, _ = start(close_racing_the_second_request)

    async def wave() -> list[int]:
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=20)

        async def one() -> int:
            try:
                await client.chat.completions.create(model="gpt", messages=MESSAGES)
                return 200
            except openai.APIStatusError as exc:
                return exc.status_code

        return list(await asyncio.gather(*(one() for _ in range(8))))

    try:
        assert asyncio.run(wave()) == [200] * 8
        second = asyncio.run(wave())
        circuit = gateway.state.failover.circuits.snapshot()["up/gpt-4o-mini"]
    finally:
        gateway.stop()
        upstream.stop()
    assert second == [200] * 8, second  # (it was 503s and 502s, and the circuit open for 30 s)
    assert circuit["state"] == "closed" and circuit["consecutive_failures"] == 0, circuit


# ── huge and hostile answers ───────────────────────────────────────────────────────────────────────

SPACES = b" " * MB


async def three_hundred_mb(conn: Conn) -> None:
    await conn.request()
    await conn.write(
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {300 * MB + 1}\r\n\r\n".encode()
    )
    for _ in range(300):
        await conn.write(SPACES)
    await conn.write(b"x")  # not JSON: nothing reaches the client, only the gateway's buffering counts


async def endless(conn: Conn) -> None:
    await conn.request()
    await conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    for _ in range(400):  # (stops at 400 MB, then stalls, to spare the test machine)
        await conn.write(chunk(SPACES))
    await asyncio.sleep(30)


@functools.cache
def bomb() -> bytes:
    """4.5 MB on the wire, 1 GB decompressed (made once, when a test asks: it takes seconds)."""
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)
    return gz.compress(b'{"choices": [], "pad": "') + b"".join(gz.compress(SPACES) for _ in range(1000)) + gz.flush()


async def zip_bomb(conn: Conn) -> None:
    await conn.request()
    await conn.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        + f"content-length: {len(bomb())}\r\n\r\n".encode()
        + bomb()
    )
    await asyncio.sleep(30)


def one_call_measured(handler: Handler, stream: bool) -> tuple[list[openai.APIError], list[object], float]:
    """One request to a provider played by `handler`: what the client caught, the usage events, and how much the
    process's peak memory grew meanwhile."""
    upstream, gateway, events = start(handler)
    caught: list[openai.APIError] = []

    def call() -> None:
        try:
            answer = sdk(gateway).chat.completions.create(model="once", messages=MESSAGES, stream=stream)
            if stream:
                list(answer)  # type: ignore[arg-type]
        except openai.APIError as exc:
            caught.append(exc)

    try:
        growth = peak_growth_mb(call)
    finally:
        gateway.stop()
        upstream.stop()
    return caught, events, growth


@pytest.mark.parametrize("handler", [three_hundred_mb, endless, zip_bomb], ids=lambda h: h.__name__)
def test_a_huge_answer_is_refused_with_bounded_memory(handler: Handler) -> None:
    if handler is zip_bomb:
        bomb()  # made before the request: seconds of CPU, which a busy machine turned into the model's timeout (a 504)
    caught, events, growth = one_call_measured(handler, stream=False)
    assert caught and isinstance(caught[0], openai.APIStatusError) and caught[0].status_code == 502
    assert len(events) == 1
    # it was 663 MB (300 MB body), ~400 MB (endless, until timeout_s), 2,007 MB (1 MB gzip): the Helm limit is 1Gi
    assert growth < 120, f"the gateway held {growth:.0f} MB for one upstream answer"


async def one_event_of_many_lines(conn: Conn) -> None:
    """A stream whose second event never ends: 400 MB of 1 KB `data:` lines, no blank line."""
    await conn.request()
    await conn.write(SSE_HEAD + chunk(FIRST))
    block = (b"data: " + b"A" * 1018 + b"\n") * 1024
    for _ in range(400):
        await conn.write(chunk(block))
    await asyncio.sleep(30)


def test_a_stream_event_of_many_lines_is_bounded_like_a_long_line() -> None:
    caught, events, growth = one_call_measured(one_event_of_many_lines, stream=True)
    assert caught and len(events) == 1  # an error event after the first chunk
    assert growth < 120, f"{growth:.0f} MB"  # it was ~420 MB, cut only by timeout_s


# ── a stream's end is not held back by the rest of the provider's body ─────────────────────────────────────


async def end_the_body_once_the_client_has_done(conn: Conn) -> None:
    """Sends a whole stream, [DONE] included, but ends the chunked body only once the client has had its [DONE]
    (the test counts them): a gateway that waits for the body's end before the client's [DONE] waits in vain,
    gives up on the connection, and the next request needs a new one."""
    served = 0
    while await conn.request() is not None:
        await conn.write(SSE_HEAD + chunk(FIRST + LAST))
        served += 1
        for _ in range(500):
            if conn.server.extra.get("clients_done", 0) >= served:
                break
            await asyncio.sleep(0.01)
        await conn.write(b"0\r\n\r\n")


def test_the_client_s_done_does_not_wait_for_the_provider_s_body_to_end() -> None:
    upstream, gateway, _ = start(end_the_body_once_the_client_has_done)
    try:
        for _ in range(2):
            chunks = list(sdk(gateway).chat.completions.create(model="once", messages=MESSAGES, stream=True))
            assert chunks[0].choices[0].delta.content == "first"
            upstream.extra["clients_done"] = upstream.extra.get("clients_done", 0) + 1
            time.sleep(0.1)  # the body's end, read in the background, has given the connection back by then
    finally:
        gateway.stop()
        upstream.stop()
    assert upstream.connections == 1  # the body was read to its end: the connection went back to the pool


# ── a failure's message says what the provider did ─────────────────────────────────────────────────────────


async def no_content(conn: Conn) -> None:
    while await conn.request() is not None:
        await conn.write(b"HTTP/1.1 204 No Content\r\n\r\n")


async def cut_short(conn: Conn) -> None:
    await conn.request()
    await conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    await conn.write(chunk(completion()[:40]))
    conn.close()  # before the chunked body's end


async def bad_status_line(conn: Conn) -> None:
    await conn.request()
    await conn.write(b"HTTP/1.1 2x0 Nope\r\n\r\n")
    conn.close()


@pytest.mark.parametrize(
    ("handler", "said"),
    [
        (no_content, "answered HTTP 204 with a body that is not JSON"),
        (bad_status_line, "answered with invalid HTTP"),
        (cut_short, "its answer was cut short"),
    ],
    ids=["204", "bad-status-line", "cut-short"],
)
def test_a_malformed_answer_is_told_as_what_it_is(handler: Handler, said: str) -> None:
    upstream, gateway, _ = start(handler)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gateway).chat.completions.create(model="once", messages=MESSAGES)
    finally:
        gateway.stop()
        upstream.stop()
    assert caught.value.status_code == 502
    assert said in caught.value.message, caught.value.message  # not "HTTP 502", not "could not be reached"
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] != "upstream_unreachable"


# ── a connect that never ends costs nothing ───────────────────────────────────────────────────────────────────


async def never_finish_the_handshake(conn: Conn) -> None:
    await asyncio.sleep(30)  # TCP accepted; the TLS handshake never answered: no request ever goes out


METERED = """
events: {{sqlite_path: "{events}/usage.sqlite", spool_dir: "{events}/spool"}}
providers:
  up: {{type: openai, base_url: "https://127.0.0.1:{port}/v1", api_key: "sk-upstream-hazards-0001"}}
models:
  gpt: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 1, connect_timeout_s: 5}}
tenants:
  metered:
    keys: [{{id: m-1, sha256: "{key_sha}"}}]
    models: ["*"]
    budgets: [{{tokens: 1000000, per: day}}]
"""


def test_a_timeout_while_still_connecting_charges_nothing(tmp_path: Path) -> None:
    """The model's timeout cut the request before it went out: unlike one cut while the provider was at work,
    it is charged nothing, and its cost is 0, not unknown."""
    upstream = RawUpstream(never_finish_the_handshake).start()
    gateway = RunningGateway(METERED.format(events=tmp_path, port=upstream.port, key_sha=sha(ACME_KEY))).start()
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=10)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt", messages=MESSAGES, max_tokens=500)
        [budget] = settled_limits(gateway, "metered")
    finally:
        gateway.stop()
        upstream.stop()
    assert caught.value.status_code == 504
    assert upstream.requests == []
    assert (budget.reserved, budget.spent) == (0, 0)
    with sqlite3.connect(tmp_path / "usage.sqlite") as db:
        assert db.execute("SELECT status, http_status, cost_usd FROM usage_events").fetchall() == [("failed", 504, 0.0)]


# ── a connection dropped after the provider had the request is not resent ────────────────────────────────────


async def take_the_request_then_close(conn: Conn) -> None:
    """Reached on a fresh connection, the provider reads the request, works a moment, and drops the connection
    without answering: it may have generated (and billed), so the request is not resent behind the failover."""
    await conn.request()
    await asyncio.sleep(0.3)
    conn.close()


async def answer_then_take_the_next_and_drop_it(conn: Conn) -> None:
    """The first request answered on a kept-alive connection; the second, on the same connection, read and worked
    on for a second, then the connection dropped: a pooled connection, but not a stale one."""
    await conn.request()
    await conn.write(ok(completion()))
    await conn.request()
    await asyncio.sleep(1)
    conn.close()


@pytest.mark.parametrize(
    ("handler", "answered_before"),
    [(take_the_request_then_close, 0), (answer_then_take_the_next_and_drop_it, 1)],
    ids=["fresh-connection", "pooled-connection-held-a-while"],
)
def test_a_connection_dropped_after_the_provider_had_the_request_is_not_resent(
    handler: Handler, answered_before: int
) -> None:
    upstream, gateway, _ = start(handler)
    try:
        client = sdk(gateway)
        for _ in range(answered_before):
            client.chat.completions.create(model="once", messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="once", messages=MESSAGES)  # retries: 0
    finally:
        gateway.stop()
        upstream.stop()
    assert len(upstream.requests) == answered_before + 1, "retries: 0 means one send of each request"
    assert caught.value.status_code == 502
    assert "closed the connection before answering" in caught.value.message, caught.value.message


BUDGETED = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-hazards-0002"}}
models:
  once: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 8}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{key_sha}"}}]
    models: ["*"]
    budgets: [{{tokens: 900, per: day}}]
"""
USAGE = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}\n\n'
)


async def stream_then_linger(conn: Conn) -> None:
    while await conn.request() is not None:
        await conn.write(SSE_HEAD + chunk(FIRST + USAGE + LAST))
        await asyncio.sleep(0.4)  # the chunked body's end comes 0.4 s after [DONE]
        await conn.write(b"0\r\n\r\n")


def test_a_stream_is_settled_without_waiting_for_the_provider_s_body_to_end() -> None:
    """Near a budget, the next request must find the last one settled at what it spent (10 tokens), not still
    holding its worst case (some 550) while the rest of the provider's body is read for the pool."""
    upstream = RawUpstream(stream_then_linger).start()
    gateway = RunningGateway(BUDGETED.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()
    try:
        client = sdk(gateway)
        for _ in range(3):  # back to back
            chunks = list(client.chat.completions.create(model="once", messages=MESSAGES, stream=True, max_tokens=500))
            assert chunks[0].choices[0].delta.content == "first"
    finally:
        gateway.stop()
        upstream.stop()
