"""A raw asyncio TCP server in a background thread, for upstream behaviours aiohttp's server cannot produce
(trickled bytes, closes racing a request, malformed or endless bodies)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.loop_thread import start_loop_thread

Handler = Callable[["Conn"], Awaitable[None]]


@dataclass
class Request:
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Conn:
    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: RawUpstream

    async def request(self) -> Request | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        req = Request(lines[0], headers, body)
        self.server.requests.append((self.index, req))
        return req

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


def completion(content: str = "hi", model: str = "gpt-4o-mini") -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    ).encode()


def ok(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


@dataclass
class RawUpstream:
    handler: Handler
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[tuple[int, Request]] = field(default_factory=list)
    connections: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        try:
            await self.handler(Conn(index, reader, writer, self))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def start(self, ssl: Any = None) -> RawUpstream:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._on_conn, self.host, self.port, ssl=ssl)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop, self._thread = start_loop_thread(listen)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shut() -> None:
            assert self._server is not None
            self._server.close()
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in handlers:  # (some sleep on purpose: a provider that never finishes)
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
