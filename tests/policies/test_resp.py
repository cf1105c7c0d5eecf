"""The RESP wire format (encoding, both parsers) and the pipelined client, against the suite's real redis-server:
pipelining, scripts and NOSCRIPT, error replies, cancellation, restarts, stalls, AUTH/SELECT, TLS, on asyncio's
loop and on uvloop."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import ipaddress
import re
import ssl
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
import redis
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policies.redis_client import RedisAddress, RedisClient, RedisURLError
from policies.resp import (
    INCOMPLETE,
    PyReader,
    Reader,
    RedisConnectionError,
    RedisError,
    ReplyError,
    Script,
    encode,
    hiredis_reader,
    py_encode,
)
from tests.support.redis_server import BlackHole, RedisServer
from tests.support.scratch_server import free_port

T = TypeVar("T")
LOOPS = ["asyncio", "uvloop"]
READERS: dict[str, Callable[[], Reader]] = {"hiredis": hiredis_reader, "python": PyReader}


def run(loop: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    """The session's server, db 0 flushed."""
    if redis_server.process is None:  # a test stopped it and failed before bringing it back
        redis_server.start()
    redis_server.flush()
    return redis_server


def inspector(server: RedisServer, **options: Any) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5, **options)


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# ── wire format ───────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("pack", [encode, py_encode], ids=["hiredis", "python"])
def test_encoding(pack: Callable[[tuple[Any, ...]], bytes]) -> None:
    assert pack(("SET", "k", "v")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    args = ("EVALSHA", "tenant ü 🚀", b"\x00\r\n\xff", -5, 2**70, 0, 0.1 + 0.2, 1e300, "")
    assert pack(args) == (
        b"*9\r\n$7\r\nEVALSHA\r\n$14\r\ntenant \xc3\xbc \xf0\x9f\x9a\x80\r\n$4\r\n\x00\r\n\xff\r\n$2\r\n-5\r\n"
        b"$22\r\n1180591620717411303424\r\n$1\r\n0\r\n$19\r\n0.30000000000000004\r\n$6\r\n1e+300\r\n$0\r\n\r\n"
    )
    for bad in (True, None, [1]):
        with pytest.raises(TypeError):
            pack(("SET", bad))


def test_script_encoding() -> None:
    script = Script("return 1")
    assert script.sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    keys, args = ["gw:resv:ü"], ["1.5", 7, b"raw"]
    assert (
        script.evalsha(keys, args)
        == script.py_evalsha(keys, args)
        == py_encode(("EVALSHA", script.sha, 1, *keys, *args))
    )
    assert script.evalsha([], []) == py_encode(("EVALSHA", script.sha, 0))
    assert script.load == py_encode(("SCRIPT", "LOAD", "return 1"))


def normal(reply: Any) -> Any:
    """Replies with error values made comparable."""
    if isinstance(reply, list):
        return [normal(item) for item in reply]
    if isinstance(reply, ReplyError):
        return ("error", str(reply))
    return reply


WIRE: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", b"OK"),
    (b"-ERR unknown command 'X'\r\n", ("error", "ERR unknown command 'X'")),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"$6\r\na\r\nb\xff\x00\r\n", b"a\r\nb\xff\x00"),
    (b"*0\r\n", []),
    (b"*-1\r\n", None),
    (b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n$-1\r\n-WRONGTYPE x\r\n", [b"a", 1, [None, ("error", "WRONGTYPE x")]]),
]


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_parsers_agree_however_the_bytes_are_cut(reader: Callable[[], Reader], chunk: int) -> None:
    stream = b"".join(wire for wire, _ in WIRE)
    parser, replies = reader(), []
    for i in range(0, len(stream), chunk):
        parser.feed(stream[i : i + chunk])
        while (reply := parser.gets()) is not INCOMPLETE:
            replies.append(normal(reply))
    assert replies == [expected for _, expected in WIRE]
    assert parser.gets() is INCOMPLETE


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("garbage", [b"?what\r\n", b"$abc\r\n", b":12x\r\n", b"*x\r\n"])
def test_parsers_refuse_what_is_not_resp(reader: Callable[[], Reader], garbage: bytes) -> None:
    parser = reader()
    parser.feed(garbage)
    with pytest.raises(RedisConnectionError):  # ProtocolError: the connection cannot be trusted any more
        parser.gets()


