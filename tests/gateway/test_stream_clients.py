"""Streams to clients that misbehave on real sockets: one that stops reading (a zero TCP window) while the
provider keeps sending. The gateway must not wait on it for ever: the provider's connection is closed, the
request is recorded once and settled, and the client's connection is given up."""

from __future__ import annotations

import json
import socket
import time

import pytest

from gateway import chat
from gateway.events import RequestRecord
from tests.conftest import ACME_KEY
from tests.support.gateway import RunningGateway, settled_limits, sha
from tests.support.raw_upstream import Conn, RawUpstream

PAD = "x" * 1000
OPENAI_PIECE = (
    'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    f'"choices":[{{"index":0,"delta":{{"content":"{PAD}"}},"finish_reason":null}}]}}\n\n'
).encode()
ANTHROPIC_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-x",'
    b'"usage":{"input_tokens":7,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
ANTHROPIC_PIECE = (
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    f'"delta":{{"type":"text_delta","text":"{PAD}"}}}}\n\n'
).encode()
PROVIDERS = {
    "openai": ('type: openai, base_url: "{url}/v1"', b"", OPENAI_PIECE),
    "azure": ('type: azure, base_url: "{url}"', b"", OPENAI_PIECE),
    "anthropic": ('type: anthropic, base_url: "{url}"', ANTHROPIC_START, ANTHROPIC_PIECE),
}
BODY = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 100}
).encode()
WORST_CASE = len(BODY) + 100  # the prompt's bound (its bytes) and max_tokens
CONFIG = """
providers:
  up: {{{provider}, api_key: "sk-upstream-0001"}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}], timeout_s: 1, retries: 0}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{key_sha}"}}]
    models: ["*"]
    budgets: [{{tokens: 1000000, per: day}}]
"""


def endless(opening: bytes, piece: bytes):  # type: ignore[no-untyped-def]
    """A provider that streams for ever, as fast as the gateway takes it; notes when the gateway hangs up."""

    async def handler(conn: Conn) -> None:
        await conn.request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        if opening:
            conn.writer.write(f"{len(opening):x}\r\n".encode() + opening + b"\r\n")
        try:
            while True:
                await conn.write(framed)
        finally:
            conn.server.extra["closed"] = True

    return handler


def stalled_client(gateway: RunningGateway) -> socket.socket:
    """Asks for a stream, reads the status line, then reads nothing more (its receive window fills up)."""
    payload = BODY
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {ACME_KEY}\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    return sock


def read_to_end(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    received = []
    while piece := sock.recv(1 << 20):
        received.append(piece)
    return b"".join(received)


@pytest.mark.parametrize("kind", list(PROVIDERS))
def test_a_client_that_stops_reading_is_given_up_and_its_request_settled(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat, "LAST_FRAME_S", 0.2)
    provider, opening, piece = PROVIDERS[kind]
    upstream = RawUpstream(endless(opening, piece)).start()
    gateway = RunningGateway(CONFIG.format(provider=provider.format(url=upstream.url), key_sha=sha(ACME_KEY))).start()
    events: list[RequestRecord] = []
    emit = gateway.state.events.emit
    gateway.state.events.emit = lambda record: (events.append(record), emit(record))  # type: ignore[method-assign]
    try:
        sock = stalled_client(gateway)
        limits = settled_limits(gateway, "acme", timeout_s=5)
        assert limits[0].reserved == 0, "the request still holds its reservation: the gateway waits on the client"
        assert upstream.extra.get("closed"), "the provider's stream is still open"
        # while the client still reads nothing: closing would wait for it to take what is buffered, for ever
        deadline = time.monotonic() + 5
        while gateway.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.open_connections == 0, "the client's connection is still open: it was not given up"
        assert read_to_end(sock, 5).count(b"data: ") > 1  # what the kernel had taken still arrives, then the end
        sock.close()
    finally:
        gateway.stop()
        upstream.stop()
    [record] = events
    # the client was the slow one, not the provider: not an upstream_timeout held against the provider
    assert (record.status, record.http_status, record.error_code) == ("failed", 200, "client_timeout")
    assert limits[0].spent == WORST_CASE  # the provider was cut before it reported usage
