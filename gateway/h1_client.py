"""A lean HTTP/1.1 client for the providers the gateway reaches directly (no proxy): httptools' parser on an
asyncio protocol, and a keep-alive pool per origin.

Why not aiohttp's ClientSession for these: measured on this machine kind (bench/README.md, 2026-11-23), one
sequential POST and its answer on a pooled connection cost 246–348 µs of CPU through aiohttp and 100–160 µs
through a protocol like this one; at one connection a request's latency is its CPU. aiohttp still serves the
providers reached through a proxy (CONNECT tunnels, proxy credentials): see gateway/upstream.py.

    H1Client.request(...)          -> H1Response (status and headers in; the body as it arrives)
        _Pool (one per origin)     idle connections, newest first; at most `limit` open; idle ones expire
        _Connection (a Protocol)   one exchange at a time; parser callbacks feed the exchange's H1Response

What a demanding caller needs from it, and where it is:
- the body is buffered up to `HIGH_WATER` bytes, then the socket is paused until the reader takes some;
- a gzip or deflate body is inflated in pieces of at most `PIECE` bytes, as the reader asks (a small bomb
  never becomes a large buffer);
- the headers are bounded (`MAX_HEAD_BYTES`), a malformed answer is `InvalidHTTP`;
- a connection goes back to the pool once its answer has fully arrived and the provider keeps it alive; one
  whose answer was not read to its end is closed, never reused;
- a request cancelled while waiting (its client left, its deadline) closes its connection.

Errors (each mapped to the gateway's upstream errors in gateway/upstream.py):

    H1Error
     ├── ConnectFailed     no connection (refused, DNS, TLS)
     ├── Dropped           the provider closed the connection before any answer (`reused`: it came from the pool)
     ├── InvalidHTTP       what came back was not HTTP, or had headers past the bound
     └── CutOff            the answer stopped short (the connection lost mid-body, a body that does not inflate)
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import zlib
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, cast
from urllib.parse import quote, urlsplit

import aiohappyeyeballs
import httptools

HIGH_WATER = 1024 * 1024  # body bytes buffered before the socket is paused
PIECE = 256 * 1024  # at most this much inflated at a time
MAX_HEAD_BYTES = 64 * 1024  # status line and headers
HAPPY_EYEBALLS_S = 0.25  # as aiohttp's
SEPARATE_BODY_BYTES = 64 * 1024  # a request body this large is written after its head, not joined to it
# Requests for these are written by the client itself: a caller's copy would be a second, conflicting one.
OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
ACCEPT_ENCODING = b"gzip, deflate"
TARGET_SAFE = "/?%:@!$&'()*+,;=~-._"  # RFC 3986's pchar and "/" "?", and "%" for escapes already made


class H1Error(Exception):
    """A request through `H1Client` that got no usable answer."""


class ConnectFailed(H1Error):
    pass


class Dropped(H1Error):
    def __init__(self, what: str, reused: bool) -> None:
        super().__init__(what)
        self.reused = reused


class InvalidHTTP(H1Error):
    pass


class CutOff(H1Error):
    pass


class Target(NamedTuple):
    secure: bool
    host: str
    port: int
    path: bytes  # the request target: path and query
    host_header: bytes


@functools.lru_cache(maxsize=1024)
def parse_target(url: str) -> Target:
    """`url` split for a request (a provider's URLs are few and repeat: parsed once each). ValueError for a URL
    this client cannot send to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a URL with credentials")  # (refused at config load; never sent)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    default_port = (secure and port == 443) or (not secure and port == 80)
    # what is not allowed in a request target is percent-encoded, an escape already there kept (as yarl does)
    path = quote(parts.path or "/", safe=TARGET_SAFE) + (
        f"?{quote(parts.query, safe=TARGET_SAFE)}" if parts.query else ""
    )
    return Target(secure, host, port, path.encode("ascii"), (shown if default_port else f"{shown}:{port}").encode())


def checked_text(text: str) -> None:
    """ValueError for what would break a request's head: a line break or a NUL. (A character outside Latin-1
    fails where the head is encoded, as UnicodeEncodeError, also a ValueError.)"""
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError("a line break in a request line or header")


@functools.lru_cache(maxsize=4096)
def header_name(name: str) -> bytes | None:
    """The name as sent, or None for one the client writes itself; ValueError for one that is not a token."""
    if not name or any(c in name for c in " \t\r\n:\0"):
        raise ValueError("an invalid header name")
    return None if name.lower() in OWN_HEADERS else name.encode("latin-1")


def request_head(method: str, target: Target, headers: dict[str, str], body_length: int | None) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode("ascii"), target.path, target.host_header)]
    accept_encoding = accept = False
    for name, value in headers.items():
        sent = header_name(name)
        if sent is None:
            continue
        checked_text(value)
        lowered = name.lower()
        accept_encoding = accept_encoding or lowered == "accept-encoding"
        accept = accept or lowered == "accept"
        lines.append(b"%s: %s\r\n" % (sent, value.encode("latin-1")))
    if not accept:
        lines.append(b"accept: */*\r\n")
    if not accept_encoding:
        lines.append(b"accept-encoding: %s\r\n" % ACCEPT_ENCODING)
    if body_length is not None:
        lines.append(b"content-length: %d\r\n" % body_length)
    lines.append(b"\r\n")
    return b"".join(lines)