def test_error_codes() -> None:
    assert ReplyError("NOSCRIPT No matching script.").code == "NOSCRIPT"
    assert issubclass(ReplyError, RedisError) and issubclass(RedisConnectionError, RedisError)


# ── URLs ──────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", RedisAddress("localhost")),
        ("redis://cache:7000/2", RedisAddress("cache", 7000, 2)),
        ("redis://:hunter2@cache/1", RedisAddress("cache", db=1, password="hunter2")),
        ("redis://alice:p%40ss%3Aw%2Fd@cache:1/0", RedisAddress("cache", 1, username="alice", password="p@ss:w/d")),
        ("rediss://cache:6380/0", RedisAddress("cache", 6380, tls=True)),
        ("redis://[::1]:6380/", RedisAddress("::1", 6380)),
    ],
)
def test_url(url: str, expected: RedisAddress) -> None:
    assert RedisAddress.from_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "unix:///tmp/redis.sock",
        "http://:s3cret-pw@cache/0",
        "redis://:s3cret-pw@cache/zero",
        "redis://:s3cret-pw@cache:port/0",
        "redis://:s3cret-pw@cache/0?ssl_cert_reqs=none",
        "redis://:s3cret-pw@/0",
    ],
)
def test_bad_urls_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(RedisURLError) as refused:
        RedisClient(url)
    assert "s3cret" not in str(refused.value) and "cache" not in str(refused.value)


def test_password_is_in_no_repr() -> None:
    client = RedisClient("redis://alice:s3cret-pw@cache:7000/3")
    assert "s3cret" not in repr(client) and "s3cret" not in repr(client.address)
    assert str(client.address) == "redis://cache:7000/3"


