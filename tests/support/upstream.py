"""A scriptable mock provider on a real socket: OpenAI, Azure and Anthropic endpoints.

Runs an aiohttp server on its own event loop in a background thread. Every request it receives is
recorded (path, headers, JSON body) so tests can assert what the gateway sent upstream. A test sets
`behaviour` to change what the next requests get (status, delay, slow streaming, a mid-stream error).

The models lists (`GET /v1/models` for OpenAI and Anthropic, `GET /openai/models?api-version=` for
Azure) check the credentials as each provider does: a key not in `behaviour.api_keys` gets a 401 whose
body quotes the key (as OpenAI's does), so tests can prove that the gateway never relays it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.loop_thread import start_loop_thread

OPENAI_TEXT = "Hello from the mock upstream."


@dataclass
class Behaviour:
    status: int = 200
    error_body: dict[str, Any] | None = None  # OpenAI: also the mid-stream error event's
    delay_s: float = 0.0
    chunk_interval_s: float = 0.0
    chunks: int = 3
    fail_mid_stream: bool = False  # OpenAI: an error event after the first chunk; cut connection for others
    tool_call: bool = False
    retry_after: str | None = None
    retry_after_ms: str | None = None  # OpenAI's and Azure's, in milliseconds
    redirect_to: str | None = None
    fail_every: int = 0  # when > 0, every fail_every-th request gets `status` and the others succeed
    linger_s: float = 0.0  # pause after the last event before ending the response body
    echo: bool = False  # answer with the last message's text (streamed in 3-character pieces)
    api_keys: tuple[str, ...] = ()  # the keys the models lists accept; empty: any non-empty key
    usage: dict[str, Any] | None = None  # chat: the usage to report (OpenAI's or Anthropic's fields), not the mock's
    odd_chunks: tuple[Any, ...] = ()  # OpenAI chat stream: payloads sent as they are, after the first chunk
    stream_body: bytes | None = None  # chat stream (OpenAI, Anthropic): the whole body, instead of a well-formed one
    json_body: bytes | None = None  # any JSON answer (chat, embeddings, messages): this body, as it is


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    peer: tuple[str, int] | None = None  # the gateway's side of the TCP connection
    at: float = 0.0  # time.monotonic() on arrival


@dataclass
class MockUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    behaviour: Behaviour = field(default_factory=Behaviour)
    received: list[Received] = field(default_factory=list)
    cancelled: list[float] = field(default_factory=list)  # monotonic times when a client hung up on us
    peers_ever: set[tuple[str, int]] = field(default_factory=set)  # every connection seen (never reset)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.received.clear()
        self.cancelled.clear()

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> MockUpstream:
        self._loop, self._thread = start_loop_thread(self._start)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._openai_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._embeddings)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_get("/v1/models", self._models)  # OpenAI's, and Anthropic's (told apart by header)
        app.router.add_get("/openai/models", self._azure_models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return
        runner = self._runner

        async def shutdown() -> None:
            if runner is not None:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # handlers ------------------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.body_exists else {}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.peers_ever.add(peer)
        self.received.append(
            Received(request.path, dict(request.query), dict(request.headers), body, peer, time.monotonic())
        )
        return body  # type: ignore[no-any-return]

    async def _prelude(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await self._record(request)
        b = self.behaviour
        try:
            if b.delay_s:
                await asyncio.sleep(b.delay_s)
        except asyncio.CancelledError:
            self.cancelled.append(time.monotonic())
            raise
        failing = b.status != 200 and (b.fail_every <= 0 or len(self.received) % b.fail_every == 0)
        if failing:
            headers = {"retry-after": b.retry_after} if b.retry_after else {}
            if b.retry_after_ms:
                headers["retry-after-ms"] = b.retry_after_ms
            if b.redirect_to:
                headers["location"] = b.redirect_to
            error = b.error_body or {
                "error": {"message": "mock failure", "type": "server_error", "param": None, "code": None}
            }
            return body, web.json_response(error, status=b.status, headers=headers)
        if b.json_body is not None:
            return body, web.Response(body=b.json_body, content_type="application/json")
        return body, None

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self._prelude(request)
        if failure is not None:
            return failure
        b = self.behaviour
        model = body.get("model", "gpt-4o-mini")
        usage = b.usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        tool_calls = None
        if b.tool_call and body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            tool_calls = [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}
            ]
        text = OPENAI_TEXT
        if b.echo:
            last = body["messages"][-1]["content"]
            text = last if isinstance(last, str) else " ".join(p.get("text", "") for p in last)
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if tool_calls else text,
                "refusal": None,
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            return web.json_response(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": "tool_calls" if tool_calls else "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if b.stream_body is not None:
            await response.write(b.stream_body)
            return response

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": "chatcmpl-up",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                payload["usage"] = None
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        try:
            await response.write(chunk({"role": "assistant", "content": ""}))
            for odd in b.odd_chunks:
                await response.write(b"data: " + json.dumps(odd).encode() + b"\n\n")
            if tool_calls:
                call = tool_calls[0]
                await response.write(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                )
                args = call["function"]["arguments"]
                for piece in (args[:5], args[5:]):
                    await response.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            elif b.echo:
                for start in range(0, len(text), 3):
                    await response.write(chunk({"content": text[start : start + 3]}))
            else:
                for i in range(b.chunks):
                    if b.chunk_interval_s:
                        await asyncio.sleep(b.chunk_interval_s)
                    await response.write(chunk({"content": f"part{i} "}))
                    if b.fail_mid_stream and i == 0:
                        error = b.error_body or {
                            "error": {
                                "message": "upstream overloaded mid-stream",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                        await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                        return response
            await response.write(chunk({}, "tool_calls" if tool_calls else "stop"))
            if include_usage:
                final = {
                    "id": "chatcmpl-up",
                    "object": "chat.completion.chunk",
                    "created": 1700000000,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                await response.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await asyncio.sleep(b.linger_s)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.append(time.monotonic())
            raise
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, failure = await self._prelude(request)
        if failure is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data: list[dict[str, Any]] = []
        for i, _ in enumerate(inputs):
            # base64 of three little-endian float32 values (0.5, -0.25, 1.0) when asked for base64
            vector: Any = "AAAAPwAAgL4AAIA/" if body.get("encoding_format") == "base64" else [0.5, -0.25, 1.0]
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": 5, "total_tokens": 5},
            }
        )

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self._prelude(request)
        if failure is not None:
            return failure
        b = self.behaviour
        model = "claude-3-5-haiku-20241022"
        usage = b.usage or {
            "input_tokens": 12,
            "output_tokens": 6,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_up",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "Hello from Claude."}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if b.stream_body is not None:
            await response.write(b.stream_body)
            return response

        async def event(name: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        try:
            await event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_up",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {**usage, "output_tokens": 1},
                    },
                },
            )
            await event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            await event("ping", {"type": "ping"})
            for i in range(b.chunks):
                if b.chunk_interval_s:
                    await asyncio.sleep(b.chunk_interval_s)
                await event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"part{i} "}},
                )
                if b.fail_mid_stream and i == 0:
                    await event(
                        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                    )
                    return response
            await event("content_block_stop", {"type": "content_block_stop", "index": 0})
            await event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
            await event("message_stop", {"type": "message_stop"})
            await asyncio.sleep(b.linger_s)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.append(time.monotonic())
            raise
        return response

    # models lists (what the gateway's provider ping asks) ---------------------------------------
    def _key_refused(self, key: str | None) -> bool:
        accepted = self.behaviour.api_keys
        return not key or (bool(accepted) and key not in accepted)

    async def _models(self, request: web.Request) -> web.Response:
        _, failure = await self._prelude(request)
        if failure is not None:
            return failure
        if "x-api-key" in request.headers:
            return self._anthropic_models(request)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or self._key_refused(key):
            error = {
                "message": f"Incorrect API key provided: {key}.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            return web.json_response({"error": error}, status=401)
        return web.json_response({"object": "list", "data": [_model("gpt-4o-mini", "openai")]})

    def _anthropic_models(self, request: web.Request) -> web.Response:
        def error(status: int, kind: str, message: str) -> web.Response:
            return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)

        if "anthropic-version" not in request.headers:
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        key = request.headers["x-api-key"]
        if self._key_refused(key):
            return error(401, "authentication_error", f"invalid x-api-key {key}")
        model = {"type": "model", "id": "claude-3-5-haiku-20241022", "display_name": "Claude Haiku 3.5"}
        return web.json_response({"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]})

    async def _azure_models(self, request: web.Request) -> web.Response:
        _, failure = await self._prelude(request)
        if failure is not None:
            return failure
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        key = request.headers.get("api-key")
        if self._key_refused(key):
            message = f"Access denied due to invalid subscription key {key}."
            return web.json_response({"error": {"code": "401", "message": message}}, status=401)
        return web.json_response({"object": "list", "data": [_model("gpt-4o-mini", "system")]})


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": owner}
