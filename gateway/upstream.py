"""The one shared upstream HTTP client, for every provider.

aiohttp's pooled client, not httpx's default pool: measured on this machine kind (see
../shared/bench/README.md) httpx's pool collapses under concurrency while aiohttp held ~2,100 req/s
at 128 connections. Local providers (the built-in mock) answer through `LocalResponse`, so the
pipeline treats them exactly like a remote one.

Timeouts: `connect_s` bounds the TCP/TLS connect, `first_byte_s` the wait for the response headers;
the caller bounds the whole exchange (`total_s`) around its use of the response.

A pooled connection the provider closes just as the next request goes out on it (its idle timeout crossing
the request) fails that request before any answer: aiohttp resends only idempotent methods, so the client
sends it again at once, on another connection, up to `STALE_RETRIES` times; neither a retry of the
failover's (with its backoff) nor a failure held against the provider's circuit. Only a reused connection, and
only a failure within `STALE_WITHIN_S` of sending (a close crossing the request comes back within a round
trip): a fresh connection dropped, or a pooled one dropped after the provider had the request a while, was
reached, and the provider may have worked on it (and billed it), so that is the failover's to decide
(`retries: 0` means no second send).

`on_connected` is called once a connection for the request is established, and so the request goes out:
from then on the provider may be at work (a timeout still connecting cost nothing).

A whole answer (not a stream) is read up to a limit, after decompression: a broken or hostile provider
(an endless body, a small gzip that inflates to gigabytes) cannot take the worker's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import aiohttp

from adapters.base import LocalAdapter, LocalAnswer, UpstreamRequest
from gateway import h1_client
from gateway.deadlines import DeadlineWheel
from gateway.runtime import DIRECT, Timeouts, Transport

POOL_LIMIT = 4096  # connections across all hosts; a provider is one host, so this is per provider
KEEPALIVE_S = 30  # under common load balancers' idle timeouts (AWS ALB: 60 s): we close first, mostly
DRAIN_S = 0.5
STALE_RETRIES = 2
STALE_WITHIN_S = 0.25
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a whole answer, decompressed (embeddings ask for more: see read)


class UpstreamConnectError(Exception):
    """The provider could not be reached (DNS, refused, reset before an answer)."""


class UpstreamCutOff(UpstreamConnectError):
    """The provider answered, and its answer stopped short (the connection lost, a body that does not decode)."""


class UpstreamDropped(UpstreamConnectError):
    """The provider was reached, and closed (or reset) the connection before any answer."""


class UpstreamInvalidHTTP(UpstreamConnectError):
    """The provider was reached, but what it sent back was not HTTP (a malformed status line, huge headers)."""


class UpstreamAnswerTooLarge(Exception):
    """The provider's whole answer was larger than the gateway reads."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"its answer was larger than {limit // (1024 * 1024)} MB")