# ── the client against a real server ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_a_thousand_concurrent_calls_each_get_their_own_answer(
    server: RedisServer, loop: str, reader: Callable[[], Reader]
) -> None:
    async def main() -> None:
        with inspector(server) as inspect:  # (connections other tests left closing are not this test's)
            others = {client["id"] for client in inspect.client_list()}
        single = RedisClient(server.url, connections=1, reader=reader)
        pair = RedisClient(server.url, connections=2, reader=reader)
        try:
            # one connection: the replies come back in the order the calls were made
            assert await asyncio.gather(*(single.execute("INCR", "n") for _ in range(1000))) == list(range(1, 1001))
            echoes = await asyncio.gather(*(pair.execute("ECHO", f"e{i}-ü") for i in range(1000)))
            assert echoes == [f"e{i}-ü".encode() for i in range(1000)]
            mixed = await asyncio.gather(
                *(
                    pair.execute("SET", f"k{i}", i) if i % 2 else pair.execute("HMGET", "nothing", "a", "b")
                    for i in range(1000)
                )
            )
            assert mixed == [b"OK" if i % 2 else [None, None] for i in range(1000)]
            values = await pair.pipeline([("GET", f"k{i}") for i in range(1, 1000, 2)])
            assert values == [str(i).encode() for i in range(1, 1000, 2)]
            assert await pair.pipeline([]) == []
            with inspector(server) as inspect:
                ours = [client for client in inspect.client_list() if client["id"] not in others]
                assert len(ours) == 1 + 1 + 2  # the inspector, `single` and `pair`: no more
        finally:
            await single.close()
            await pair.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_error_replies_raise_and_the_connection_stays_in_step(server: RedisServer, loop: str) -> None:
    async def main() -> None:
        client = RedisClient(server.url, connections=1)
        try:
            await client.execute("SET", "text", "abc")
            with pytest.raises(ReplyError, match="not an integer") as wrong:
                await client.execute("INCR", "text")
            assert wrong.value.code == "ERR"
            with pytest.raises(ReplyError, match="unknown command"):
                await client.execute("NO-SUCH-COMMAND", "x")
            with pytest.raises(ReplyError, match="WRONGTYPE"):
                await client.pipeline([("GET", "text"), ("HGET", "text", "f"), ("GET", "text")])
            with pytest.raises(ReplyError, match="boom"):
                await client.run(Script("return redis.error_reply('boom')"), [], [])
            replies = await asyncio.gather(*(client.execute("INCR", "text") for _ in range(10)), return_exceptions=True)
            assert all(isinstance(r, ReplyError) for r in replies)
            assert await client.execute("GET", "text") == b"abc"  # its own answer, not a leftover
        finally:
            await client.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_noscript_falls_back_to_loading_the_script(server: RedisServer, loop: str) -> None:
    script = Script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")

    async def main() -> None:
        client = RedisClient(server.url)
        try:
            assert await client.run(script, ["a"], ["x"]) == [b"a", b"x", 1]  # never loaded: NOSCRIPT, then loaded
            with inspector(server) as inspect:
                assert inspect.script_exists(script.sha) == [True]
                inspect.script_flush()
            replies = await asyncio.gather(*(client.run(script, [f"k{i}"], [i]) for i in range(50)))
            assert replies == [[f"k{i}".encode(), str(i).encode(), 1] for i in range(50)]
            assert await client.run(script, ["a"], ["y"]) == [b"a", b"y", 2]
            with inspector(server) as inspect:
                assert inspect.script_load(script.source) == script.sha
        finally:
            await client.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_caller_that_gives_up_does_not_desync_the_connection(server: RedisServer, loop: str) -> None:
    async def main() -> None:
        client = RedisClient(server.url, connections=1)
        try:
            # BLPOP answers nil after 0.2 s; the callers are gone by then and the next call must not get that nil
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.execute("BLPOP", "nothing", "0.2"), 0.05)
            assert await client.execute("ECHO", "mine") == b"mine"
            blocker = asyncio.ensure_future(client.execute("BLPOP", "nothing", "0.2"))
            late = asyncio.ensure_future(client.run(Script("return 'late'"), [], []))  # NOSCRIPT, after the nil
            await asyncio.sleep(0.05)
            for call in (blocker, late):
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            assert await client.pipeline([("ECHO", "a"), ("ECHO", "b")]) == [b"a", b"b"]
            # cancelled mid-pipeline (a state() read cut short)
            cut = asyncio.ensure_future(client.pipeline([("BLPOP", "nothing", "0.1"), ("ECHO", "lost")]))
            await asyncio.sleep(0.02)
            cut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cut
            # many calls, every third cancelled before or after it was written, one error among them
            tasks = [asyncio.ensure_future(client.execute("ECHO", f"m{i}")) for i in range(300)]
            tasks.append(asyncio.ensure_future(client.execute("INCR", "text-that-is-not-set-yet", "extra")))
            for task in tasks[:300:6]:  # before it was sent
                task.cancel()
            await asyncio.sleep(0)
            for task in tasks[3:300:6]:  # sent, reply not in yet
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for i, result in enumerate(results[:-1]):
                assert isinstance(result, asyncio.CancelledError) if i % 3 == 0 else result == f"m{i}".encode()
            assert isinstance(results[-1], ReplyError)
            assert await client.execute("ECHO", "last") == b"last"
        finally:
            await client.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_restart_fails_the_pending_calls_and_the_next_call_reconnects(loop: str) -> None:
    server = RedisServer().start()

    async def main() -> None:
        client = RedisClient(server.url, connections=2, stall_timeout_s=60)
        try:
            assert await client.execute("SET", "kept", "1") == b"OK"
            blocked = [asyncio.ensure_future(client.execute("BLPOP", "never", "0")) for _ in range(10)]
            with inspector(server) as inspect:
                await until(lambda: inspect.info("clients")["blocked_clients"] >= 1)
            await asyncio.to_thread(server.restart)  # SAVE, SIGTERM, start again on the same port
            for call in blocked:
                with pytest.raises(RedisConnectionError, match="lost"):
                    await call
            assert await client.execute("GET", "kept") == b"1"  # reconnected
            await asyncio.to_thread(server.stop)
            started = time.monotonic()
            with pytest.raises(
                RedisConnectionError, match=re.escape(f"cannot connect to Redis at redis://127.0.0.1:{server.port}/0")
            ):
                await client.execute("PING")
            assert time.monotonic() - started < 0.5  # refused: no waiting
            await asyncio.to_thread(server.start)
            assert await asyncio.gather(*(client.execute("GET", "kept") for _ in range(10))) == [b"1"] * 10
        finally:
            await client.close()

    try:
        run(loop, main)
    finally:
        server.close()


