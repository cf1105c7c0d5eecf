"""The gateway's own HTTP/1.1 client (gateway/h1_client.py) against a real socket server on loopback: what it sends,
how it keeps, reuses and drops connections, and how it reads every kind of body.

(The gateway's behaviour through it, end to end, is in test_upstream_hazards.py, test_egress.py and the provider
conformance suite; these are the client's own promises.)"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gateway import h1_client
from gateway.h1_client import H1Client, H1Response

Handler = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"q": 1}'


class Server:
    """A loopback server running `handler` for each connection; counts connections and keeps what it read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.closed_by_client = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(self, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat?x=1"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's head (kept) and body; None at the connection's end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_client += 1
            return None
        self.heads.append(head)
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        return await reader.readexactly(length)


@contextlib.asynccontextmanager
async def served(handler: Handler, limit: int = 10, keepalive_s: float = 30) -> AsyncIterator[tuple[Server, H1Client]]:
    """A server running `handler`, and a client of its own (closed first on the way out)."""
    async with Server(handler) as server:
        client = H1Client(limit=limit, keepalive_s=keepalive_s)
        try:
            yield server, client
        finally:
            await client.close()


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def keep_answering(reply: bytes) -> Handler:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            writer.write(reply)
            await writer.drain()

    return handler


async def read_all(response: H1Response) -> bytes:
    pieces = []
    while piece := await response.read_piece():
        pieces.append(piece)
    return b"".join(pieces)


async def post(client: H1Client, server: Server, **kwargs: Any) -> tuple[H1Response, bool]:
    return await client.request("POST", server.url, {"content-type": "application/json"}, BODY, None, 5.0, **kwargs)


Scenario = Callable[[], Coroutine[Any, Any, None]]
Run = Callable[[Scenario], None]


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario on the gateway's loop (uvloop), and on asyncio's own: they differ in when they call a
    protocol's callbacks."""

    def on_loop(scenario: Scenario) -> None:
        if request.param == "uvloop":
            uvloop.run(scenario())
        else:
            asyncio.run(scenario())

    return on_loop


def test_sequential_requests_share_one_kept_alive_connection_and_send_a_complete_head(run: Run) -> None:
    async def scenario() -> None:
        async with served(keep_answering(answer(b'{"ok": true}'))) as (server, client):
            reused = []
            for _ in range(3):
                response, was_reused = await post(client, server)
                assert response.status == 200 and await read_all(response) == b'{"ok": true}'
                reused.append(was_reused)
        assert reused == [False, True, True]
        assert server.connections == 1
        head = server.heads[0].decode()
        assert head.startswith("POST /v1/chat?x=1 HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{server.port}\r\n" in head
        assert "content-length: 8\r\n" in head and "accept-encoding: gzip, deflate\r\n" in head

    run(scenario)


def test_headers_the_client_writes_itself_are_not_sent_twice_and_line_breaks_are_refused(run: Run) -> None:
    async def scenario() -> None:
        async with served(keep_answering(answer(b"{}"))) as (server, client):
            headers = {"Host": "evil", "Content-Length": "1", "Accept-Encoding": "identity", "x-a": "1"}
            response, _ = await client.request("POST", server.url, headers, BODY, None, 5.0)
            await read_all(response)
            for bad in ({"x-b": "1\r\nx-injected: 1"}, {"x-b\r\nx-injected": "1"}, {"x b": "1"}, {"x": "\0"}):
                with pytest.raises(ValueError):
                    await client.request("POST", server.url, bad, BODY, None, 5.0)
        head = server.heads[0].decode().lower()
        assert head.count("host:") == 1 and "evil" not in head
        assert head.count("content-length:") == 1 and "content-length: 8" in head
        assert "accept-encoding: identity" in head and "gzip" not in head
        assert len(server.heads) == 1 and "injected" not in head  # nothing of the refused ones went out

    run(scenario)


@pytest.mark.parametrize(
    ("reply", "reusable"),
    [
        (answer(b"{}", "connection: close"), False),
        (answer(b"{}"), True),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}", False),
    ],
    ids=["connection-close", "keep-alive", "http-1.0"],
)
def test_a_connection_the_provider_does_not_keep_alive_is_not_reused(reply: bytes, reusable: bool, run: Run) -> None:
    async def scenario() -> None:
        async with served(keep_answering(reply)) as (server, client):
            for _ in range(2):
                response, _ = await post(client, server)
                assert await read_all(response) == b"{}"
        assert server.connections == (1 if reusable else 2)

    run(scenario)


def test_a_body_that_ends_with_the_connection_is_read_to_its_end(run: Run) -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
        for piece in (b'{"a":', b' "b"}'):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.close()

    async def scenario() -> None:
        async with served(handler) as (server, client):
            response, _ = await post(client, server)
            assert await read_all(response) == b'{"a": "b"}'

    run(scenario)


def test_a_chunked_stream_arrives_piece_by_piece_not_batched(run: Run) -> None:
    async def scenario() -> None:
        released = asyncio.Event()

        async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await released.wait()  # the second piece only after the client has the first
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            await writer.drain()

        async with served(handler) as (server, client):
            response, _ = await post(client, server)
            assert await asyncio.wait_for(response.read_piece(), 5) == b"first"
            released.set()
            assert await response.read_piece() == b"second"
            assert await response.read_piece() == b""

    run(scenario)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def deflated(data: bytes, raw: bool) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


PLAIN = b'{"text": "' + b"abc" * 200_000 + b'"}'


@pytest.mark.parametrize(
    ("coding", "wire"),
    [
        ("gzip", gzipped(PLAIN)),
        ("deflate", deflated(PLAIN, raw=False)),
        ("deflate", deflated(PLAIN, raw=True)),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
def test_a_compressed_body_is_inflated_in_bounded_pieces(coding: str, wire: bytes, run: Run) -> None:
    async def scenario() -> None:
        async with served(keep_answering(answer(wire, f"content-encoding: {coding}"))) as (
            server,
            client,
        ):
            response, _ = await post(client, server)
            pieces = []
            while piece := await response.read_piece():
                pieces.append(piece)
        assert b"".join(pieces) == PLAIN
        assert max(map(len, pieces)) <= h1_client.PIECE

    run(scenario)


def test_a_body_that_does_not_inflate_is_cut_off(run: Run) -> None:
    async def scenario() -> None:
        async with served(
            keep_answering(answer(b"not gzip at all", "content-encoding: gzip")), limit=10, keepalive_s=30
        ) as (server, client):
            response, _ = await post(client, server)
            with pytest.raises(h1_client.CutOff):
                await read_all(response)

    run(scenario)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 2x0 Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (h1_client.MAX_HEAD_BYTES + 1) + b"\r\ncontent-length: 0\r\n\r\n",
        answer(b"{}", "content-encoding: br"),
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ],
    ids=["bad-status", "huge-headers", "unasked-encoding", "upgrade"],
)
def test_what_is_not_an_answer_we_can_read_is_invalid_http(reply: bytes, run: Run) -> None:
    async def scenario() -> None:
        async with served(keep_answering(reply)) as (server, client):
            with pytest.raises(h1_client.InvalidHTTP):
                await post(client, server)

    run(scenario)


def test_an_interim_answer_is_skipped_for_the_real_one(run: Run) -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + answer(b"{}", "x-real: 1")

    async def scenario() -> None:
        async with served(keep_answering(reply)) as (server, client):
            for _ in range(2):  # and the connection is still usable after
                response, _ = await post(client, server)
                assert response.status == 200 and response.header("X-Real") == "1" and response.header("link") is None
                assert await read_all(response) == b"{}"
        assert server.connections == 1

    run(scenario)


def test_a_connection_lost_mid_body_cuts_the_answer_off_and_is_not_reused(run: Run) -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')
        await writer.drain()

    async def scenario() -> None:
        async with served(handler) as (server, client):
            response, _ = await post(client, server)
            with pytest.raises(h1_client.CutOff):
                await read_all(response)
            _, reused = await post(client, server)
            assert not reused

    run(scenario)


def test_a_provider_closing_before_any_answer_is_dropped_and_says_whether_the_connection_was_pooled(run: Run) -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b"{}"))
        await writer.drain()
        await server.read_request(reader)  # the second request on this connection: closed unanswered

    async def scenario() -> None:
        async with served(handler) as (server, client):
            response, _ = await post(client, server)
            await read_all(response)
            with pytest.raises(h1_client.Dropped) as dropped:
                await post(client, server)
            assert dropped.value.reused
            response, reused = await post(client, server)  # the dropped connection was not put back
            assert not reused and await read_all(response) == b"{}"

    run(scenario)