class UpstreamResponse(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...
    async def read(self, limit: int = MAX_ANSWER_BYTES) -> bytes: ...
    async def read_piece(self) -> bytes: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


async def read_bounded(response: UpstreamResponse, limit: int) -> bytes:
    """The rest of `response`'s body, piece by piece (decompressed); UpstreamAnswerTooLarge past `limit` bytes."""
    pieces: list[bytes] = []
    size = 0
    while piece := await response.read_piece():
        size += len(piece)
        if size > limit:
            raise UpstreamAnswerTooLarge(limit)
        pieces.append(piece)
    return b"".join(pieces)


async def drain_briefly(response: UpstreamResponse) -> None:
    """The answer is complete but the body may not have reached its end yet (an SSE stream's last bytes): read
    the rest, briefly, so the connection can be reused; else drop it."""
    try:
        async with asyncio.timeout(DRAIN_S):
            while await response.read_piece():
                pass
    except (TimeoutError, UpstreamCutOff):
        response.close()


class _AiohttpResponse:
    __slots__ = ("_response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def read(self, limit: int = MAX_ANSWER_BYTES) -> bytes:
        """The whole body, decompressed; UpstreamAnswerTooLarge past `limit` bytes."""
        response = self._response
        try:
            length = response.content_length
            if length is not None and "content-encoding" not in response.headers:
                if length > limit:  # refused before reading any of it
                    raise UpstreamAnswerTooLarge(limit)
                return await response.read()  # ends at the declared length
        except aiohttp.ClientError as exc:
            raise UpstreamCutOff(type(exc).__name__) from exc
        return await read_bounded(self, limit)  # as decompressed, a network read's worth at a time

    async def read_piece(self) -> bytes:
        """What the next network read brought (decompressed); b"" once the body has ended. (Not an async
        generator: one a stream leaves unfinished costs the loop a thread-safe wake-up and an `aclose` task.)"""
        try:
            return await self._response.content.readany()
        except aiohttp.ClientError as exc:
            raise UpstreamCutOff(type(exc).__name__) from exc

    async def drain(self) -> None:
        await drain_briefly(self)

    def close(self) -> None:
        self._response.close()  # a no-op once the body was read to its end; else the connection is dropped


class _DirectResponse:
    """An answer through the gateway's own HTTP/1.1 client (gateway/h1_client.py), its errors told as ours."""

    __slots__ = ("_response", "status")

    def __init__(self, response: h1_client.H1Response) -> None:
        self._response = response
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self._response.header(name)

    async def read(self, limit: int = MAX_ANSWER_BYTES) -> bytes:
        """The whole body, decompressed; UpstreamAnswerTooLarge past `limit` bytes."""
        length = self._response.declared_length
        if length is not None and length > limit and self.header("content-encoding") is None:
            raise UpstreamAnswerTooLarge(limit)  # refused before reading any of it (the caller closes it)
        return await read_bounded(self, limit)

    async def read_piece(self) -> bytes:
        try:
            return await self._response.read_piece()
        except h1_client.H1Error as exc:
            raise UpstreamCutOff(str(exc)) from exc

    async def drain(self) -> None:
        await drain_briefly(self)

    def close(self) -> None:
        self._response.close()


class LocalResponse:
    __slots__ = ("_answer", "_frames_read", "status")

    def __init__(self, answer: LocalAnswer) -> None:
        self._answer = answer
        self._frames_read = 0
        self.status = answer.status

    def header(self, name: str) -> str | None:
        return None

    async def read(self, limit: int = MAX_ANSWER_BYTES) -> bytes:
        return self._answer.body

    async def read_piece(self) -> bytes:
        frames = self._answer.frames
        if self._frames_read:
            await asyncio.sleep(0)  # stream like a network would: one frame per turn of the loop
        while self._frames_read < len(frames):
            self._frames_read += 1
            if frame := frames[self._frames_read - 1]:
                return frame
        return b""

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


class _Exchange:
    """What the connector tells the request it is serving: whether the connection came from the pool, and that
    one is established (through `_EXCHANGE`, in the request's own task)."""

    __slots__ = ("on_connected", "reused")

    def __init__(self, on_connected: Callable[[], None] | None) -> None:
        self.on_connected = on_connected
        self.reused = False

    def connected(self, reused: bool) -> None:
        self.reused = reused
        if self.on_connected is not None:
            self.on_connected()


_EXCHANGE: ContextVar[_Exchange | None] = ContextVar("gateway_upstream_exchange", default=None)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's, telling the request's `_Exchange` where its connection came from (two of aiohttp's own steps,
    which its `connect` calls: the pool, else a new connection)."""

    async def _get(self, key: Any, traces: Any) -> Any:
        connection = await super()._get(key, traces)
        if connection is not None:
            exchange = _EXCHANGE.get()
            if exchange is not None:
                exchange.connected(reused=True)
        return connection

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 (aiohttp's)
        protocol = await super()._create_connection(req, traces, timeout)
        exchange = _EXCHANGE.get()
        if exchange is not None:
            exchange.connected(reused=False)
        return protocol


class UpstreamClient:
    def __init__(self, pool_limit: int = POOL_LIMIT, deadlines: DeadlineWheel | None = None) -> None:
        self._pool_limit = pool_limit
        self.deadlines = deadlines or DeadlineWheel()
        self._session: aiohttp.ClientSession | None = None  # for providers reached through a proxy
        self._direct = h1_client.H1Client(pool_limit, KEEPALIVE_S)
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._draining: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._session is None:
            connector = _Connector(limit=self._pool_limit, keepalive_timeout=KEEPALIVE_S, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )

    def drain_later(self, response: UpstreamResponse) -> None:
        """A complete answer whose body has not reached its end (an SSE stream's last bytes): read the rest off
        the request's path (its last frame, its settlement do not wait), so the connection goes back to the pool."""
        task = asyncio.get_running_loop().create_task(self._drain(response))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    @staticmethod
    async def _drain(response: UpstreamResponse) -> None:
        try:
            await response.drain()
        finally:
            response.close()  # (a no-op once drained)

    async def close(self) -> None:
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        await self._direct.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        request: UpstreamRequest,
        timeouts: Timeouts,
        local: LocalAdapter | None = None,
        transport: Transport = DIRECT,
        on_connected: Callable[[], None] | None = None,
    ) -> UpstreamResponse:
        if local is not None:
            if on_connected is not None:
                on_connected()
            return LocalResponse(local.answer(request))
        if transport.proxy is None:
            return await self._send_direct(request, timeouts, transport, on_connected)
        if self._session is None:
            await self.start()
        exchange = _Exchange(on_connected)
        token = _EXCHANGE.set(exchange)
        try:
            return await self._send(request, timeouts, transport, exchange)
        finally:
            # a connection made meanwhile keeps a copy of this context for its life: let go of the request's record
            exchange.on_connected = None
            _EXCHANGE.reset(token)

    async def _send_direct(
        self,
        request: UpstreamRequest,
        timeouts: Timeouts,
        transport: Transport,
        on_connected: Callable[[], None] | None,
    ) -> UpstreamResponse:
        loop = asyncio.get_running_loop()
        stale_retries = STALE_RETRIES
        fresh = False
        async with self.deadlines.timeout(timeouts.first_byte_s):
            while True:
                sent_at = loop.time()
                try:
                    response, _ = await self._direct.request(
                        request.method,
                        request.url,
                        request.headers,
                        request.body,
                        transport.tls,
                        timeouts.connect_s,
                        on_connected,
                        fresh,
                    )
                    return _DirectResponse(response)
                except h1_client.ConnectFailed as exc:
                    raise UpstreamConnectError(f"cannot connect ({exc})") from exc
                except h1_client.Dropped as exc:
                    stale = exc.reused and loop.time() - sent_at < STALE_WITHIN_S
                    if not (stale and stale_retries):
                        raise UpstreamDropped(str(exc)) from exc
                    stale_retries -= 1
                    fresh = True  # the pool's other idle connections may be as stale: a new one
                except h1_client.InvalidHTTP as exc:
                    raise UpstreamInvalidHTTP(str(exc)) from exc
                except h1_client.CutOff as exc:
                    raise UpstreamCutOff(str(exc)) from exc
                except ValueError as exc:  # a URL or header that cannot be sent
                    raise UpstreamConnectError(f"request failed ({exc})") from exc

    async def _send(
        self, request: UpstreamRequest, timeouts: Timeouts, transport: Transport, exchange: _Exchange
    ) -> UpstreamResponse:
        assert self._session is not None
        timeout = self._timeouts.get(timeouts.connect_s)
        if timeout is None:  # one per distinct connect timeout in the config, not one per request
            timeout = self._timeouts[timeouts.connect_s] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.connect_s
            )
        loop = asyncio.get_running_loop()
        stale_retries = STALE_RETRIES
        async with self.deadlines.timeout(timeouts.first_byte_s):
            while True:
                sent_at = loop.time()
                try:
                    response = await self._session.request(
                        request.method,
                        request.url,
                        data=request.body or None,  # no body (a GET): no content-type either
                        headers=request.headers,
                        timeout=timeout,
                        allow_redirects=False,  # a redirect would carry our credentials to another host
                        proxy=transport.proxy,
                        ssl=transport.tls if transport.tls is not None else True,
                    )
                    return _AiohttpResponse(response)
                except aiohttp.ClientConnectorError as exc:
                    raise UpstreamConnectError(f"cannot connect ({type(exc).__name__})") from exc
                except (aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError) as exc:
                    raise TimeoutError("connect timed out") from exc
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    stale = exchange.reused and loop.time() - sent_at < STALE_WITHIN_S
                    if not (stale and stale_retries):
                        raise UpstreamDropped(type(exc).__name__) from exc
                    stale_retries -= 1
                    exchange.reused = False
                except aiohttp.ClientHttpProxyError as exc:
                    raise UpstreamConnectError(f"the proxy refused the connection (HTTP {exc.status})") from exc
                except aiohttp.ClientResponseError as exc:
                    raise UpstreamInvalidHTTP(type(exc).__name__) from exc
                except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL or header aiohttp refuses
                    raise UpstreamConnectError(f"request failed ({type(exc).__name__})") from exc
