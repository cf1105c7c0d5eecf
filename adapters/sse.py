"""Incremental Server-Sent Events decoder (pure: bytes in, events out).

Upstream bytes arrive in arbitrary pieces: an event, a line, even a UTF-8 sequence may be split
across reads. The decoder keeps the unfinished tail and yields complete events only. Each read is
scanned once (the tail is not rescanned, nor re-measured), and a line, or an event of many lines, longer than
`max_line_bytes` is refused, so a misbehaving upstream cannot make the gateway spend quadratic time or
unbounded memory. Lines end in LF,
CRLF or a lone CR, as the SSE specification allows (a CRLF split between two reads is one line end).
"""

from __future__ import annotations

from adapters.base import SSEEvent

MAX_LINE_BYTES = 4 * 1024 * 1024


class SSELineTooLong(ValueError):
    pass


class SSEDecoder:
    __slots__ = ("_after_cr", "_data", "_data_bytes", "_event", "_max_line", "_pending", "_pending_bytes")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._pending: list[bytes] = []  # pieces of the unfinished last line
        self._pending_bytes = 0
        self._event: str | None = None
        self._data: list[str] = []
        self._data_bytes = 0  # of the event's data lines so far
        self._max_line = max_line_bytes
        self._after_cr = False  # the last read ended in CR: an LF starting the next one ends no second line

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._after_cr = False
        if b"\r" in chunk:  # rare: every major provider ends lines in LF
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()  # after the last line end: the start of an unfinished line, or b""
        events: list[SSEEvent] = []
        if lines and self._pending:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending, self._pending_bytes = [], 0
        for line in lines:  # (the two common lines handled inline: this runs for every chunk of every stream)
            if not line:
                if self._data or self._event is not None:
                    events.append(SSEEvent(self._event, "\n".join(self._data)))
                    self._event, self._data, self._data_bytes = None, [], 0
            elif line[:6] == b"data: ":
                self._add_data(line[6:])
            else:
                self._field(line)
        if tail:
            self._pending.append(tail)
            self._pending_bytes += len(tail)
            if self._pending_bytes > self._max_line:
                raise SSELineTooLong(f"upstream sent a stream line longer than {self._max_line} bytes")
        return events

    def flush(self) -> list[SSEEvent]:
        """The stream ended: a last event not followed by a blank line still counts."""
        if self._pending:
            line, self._pending, self._pending_bytes = b"".join(self._pending), [], 0
            self._field(line)
        if not self._data and self._event is None:
            return []
        event = SSEEvent(self._event, "\n".join(self._data))
        self._event, self._data, self._data_bytes = None, [], 0
        return [event]

    def _add_data(self, value: bytes) -> None:
        self._data.append(value.decode("utf-8", "replace"))
        self._data_bytes += len(value)
        if self._data_bytes > self._max_line:
            raise SSELineTooLong(f"upstream sent a stream event longer than {self._max_line} bytes")

    def _field(self, line: bytes) -> None:
        """A line that is not blank: a field of the event being read, or a comment."""
        if not line or line[:1] == b":":
            return  # comment / keep-alive
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._add_data(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


DONE_FRAME = b"data: [DONE]\n\n"
