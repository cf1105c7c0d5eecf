"""How an OpenAI-compatible provider's stream ends, on real sockets with the official SDK as the client: some
servers never send `data: [DONE]` (older TGI releases, ik_llama.cpp) and end the body once every choice has
its finish_reason. That answer is complete; a stream that ends while a choice is still open is not."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.events import RequestRecord
from tests.conftest import ACME_KEY
from tests.support.gateway import RunningGateway, settled_limits, sha
from tests.support.raw_upstream import Conn, RawUpstream

CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-0001"}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o-mini}}], timeout_s: 5, retries: 0}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{key_sha}"}}]
    models: ["*"]
    budgets: [{{tokens: 1000000, per: day}}]
"""
USAGE = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}


def chunk(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
    payload: dict[str, object] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
    }
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def choice(index: int, delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


ONE = [chunk([choice(0, {"role": "assistant", "content": "Hel"})]), chunk([choice(0, {"content": "lo"}, "stop")])]
TWO = [
    chunk([choice(0, {"role": "assistant", "content": "Hel"}), choice(1, {"role": "assistant", "content": "Hi"})]),
    chunk([choice(1, {}, "stop")]),
    chunk([choice(0, {"content": "lo"}, "stop")]),
]
ENDINGS = {  # name: (the body, the text of each choice, whether the answer is complete)
    "n=1 and its usage": ([*ONE, chunk([], USAGE)], ["Hello"], True),
    "n=2 and its usage": ([*TWO, chunk([], USAGE)], ["Hello", "Hi"], True),
    "n=1, no usage": (ONE, ["Hello"], True),
    "n=2, one choice open": (TWO[:2], None, False),
}


def answering(body: bytes):  # type: ignore[no-untyped-def]
    async def handler(conn: Conn) -> None:
        while await conn.request() is not None:
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            await conn.write(head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")  # and no [DONE]

    return handler


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_stream_without_done_is_complete_when_every_choice_finished(ending: str) -> None:
    frames, texts, complete = ENDINGS[ending]
    upstream = RawUpstream(answering(b"".join(frames))).start()
    gateway = RunningGateway(CONFIG.format(url=upstream.url, key_sha=sha(ACME_KEY))).start()
    events: list[RequestRecord] = []
    emit = gateway.state.events.emit
    gateway.state.events.emit = lambda record: (events.append(record), emit(record))  # type: ignore[method-assign]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0)
    n = 2 if ending.startswith("n=2") else 1
    try:
        with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}], n=n, stream_options={"include_usage": True}
        ) as stream:
            if not complete:
                with pytest.raises(openai.APIError, match="ended its stream before the answer was complete"):
                    stream.until_done()
            else:
                final = stream.get_final_completion()
        [limits] = settled_limits(gateway, "acme")
    finally:
        gateway.stop()
        upstream.stop()
    [record] = events
    if not complete:
        assert (record.status, record.error_code) == ("failed", "upstream_error")
        return
    assert [c.message.content for c in final.choices] == texts
    assert record.status == "completed" and not record.usage_partial
    if frames[-1] == chunk([], USAGE):  # charged what the provider reported, not the worst case
        assert final.usage is not None and final.usage.total_tokens == USAGE["total_tokens"] == limits.spent
        assert record.cost_usd is not None
    else:  # no usage reported: the worst case, as for any stream that reports none
        assert final.usage is None and record.usage is None and record.cost_usd is None


ANTHROPIC_UNTIL_USAGE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":'
    b'"assistant","model":"claude-x","content":[],"usage":{"input_tokens":7,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
    b'"text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Hello"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":9}}\n\n'
)
UNTIL_USAGE = {  # provider: (its config, its stream to its last usage report, the line the client leaves after)
    "openai": ('type: openai, base_url: "{url}/v1"', b"".join([*ONE, chunk([], USAGE)]), b'"choices":[]'),
    "anthropic": ('type: anthropic, base_url: "{url}"', ANTHROPIC_UNTIL_USAGE, b'"finish_reason":"stop"'),
}


def holding(body: bytes):  # type: ignore[no-untyped-def]
    """Streams `body`, then holds the stream open (no [DONE], no message_stop) until the gateway hangs up."""

    async def handler(conn: Conn) -> None:
        await conn.request()
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        await conn.write(head + f"{len(body):x}\r\n".encode() + body + b"\r\n")
        await conn.reader.read()  # until the gateway closes the connection

    return handler


@pytest.mark.parametrize("provider", list(UNTIL_USAGE))
def test_a_client_that_leaves_after_the_last_usage_report_owes_what_it_says(provider: str) -> None:
    """The provider's usage is final once its last report came (OpenAI's usage chunk, Anthropic's message_delta):
    a client leaving before the stream's end marker is charged that, not the worst case."""
    config, body, last_line = UNTIL_USAGE[provider]
    upstream = RawUpstream(holding(body)).start()
    gateway = RunningGateway(
        CONFIG.replace('type: openai, base_url: "{url}/v1"', config).format(url=upstream.url, key_sha=sha(ACME_KEY))
    ).start()
    events: list[RequestRecord] = []
    emit = gateway.state.events.emit
    gateway.state.events.emit = lambda record: (events.append(record), emit(record))  # type: ignore[method-assign]
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 100}
    request["stream_options"] = {"include_usage": True}
    try:
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=request, headers={"authorization": f"Bearer {ACME_KEY}"}
        ) as response:
            for line in response.iter_lines():
                if last_line.decode() in line:
                    break  # and leaves, before the end of the stream
        [limits] = settled_limits(gateway, "acme")
    finally:
        gateway.stop()
        upstream.stop()
    [record] = events
    assert (record.status, record.http_status) == ("cancelled", 499)
    assert record.usage is not None and record.usage.total_tokens == 16 == limits.spent
    assert record.cost_usd is not None and not record.usage_partial
