"""Small raw-ASGI helpers shared by the endpoints: read a bounded body, send a complete answer."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import quote

from gateway.errors import GatewayError, MethodNotAllowed, PayloadTooLarge, render

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
REQUEST_ID_HEADER = b"x-request-id"


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


class ClientGone(Exception):
    """The client disconnected while we were reading its request."""


def path_after(scope: Scope, prefix: str) -> str:
    """The request path after `prefix` (which the router matched), still percent-encoded as the client sent
    it: split it on "/", then decode each piece once. `path` is already decoded (ASGI), so decoding it again
    would read `a%252Fb` as `a/b`, and an encoded slash in a name would split it."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        sent = raw.decode("latin-1")
        if sent.startswith(prefix):
            return sent[len(prefix) :]
    return quote(scope["path"][len(prefix) :], safe="/")


def served_as(method: str) -> str:
    """The method whose handler answers `method`: HEAD is served wherever GET is (it is GET without the body,
    which the server leaves out)."""
    return "GET" if method == "HEAD" else method


def require_method(scope: Scope, *allowed: str) -> None:
    """405 unless the request's method is one of `allowed`, or served as one of them."""
    method = scope["method"]
    if method not in allowed and served_as(method) not in allowed:
        raise MethodNotAllowed(method, scope["path"], allowed)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def header_values(scope: Scope, name: bytes) -> list[bytes]:
    """Every line of the header `name`, in the order sent."""
    return [bytes(value) for key, value in scope["headers"] if key == name]


async def read_body(receive: Receive, limit: int, declared_length: bytes | None) -> bytes:
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A whole answer, with its length (not chunked: the client knows the size up front)."""
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, err: GatewayError, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """`err` as the whole answer, with the request's id (a fresh one where no request record was made: an unknown
    path, a method the path does not serve), as OpenAI gives every answer its x-request-id."""
    status, headers, body = render(err)
    if not any(name == REQUEST_ID_HEADER for name, _ in extra_headers):
        headers.append((REQUEST_ID_HEADER, new_request_id().encode()))
    await send_bytes(send, status, body, [*headers, *extra_headers])
