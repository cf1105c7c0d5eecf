"""A small pipelined Redis client on asyncio.Protocol (any event loop: asyncio's, uvloop), for the state store.

    call ─► RESP-encode ─► append a future to a connection's deque ─► write: at once on an idle connection,
            else buffered, and one write at the end of the loop iteration carries every command queued meanwhile
    data_received ─► parser (hiredis, else resp.PyReader) ─► each whole reply resolves the deque's head

Commands from many callers ride one connection at once (pipelining): Redis answers in order, so the deque's
head is always the future of the next reply. A fixed number of connections (2 by default) take calls in turn.

- A caller that times out or is cancelled leaves its future in the deque, cancelled: its reply still arrives
  and is dropped, so the connection never gets out of step.
- A lost connection fails every call pending on it (`RedisConnectionError`); the next call reconnects
  (lazily; concurrent callers share one attempt, bounded by `connect_timeout_s`, which goes on if they give up).
- A connection with calls pending and not one byte received for `stall_timeout_s` (a peer gone without a
  FIN, a black hole) is dropped the next time a call is sent, so a dead TCP path is not kept for minutes.
  Hence no blocking commands (BLPOP...) with a longer wait than that.
- URL: redis://[[user]:password@]host[:port][/db] (AUTH and SELECT on connect); rediss:// for TLS with the
  system's CAs (or `ssl_context`). The password is in no message, log or repr.
- The connections belong to the event loop that opened them; `close()` before that loop ends. A client used
  again on another loop opens new ones.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from policies.resp import (
    INCOMPLETE,
    Arg,
    ProtocolError,
    Reader,
    RedisConnectionError,
    ReplyError,
    Script,
    default_reader,
    encode,
)


class RedisURLError(ValueError):
    """A Redis URL this client cannot use. The message never repeats the URL (it may hold a password)."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        try:
            parts = urlsplit(url)
            port = parts.port or 6379
        except ValueError:
            raise RedisURLError("not a valid Redis URL (redis://[[user]:password@]host[:port][/db])") from None
        if parts.scheme not in ("redis", "rediss"):
            raise RedisURLError(f"the Redis URL's scheme must be redis:// or rediss://, not {parts.scheme}://")
        if not parts.hostname:
            raise RedisURLError("the Redis URL names no host")
        if parts.query or parts.fragment:
            raise RedisURLError("the Redis URL takes no query parameters (the database goes in the path: /<db>)")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise RedisURLError("the Redis URL's path must be a database number")
        return cls(
            host=parts.hostname,
            port=port,
            db=int(path or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:
        """For messages: no credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


class _Connection(asyncio.Protocol):
    """One connection: a deque of futures, one per command sent and not yet answered, in sending order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reader: Reader, address: RedisAddress) -> None:
        self.loop = loop
        self.reader = reader
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.closed = False
        self.heard = 0.0  # loop.time() of the last reply, or of the send that found nothing pending
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """Sends one encoded command; its future resolves with the reply. On an idle connection the bytes are
        written at once (one call at a time: no extra loop iteration); with calls in flight, by one callback
        after this loop iteration's work, with every other command queued meanwhile (one syscall for a burst)."""
        future = self.loop.create_future()
        if self.closed:  # lost while its caller was waking up
            future.set_exception(RedisConnectionError(f"connection to Redis at {self.address} lost"))
            return future
        if not self.pending:  # idle: nothing in flight, so nothing buffered either
            self.heard = self.loop.time()
            self.pending.append(future)
            if self.transport is not None:
                self.transport.write(payload)
            return future
        self.pending.append(future)
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(payload)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        try:
            while (reply := self.reader.gets()) is not INCOMPLETE:
                if not pending:
                    raise ProtocolError("Redis sent a reply nobody asked for")
                future = pending.popleft()
                if future.done():  # its caller gave up (timeout, cancellation): the reply is dropped
                    continue
                if type(reply) is ReplyError:
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except ProtocolError as exc:
            self.abort(exc)
            return
        self.heard = self.loop.time()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._fail_pending(f"connection to Redis at {self.address} lost{reason}")

    def stalled(self, now: float, after_s: float) -> bool:
        return bool(self.pending) and now - self.heard > after_s

    def abort(self, exc: BaseException) -> None:
        """Drops the connection now; calls pending on it fail."""
        self._fail_pending(f"connection to Redis at {self.address} dropped: {exc}")
        if self.transport is not None and not self.loop.is_closed():
            self.transport.abort()

    def close(self) -> None:
        self._fail_pending(f"connection to Redis at {self.address} closed")
        if self.transport is not None and not self.loop.is_closed():
            self.transport.close()

    def _fail_pending(self, message: str) -> None:
        self.closed = True
        pending = self.pending
        while pending:
            future = pending.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(message))


