"""RESP2, the Redis wire format, for the few commands the state store sends: errors, command encoding, scripts
and a reply parser.

    command  *<n>\\r\\n then each argument as a bulk string $<len>\\r\\n<bytes>\\r\\n
    replies  +simple  -error  :integer  $bulk ($-1 nil)  *array (*-1 nil), arrays nesting any of these

Replies come back as Python values: bytes (simple and bulk strings), int, None (nil), list; an error reply as a
`ReplyError` instance (raised by the client, kept as a value inside an array). `Reader` is hiredis's C parser
when the package is installed, else `PyReader`, the same contract in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None  # type: ignore[assignment]

Arg = bytes | str | int | float
_CRLF = b"\r\n"

INCOMPLETE: Final = object()  # what `gets()` returns until a whole reply is buffered


class RedisError(Exception):
    """Any failure of a Redis call other than the caller's own deadline (which raises TimeoutError)."""


class ReplyError(RedisError):
    """Redis answered the command with an error reply (`ERR ...`, `NOSCRIPT ...`, `WRONGTYPE ...`)."""

    @property
    def code(self) -> str:
        return str(self).partition(" ")[0]


class RedisConnectionError(RedisError):
    """No connection (refused, timed out, closed by the server or by us) or the handshake (AUTH, SELECT) failed."""


class ProtocolError(RedisConnectionError):
    """The server sent bytes that are not RESP2, or a reply nobody asked for: the connection is dropped."""


class Reader(Protocol):
    def feed(self, data: bytes, /) -> None: ...

    def gets(self) -> Any: ...


def _data(arg: Arg) -> bytes:
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    raise TypeError(f"a Redis argument must be bytes, str, int or float, not {type(arg).__name__}")


def bulk(arg: Arg) -> bytes:
    """One argument as a RESP bulk string: str in UTF-8, int in decimal, float as `repr` (it round-trips)."""
    data = _data(arg)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def py_encode(args: Sequence[Arg]) -> bytes:
    """A command (name first) as a RESP array of bulk strings, in Python."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _data(arg)
        parts += (b"$%d\r\n" % len(data), data, _CRLF)
    return b"".join(parts)


if _hiredis is not None:
    _pack = _hiredis.pack_command

    def encode(args: Sequence[Arg]) -> bytes:
        """A command (name first) as a RESP array of bulk strings (hiredis's `pack_command`, same bytes as
        `py_encode`, a few times faster)."""
        packed: bytes = _pack(tuple(args))  # type: ignore[arg-type]  # its stub says a 1-tuple
        return packed

else:  # pragma: no cover - hiredis is a dependency; this keeps the client working without its wheel
    encode = py_encode


class Script:
    """A Lua script run with EVALSHA. `load` is its SCRIPT LOAD command, for when Redis answers NOSCRIPT
    (a restarted server, SCRIPT FLUSH)."""

    __slots__ = ("_head", "load", "sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._head = bulk("EVALSHA") + bulk(self.sha)  # encoded once, for `py_evalsha`
        self.load = encode(("SCRIPT", "LOAD", source))

    def evalsha(self, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
        if _hiredis is None:  # pragma: no cover
            return self.py_evalsha(keys, args)
        return encode(("EVALSHA", self.sha, len(keys), *keys, *args))

    def py_evalsha(self, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
        """`evalsha` in Python: the constant `EVALSHA <sha>` part is encoded once."""
        parts = [b"*%d\r\n" % (3 + len(keys) + len(args)), self._head, bulk(len(keys))]
        for arg in (*keys, *args):
            data = _data(arg)
            parts += (b"$%d\r\n" % len(data), data, _CRLF)
        return b"".join(parts)


class _Incomplete(Exception):
    pass


class PyReader:
    """RESP2 replies from a byte stream, one whole reply per `gets()` (INCOMPLETE until it is all buffered).

    A reply cut across reads is parsed again from its start once more bytes arrive: cheap for the small
    replies this client gets. Bytes that are not RESP raise `ProtocolError`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0  # bytes before it were consumed by earlier replies

    def feed(self, data: bytes, /) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def gets(self) -> Any:
        try:
            reply, self._start = self._parse(self._start)
        except _Incomplete:
            return INCOMPLETE
        return reply

    def _parse(self, pos: int) -> tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(_CRLF, pos)
        if end < 0:
            raise _Incomplete
        kind, line, pos = buffer[pos], bytes(buffer[pos + 1 : end]), end + 2
        if kind == 0x2B:  # +
            return line, pos
        if kind == 0x2D:  # -
            return ReplyError(line.decode(errors="replace")), pos
        size = _integer(line)
        if kind == 0x3A:  # :
            return size, pos
        if kind == 0x24:  # $
            if size < 0:
                return None, pos
            if len(buffer) < pos + size + 2:
                raise _Incomplete
            if buffer[pos + size : pos + size + 2] != _CRLF:
                raise ProtocolError("bulk string not terminated by CRLF")
            return bytes(buffer[pos : pos + size]), pos + size + 2
        if kind == 0x2A:  # *
            if size < 0:
                return None, pos
            items = []
            for _ in range(size):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise ProtocolError(f"unexpected reply type byte {bytes([kind])!r}")


def _integer(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"malformed length or integer {line[:32]!r}") from None


def hiredis_reader() -> Reader:
    reader: Reader = _hiredis.Reader(protocolError=ProtocolError, replyError=ReplyError, notEnoughData=INCOMPLETE)
    return reader


def default_reader() -> Callable[[], Reader]:
    """hiredis's parser when installed (C, fastest), else `PyReader`."""
    return PyReader if _hiredis is None else hiredis_reader