class _Inflater:
    """A gzip or deflate body inflated in bounded pieces."""

    __slots__ = ("_deflate", "_started", "_tail", "_z")

    def __init__(self, coding: str) -> None:
        self._deflate = coding == "deflate"
        self._z = zlib.decompressobj(zlib.MAX_WBITS if self._deflate else 16 + zlib.MAX_WBITS)
        self._tail = b""
        self._started = False

    @property
    def pending(self) -> bool:
        return bool(self._tail)

    def feed(self, data: bytes) -> bytes:
        try:
            if self._deflate and not self._started and data:
                self._started = True
                try:
                    return self._inflate(data)
                except zlib.error:  # "deflate" sent raw, without the zlib wrapper (servers do)
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._inflate(data)
        except zlib.error as exc:
            raise CutOff("the body does not inflate") from exc

    def more(self) -> bytes:
        return self.feed(b"")

    def _inflate(self, data: bytes) -> bytes:
        out = self._z.decompress(self._tail + data if self._tail else data, PIECE)
        self._tail = self._z.unconsumed_tail
        return out

    def finish(self) -> bytes:
        try:
            return self._z.flush(PIECE) if not self._tail else b""
        except zlib.error as exc:
            raise CutOff("the body does not inflate") from exc


class H1Response:
    """One answer: `status` and `header(name)` once its head has arrived; its body through `read_piece`."""

    __slots__ = (
        "_buffered",
        "_conn",
        "_error",
        "_inflater",
        "_pieces",
        "_waiter",
        "complete",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: H1Error | None = None
        self._inflater: _Inflater | None = None
        self.complete = False  # the whole body has arrived

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def declared_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    def _start_body(self) -> None:
        coding = self.headers.get("content-encoding", "").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            self._inflater = _Inflater("deflate" if coding == "deflate" else "gzip")
        elif coding not in ("", "identity"):
            raise InvalidHTTP(f"an answer in an encoding not asked for ({coding[:20]!r})")

    # the connection's side

    def _feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _end(self, error: H1Error | None) -> None:
        if error is None:
            self.complete = True
        elif not self.complete:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the reader's side

    async def _next_raw(self) -> bytes:
        """The next piece as it came off the wire; b"" once the body has ended."""
        while not self._pieces:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        piece = self._pieces.popleft()
        self._buffered -= len(piece)
        if self._buffered <= HIGH_WATER // 2 and not self.complete:  # (once complete, the connection is another's)
            self._conn.resume()
        return piece

    async def read_piece(self) -> bytes:
        """The next piece of the body (inflated); b"" once it has ended."""
        inflater = self._inflater
        if inflater is None:
            return await self._next_raw()
        while True:
            if inflater.pending:
                out = inflater.more()
            else:
                raw = await self._next_raw()
                if not raw:
                    return inflater.finish()
                out = inflater.feed(raw)
            if out:
                return out

    def close(self) -> None:
        """Done with this answer: a connection whose answer did not fully arrive is closed (it went back to the
        pool already when it did)."""
        self._pieces.clear()
        if not self.complete:
            self._conn.abandon()


class _Connection(asyncio.Protocol):
    """One connection to one origin; at most one exchange on it at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: H1Response | None = None
        self._head: asyncio.Future[None] | None = None
        self._head_bytes = 0
        self._got_bytes = False  # of the current exchange
        self._eof_ends_body = False
        self._keep_alive = False
        self._paused = False
        self.lost = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass of asyncio's)

    def exchange(self, head: bytes, body: bytes) -> tuple[H1Response, asyncio.Future[None]]:
        """Sends a request: its answer, and a future that resolves once the answer's head has arrived."""
        assert self.transport is not None
        response = self.response = H1Response(self)
        waiting = self._head = self.loop.create_future()
        self._head_bytes = 0
        self._got_bytes = False
        if len(body) < SEPARATE_BODY_BYTES:
            self.transport.write(head + body)
        else:  # a large body is not copied into one more buffer
            self.transport.write(head)
            self.transport.write(body)
        return response, waiting

    # asyncio's callbacks

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self._close()
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except H1Error as exc:  # raised by a callback of ours
            self._fail(exc)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidHTTP("an upgrade the gateway did not ask for"))
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ if isinstance(exc.__context__, H1Error) else InvalidHTTP("HttpParserError"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidHTTP(type(exc).__name__))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        response = self.response
        if response is None:
            return
        if self._head is not None and not self._head.done():
            what = type(exc).__name__ if exc is not None else "ServerDisconnectedError"
            self._fail(Dropped(what, reused=False) if not self._got_bytes else InvalidHTTP("an unfinished head"))
        elif not response.complete:
            if self._eof_ends_body and exc is None:
                self.on_message_complete()
            else:
                self._fail(CutOff("the connection was lost mid-answer"))

    def pause_writing(self) -> None:
        pass  # a request's body is written whole; the kernel and the transport's buffer hold it

    def resume_writing(self) -> None:
        pass

    # the parser's callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise InvalidHTTP("headers past the bound")
        assert self.response is not None
        key = name.decode("latin-1").lower()
        headers = self.response.headers
        if key not in headers:  # the first of repeated lines, as aiohttp's `headers.get`
            headers[key] = value.decode("latin-1")

    def on_status(self, status: bytes) -> None:
        self._head_bytes += len(status)

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            response.headers = {}
            return
        response.status = status
        self._keep_alive = self.parser.should_keep_alive()
        headers = response.headers
        self._eof_ends_body = (
            "content-length" not in headers and "transfer-encoding" not in headers and status not in (204, 304)
        )
        response._start_body()
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or response.status == 0:  # the end of an interim answer
            return
        self.response = None
        response._end(None)
        self.resume()
        if self._keep_alive and not self.lost:
            self.pool.release(self)
        else:
            self._close()

    # the reader's requests

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.lost:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.lost:
            self._paused = False
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The reader stopped before the answer's end: the rest would arrive on a connection nobody reads."""
        self.response = None
        self._close()

    def _fail(self, error: H1Error) -> None:
        response, head = self.response, self._head
        self.response = None
        self._close()
        if head is not None and not head.done():
            head.set_exception(error)
        elif response is not None:
            response._end(error)

    def _close(self) -> None:
        self.lost = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()  # no half-read answer lingers in the kernel's buffers