class RedisClient:
    """Pipelined calls over `connections` connections to one Redis (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        connections: int = 2,
        connect_timeout_s: float = 1.0,
        stall_timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        reader: Callable[[], Reader] | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.address = RedisAddress.from_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._ssl = (
            ssl_context if ssl_context is not None else ssl.create_default_context() if self.address.tls else None
        )
        self._reader = reader or default_reader()
        self._slots: list[_Connection | None] = [None] * connections
        self._connecting: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0

    def __repr__(self) -> str:
        return f"RedisClient({self.address}, connections={len(self._slots)})"

    # ── calls ─────────────────────────────────────────────────────────────────────────────────────────────

    async def execute(self, *args: Arg) -> Any:
        """One command; an error reply raises `ReplyError`, a connection failure `RedisConnectionError`."""
        return await self._send(encode(args))

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands sent back to back on one connection, their replies in order. The first error
        reply raises (the other replies are dropped)."""
        if not commands:
            return []
        return await self._send_many([encode(command) for command in commands])

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """EVALSHA; when Redis does not know the script (NOSCRIPT: restarted, SCRIPT FLUSH), SCRIPT LOAD and
        EVALSHA again, both sent at once on one connection (one more round trip)."""
        payload = script.evalsha(keys, args)
        try:
            return await self._send(payload)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return (await self._send_many([script.load, payload]))[1]

    async def close(self) -> None:
        """Closes the connections (calls pending on them fail) and stops connection attempts in progress."""
        for i, task in enumerate(self._connecting):
            self._connecting[i] = None
            if task is not None and not task.done() and not task.get_loop().is_closed():
                task.cancel()
        for i, connection in enumerate(self._slots):
            self._slots[i] = None
            if connection is not None:
                connection.close()

    # ── connections ───────────────────────────────────────────────────────────────────────────────────────

    def _send(self, payload: bytes) -> Awaitable[Any]:
        """The fast path (a live connection: no coroutine, no await before the write) or the connecting one."""
        i = self._next
        self._next = (i + 1) % len(self._slots)
        connection = self._slots[i]
        if connection is not None and not connection.closed:
            loop = asyncio.get_running_loop()
            if connection.loop is loop and (
                not connection.pending or loop.time() - connection.heard <= self.stall_timeout_s
            ):  # not stalled (`_Connection.stalled`, without reading the clock when idle)
                return connection.send(payload)
        return self._send_when_connected(i, payload)

    async def _send_when_connected(self, i: int, payload: bytes) -> Any:
        connection = await self._connection(i)
        return await connection.send(payload)

    async def _send_many(self, payloads: Sequence[bytes]) -> list[Any]:
        i = self._next
        self._next = (i + 1) % len(self._slots)
        connection = await self._connection(i)
        futures = [connection.send(payload) for payload in payloads]
        try:
            return [await future for future in futures]
        finally:
            _let_go(futures)

    async def _connection(self, i: int) -> _Connection:
        """Slot i's live connection; while it (re)connects, another slot's live one; else the attempt's result."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for j, connection in enumerate(self._slots):
            if connection is None or connection.closed:
                continue
            if connection.loop is not loop:  # opened on an earlier loop: abandoned with it
                self._slots[j] = None
            elif connection.stalled(now, self.stall_timeout_s):
                connection.abort(RedisConnectionError(f"no reply for {self.stall_timeout_s:g} s"))
        connection = self._slots[i]
        if connection is not None and not connection.closed:
            return connection
        task = self._connecting[i]
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._connecting[i] = loop.create_task(self._open(i, loop))
            task.add_done_callback(_retrieve)
        live = next((c for c in self._slots if c is not None and not c.closed), None)
        if live is not None:
            return live
        try:
            return await asyncio.shield(task)  # a caller giving up does not stop the attempt others may wait on
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):  # by close(), not our caller
                raise RedisConnectionError(
                    f"the client was closed while connecting to Redis at {self.address}"
                ) from None
            raise

    async def _open(self, i: int, loop: asyncio.AbstractEventLoop) -> _Connection:
        address = self.address
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self._reader(), address),
                    address.host,
                    address.port,
                    ssl=self._ssl,
                    server_hostname=address.host if self._ssl is not None else None,
                )
                try:
                    await self._handshake(connection)
                except BaseException:
                    connection.close()
                    raise
        except TimeoutError:
            raise RedisConnectionError(
                f"connecting to Redis at {address} timed out after {self.connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {address}: {exc}") from None
        self._slots[i] = connection
        return connection

    async def _handshake(self, connection: _Connection) -> None:
        """AUTH and SELECT, sent together."""
        address = self.address
        steps: list[tuple[str, asyncio.Future[Any]]] = []
        if address.password is not None:
            auth = ("AUTH", address.username, address.password) if address.username else ("AUTH", address.password)
            steps.append(("AUTH", connection.send(encode(auth))))
        if address.db:
            steps.append(("SELECT", connection.send(encode(("SELECT", address.db)))))
        try:
            for name, future in steps:
                try:
                    await future
                except ReplyError as exc:
                    reason = str(exc).replace(address.password, "***") if address.password else str(exc)
                    raise RedisConnectionError(f"Redis at {address} refused {name}: {reason}") from None
        finally:
            _let_go([future for _, future in steps])


def _let_go(futures: Sequence[asyncio.Future[Any]]) -> None:
    """After the first failure among calls sent together: the others' replies are dropped, and a failure already
    in is marked retrieved (asyncio would log it as never retrieved)."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


def _retrieve(task: asyncio.Task[_Connection]) -> None:
    """A connection attempt whose callers all gave up: its failure is not logged as never retrieved."""
    if not task.cancelled():
        task.exception()