def test_close_fails_pending_calls_and_a_later_call_reconnects(server: RedisServer) -> None:
    async def main() -> None:
        client = RedisClient(server.url, connections=1)
        pending = asyncio.ensure_future(client.execute("BLPOP", "never", "0"))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(RedisConnectionError, match="closed"):
            await pending
        assert await client.execute("PING") == b"PONG"
        await client.close()

    asyncio.run(main())


def test_a_client_moves_to_a_new_event_loop(server: RedisServer) -> None:
    client = RedisClient(server.url)

    async def ping() -> Any:
        return await client.execute("PING")

    async def ping_and_close() -> Any:
        try:
            return await client.execute("PING")
        finally:
            await client.close()

    assert asyncio.run(ping()) == b"PONG"  # not closed: its connections die with their loop
    with pytest.warns(ResourceWarning, match="unclosed"):  # hence: close() before the loop ends
        assert asyncio.run(ping_and_close()) == b"PONG"
        gc.collect()


def test_connecting_is_bounded_and_shared() -> None:
    """AUTH to a server that never answers: every caller fails within the connect timeout; one attempt per
    connection however many callers wait; the password is in no message."""
    with BlackHole() as hole:

        async def main() -> list[Any]:
            client = RedisClient(f"redis://:s3cret-pw@127.0.0.1:{hole.port}/0", connections=2, connect_timeout_s=0.2)
            started = time.monotonic()
            results = await asyncio.gather(*(client.execute("PING") for _ in range(20)), return_exceptions=True)
            assert time.monotonic() - started < 0.2 + 0.5
            await client.close()
            return results

        results = asyncio.run(main())
        eventually(lambda: hole.accepted == 2)
        time.sleep(0.1)
        assert hole.accepted == 2
    for result in results:
        assert isinstance(result, RedisConnectionError)
        assert "timed out after 0.2 s" in str(result) and "s3cret" not in str(result)


def test_close_while_connecting_fails_the_waiting_calls() -> None:
    with BlackHole() as hole:

        async def main() -> None:
            client = RedisClient(f"redis://:pw@127.0.0.1:{hole.port}/0", connect_timeout_s=5)
            calls = [asyncio.ensure_future(client.execute("PING")) for _ in range(4)]
            await asyncio.sleep(0.05)
            await client.close()
            for call in calls:
                with pytest.raises(RedisConnectionError, match="closed while connecting"):
                    await call

        asyncio.run(main())


def test_a_stalled_connection_is_replaced() -> None:
    """Calls pending and no byte back for `stall_timeout_s` (a dead peer that sent no FIN): the next call drops
    the connection (its pending calls fail) and opens another."""
    with BlackHole() as hole:

        async def main() -> None:
            client = RedisClient(hole.url, connections=1, stall_timeout_s=0.2)
            first = asyncio.ensure_future(client.execute("PING"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.execute("PING"), 0.05)
            await asyncio.sleep(0.25)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.execute("PING"), 0.05)
            with pytest.raises(RedisConnectionError, match=r"no reply for 0\.2 s"):
                await first
            await client.close()

        asyncio.run(main())
        eventually(lambda: hole.accepted == 2)


@dataclass
class FakeRedis:
    """A loopback server that answers every read with `answer`."""

    answer: bytes
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while await reader.read(65536):
            writer.write(self.answer)
        writer.close()