def test_a_request_cancelled_while_waiting_closes_its_connection(run: Run) -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await server.read_request(reader)  # never answers; sees the client's close

    async def scenario() -> None:
        async with served(handler) as (server, client):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(post(client, server), 0.2)
            for _ in range(100):
                if server.closed_by_client:
                    break
                await asyncio.sleep(0.01)
            assert server.closed_by_client == 1

    run(scenario)


def test_an_answer_left_unread_closes_its_connection_and_a_big_one_is_not_buffered_whole(run: Run) -> None:
    big = b"x" * (16 * 1024 * 1024)

    async def scenario() -> None:
        async with served(keep_answering(answer(big))) as (server, client):
            response, _ = await post(client, server)
            assert len(await response.read_piece()) > 0
            await asyncio.sleep(0.3)  # the server would send all 16 MB meanwhile, if the client read it
            buffered = sum(map(len, response._pieces))
            response.close()
            _, reused = await post(client, server)
        assert buffered <= 2 * h1_client.HIGH_WATER, buffered
        assert not reused and server.connections == 2

    run(scenario)


def test_the_pool_opens_no_more_than_its_limit_and_queues_the_rest(run: Run) -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            await asyncio.sleep(0.05)
            writer.write(answer(b"{}"))
            await writer.drain()

    async def scenario() -> None:
        async with served(handler, limit=2, keepalive_s=30) as (server, client):

            async def one() -> bytes:
                response, _ = await post(client, server)
                return await read_all(response)

            assert await asyncio.gather(*(one() for _ in range(6))) == [b"{}"] * 6
        assert server.connections == 2

    run(scenario)


