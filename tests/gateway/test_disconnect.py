"""A client that hangs up cancels the upstream call: the provider sees its connection closed within
a second, for JSON and for streams, and the gateway keeps serving."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.conftest import ACME_KEY
from tests.support.gateway import RunningGateway
from tests.support.upstream import MockUpstream


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def raw_request(gateway: RunningGateway, body: dict[str, object]) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {ACME_KEY}\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_disconnect_while_waiting_for_json_cancels_upstream(
    gateway: RunningGateway, upstream: MockUpstream, model: str
) -> None:
    upstream.behaviour.delay_s = 4
    sock = raw_request(gateway, {"model": model, "messages": [{"role": "user", "content": "slow"}]})
    assert wait_for(lambda: len(upstream.received) == 1, 2), "the request never reached the upstream"
    closed_at = time.monotonic()
    sock.close()
    assert wait_for(lambda: upstream.cancelled, 1.5), "upstream was not cancelled"
    assert upstream.cancelled[0] - closed_at < 1.0


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_disconnect_mid_stream_cancels_upstream(gateway: RunningGateway, upstream: MockUpstream, model: str) -> None:
    upstream.behaviour.chunks = 100
    upstream.behaviour.chunk_interval_s = 0.1
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "stream"}], "stream": True},
        headers={"authorization": f"Bearer {ACME_KEY}"},
        timeout=10,
    ) as response:
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: ") and "part" in line:
                seen += 1
                if seen == 2:
                    break
    closed_at = time.monotonic()
    assert wait_for(lambda: upstream.cancelled, 1.5), "upstream stream was not cancelled"
    assert upstream.cancelled[0] - closed_at < 1.0
    # and the gateway is fine afterwards
    ok = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    assert ok.status_code == 200