class _Pool:
    """The connections to one origin: idle ones newest first (the warmest), at most `limit` open."""

    def __init__(self, target: Target, tls: ssl.SSLContext | None, limit: int, keepalive_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port, self.tls = target.host, target.port, tls
        self.limit = limit
        self.keepalive_s = keepalive_s
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self._sweeping = False

    async def acquire(self, connect_s: float) -> tuple[_Connection, bool]:
        """A connection, and whether it came from the pool."""
        idle = self.idle
        while True:
            while idle:
                conn = idle.pop()
                if not conn.lost and self.loop.time() - conn.idle_since < self.keepalive_s:
                    return conn, True
                conn._close()
            if len(self.open) < self.limit:
                return await self._connect(connect_s), False
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)

    async def _connect(self, connect_s: float) -> _Connection:
        conn = _Connection(self)
        self.open.add(conn)
        try:
            async with asyncio.timeout(connect_s):
                addresses = await self.loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                # both address families raced, IPv6 first (RFC 8305): a host whose IPv6 route is a black hole
                # is still reached (uvloop's create_connection tries one address after another)
                sock = await aiohappyeyeballs.start_connection(addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_S)
                try:
                    await self.loop.create_connection(
                        lambda: conn, sock=sock, ssl=self.tls, server_hostname=self.host if self.tls else None
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:  # (an OSError too, but the caller's to tell as a timeout)
            self.forget(conn)
            raise
        except OSError as exc:  # refused, unreachable, DNS, and TLS (ssl's errors are OSErrors)
            self.forget(conn)
            raise ConnectFailed(type(exc).__name__) from exc
        except BaseException:
            self.forget(conn)
            raise
        return conn

    def release(self, conn: _Connection) -> None:
        conn.idle_since = self.loop.time()
        self.idle.append(conn)
        if not self._sweeping:
            self._sweeping = True
            self.loop.call_later(self.keepalive_s, self._sweep)
        self._wake_one()

    def forget(self, conn: _Connection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Closes the connections idle past `keepalive_s` (we close first, mostly: under common load balancers'
        idle timeouts)."""
        now = self.loop.time()
        keep = [conn for conn in self.idle if not conn.lost and now - conn.idle_since < self.keepalive_s]
        for conn in self.idle:
            if conn not in keep and not conn.lost:
                conn._close()
        self.idle[:] = keep
        if keep:
            self.loop.call_later(self.keepalive_s, self._sweep)
        else:
            self._sweeping = False

    def close(self) -> None:
        for conn in list(self.open):
            conn._close()
        self.idle.clear()


class H1Client:
    def __init__(self, limit: int, keepalive_s: float) -> None:
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._pools: dict[tuple[str, int, bool, int], _Pool] = {}
        self._default_tls: ssl.SSLContext | None = None

    def _pool(self, target: Target, tls: ssl.SSLContext | None) -> _Pool:
        key = (target.host, target.port, target.secure, id(tls))
        pool = self._pools.get(key)
        if pool is None:
            if target.secure and tls is None:
                if self._default_tls is None:
                    self._default_tls = ssl.create_default_context()
                tls = self._default_tls
            pool = self._pools[key] = _Pool(target, tls if target.secure else None, self._limit, self._keepalive_s)
        return pool

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        tls: ssl.SSLContext | None,
        connect_s: float,
        on_connected: Callable[[], None] | None = None,
        fresh: bool = False,
    ) -> tuple[H1Response, bool]:
        """Sends the request and waits for the answer's head: the answer, and whether its connection came from
        the pool. `on_connected` is called once there is a connection (so the request goes out: from then on the
        provider may be at work); `fresh`: never a pooled connection. Raises H1Error (TimeoutError while
        connecting, ValueError for a URL or header that cannot be sent)."""
        target = parse_target(url)
        head = request_head(method, target, headers, len(body) if body or method not in ("GET", "HEAD") else None)
        pool = self._pool(target, tls)
        if fresh:
            conn, reused = await pool._connect(connect_s), False
        else:
            conn, reused = await pool.acquire(connect_s)
        if on_connected is not None:
            on_connected()
        response, waiting = conn.exchange(head, body)
        try:
            await waiting
        except Dropped as exc:
            exc.reused = reused
            raise
        except BaseException:  # cancelled (the client left, a deadline) or a failure: nobody will read the rest
            conn.abandon()
            raise
        return response, reused

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