def test_an_idle_connection_is_closed_after_the_keepalive_and_a_closed_one_never_reused(run: Run) -> None:
    async def scenario() -> None:
        async with served(keep_answering(answer(b"{}")), limit=10, keepalive_s=0.2) as (server, client):
            response, _ = await post(client, server)
            await read_all(response)
            await asyncio.sleep(0.6)
            assert server.closed_by_client == 1  # swept: we closed first
            _, reused = await post(client, server)
        assert not reused and server.connections == 2

    run(scenario)


def test_a_connection_the_provider_closed_while_idle_is_not_used(run: Run) -> None:
    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b"{}"))
        await writer.drain()  # then closes: an idle timeout on the provider's side

    async def scenario() -> None:
        async with served(handler) as (server, client):
            response, _ = await post(client, server)
            await read_all(response)
            await asyncio.sleep(0.1)
            response, reused = await post(client, server)
            assert not reused and await read_all(response) == b"{}"

    run(scenario)


@pytest.mark.parametrize(
    ("url", "target", "host"),
    [
        ("https://api.openai.com/v1/chat/completions", b"/v1/chat/completions", b"api.openai.com"),
        ("http://h:8080", b"/", b"h:8080"),
        ("https://h:443/a?b=c%2Fd", b"/a?b=c%2Fd", b"h"),
        ("http://[::1]:9000/x", b"/x", b"[::1]:9000"),
        ("http://h/a b/\u00e9?q=a b", b"/a%20b/%C3%A9?q=a%20b", b"h"),
        ("http://h/a\r\nb", b"/ab", b"h"),  # (urlsplit drops line breaks and tabs)
    ],
)
def test_a_url_is_split_into_origin_target_and_host_header(url: str, target: bytes, host: bytes) -> None:
    parsed = h1_client.parse_target(url)
    assert (parsed.path, parsed.host_header) == (target, host)


@pytest.mark.parametrize("url", ["ftp://h/x", "http:///x", "https://u:p@h/x"])
def test_a_url_the_client_cannot_send_to_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        h1_client.parse_target(url)