@pytest.mark.parametrize(
    ("answer", "first"), [(b"?garbage\r\n", RedisConnectionError), (b"+OK\r\n+unasked\r\n", b"OK")], ids=str
)
def test_bytes_that_are_not_replies_drop_the_connection(answer: bytes, first: Any) -> None:
    async def main() -> None:
        fake = FakeRedis(answer)
        listener = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        client = RedisClient(f"redis://127.0.0.1:{port}/0", connections=1)
        try:
            if first is RedisConnectionError:
                with pytest.raises(RedisConnectionError, match="dropped"):
                    await client.execute("PING")
            else:
                assert await client.execute("PING") == first
            await asyncio.sleep(0.05)
            await asyncio.gather(client.execute("PING"), return_exceptions=True)
            assert fake.connections == 2  # the untrustworthy connection was not used again
        finally:
            await client.close()
            listener.close()

    asyncio.run(main())


# ── AUTH, SELECT, TLS ─────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    """A server with a default-user password and an ACL user whose password needs %-escaping in a URL."""
    with RedisServer() as server:
        with inspector(server) as admin:
            admin.acl_setuser("alice", enabled=True, passwords=["+p@ss:w/ü"], keys=["*"], commands=["+@all"])
            admin.config_set("requirepass", "hunter2")
        yield server


@pytest.mark.parametrize("loop", LOOPS)
def test_auth_and_select(locked_server: RedisServer, loop: str, caplog: pytest.LogCaptureFixture) -> None:
    base = f"127.0.0.1:{locked_server.port}"

    async def main() -> None:
        default = RedisClient(f"redis://:hunter2@{base}/3")
        alice = RedisClient(f"redis://alice:{quote('p@ss:w/ü', safe='')}@{base}/5")
        try:
            assert await default.execute("SET", "where", "db3") == b"OK"
            assert await alice.execute("ACL", "WHOAMI") == b"alice"
            assert b" db=5 " in await alice.execute("CLIENT", "INFO")
            await asyncio.gather(*(alice.execute("INCR", f"n-{loop}") for _ in range(20)))  # every connection in 5
        finally:
            await default.close()
            await alice.close()
        for url, refused in [
            (f"redis://alice:not-the-pw-123@{base}/3", "refused AUTH: WRONGPASS"),
            (f"redis://:hunter2@{base}/99", "refused SELECT: ERR DB index is out of range"),
        ]:
            client = RedisClient(url)
            with pytest.raises(RedisConnectionError, match=refused) as failed:
                await client.execute("PING")
            assert "not-the-pw" not in str(failed.value) and "hunter2" not in str(failed.value)
            await client.close()
        anonymous = RedisClient(f"redis://{base}/0")
        with pytest.raises(ReplyError, match="NOAUTH"):
            await anonymous.execute("PING")
        await anonymous.close()

    run(loop, main)
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]  # SELECT's NOAUTH was retrieved
    with inspector(locked_server, password="hunter2", db=3) as db3:
        assert db3.get("where") == b"db3"
    with inspector(locked_server, password="hunter2", db=5) as db5:
        assert db5.get(f"n-{loop}") == b"20"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "redis.crt", directory / "redis.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class TlsRedisServer(RedisServer):
    """The plain port (for the readiness probe) and a TLS port with a self-signed certificate."""

    tls_port: int = 0

    def _prepare(self) -> list[str]:
        cert, key = self_signed(self.directory)
        tls = ["--tls-port", str(self.tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        return [*super()._prepare(), *tls, "--tls-auth-clients", "no"]


def test_rediss_verifies_the_server_certificate() -> None:
    with TlsRedisServer(tls_port=free_port()) as server:
        url = f"rediss://127.0.0.1:{server.tls_port}/2"

        async def main() -> None:
            trusting = RedisClient(
                url, ssl_context=ssl.create_default_context(cafile=str(server.directory / "redis.crt"))
            )
            assert sorted(await asyncio.gather(*(trusting.execute("INCR", "n") for _ in range(5)))) == [1, 2, 3, 4, 5]
            await trusting.close()
            default = RedisClient(url)  # the system's CAs do not know this certificate
            with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await default.execute("PING")
            await default.close()

        asyncio.run(main())
