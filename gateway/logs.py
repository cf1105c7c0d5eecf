"""Logs: one JSON object per line (the default of `gateway serve`), or plain text for a terminal.

Every logger, uvicorn's included, goes through the same handler on stderr. A record's `fields` (a dict
passed as `extra={"fields": ...}`) become keys of its line; the request log (`gateway.requests`) is made of
nothing else. What may be logged is decided where the line is made: never a key, a hash of one, a
provider credential, or a prompt or answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import sys
import time
from typing import Any

import orjson

FORMATS = ("json", "text")
FORMAT_ENV = "GATEWAY_LOG_FORMAT"  # set by `gateway serve` for itself and its workers
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_LOGGER = "gateway.requests"
REQUEST_LOG_FLUSH_S = 0.05
_PLAIN = re.compile(r"[A-Za-z0-9_.:/@+-]+")  # a text line's value written as it is; anything else is quoted


def text_value(value: Any) -> str:
    """A value of a text line's key=value pairs. A string is the client's as often as not (the model it asked
    for): unless it is a plain word it is quoted and escaped as JSON writes it, so that no newline or space in
    it can make a line or a pair of its own."""
    if isinstance(value, str) and not _PLAIN.fullmatch(value):
        return orjson.dumps(value).decode()
    return str(value)


def json_line(at: dt.datetime, level: str, logger: str, pid: int, message: str, fields: Any = None) -> dict[str, Any]:
    """Every JSON log line's keys, the request log's included; `fields` (a dict) are added to them."""
    line: dict[str, Any] = {
        "ts": at.isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "pid": pid,
        "message": message,
    }
    if isinstance(fields, dict):
        line.update(fields)
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = dt.datetime.fromtimestamp(record.created, dt.UTC)
        pid = record.process or os.getpid()
        line = json_line(
            at, record.levelname.lower(), record.name, pid, record.getMessage(), getattr(record, "fields", None)
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the gateway and uvicorn, applied in the serving process and in
    every worker (uvicorn applies its `log_config` in each)."""
    formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "gateway", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's loggers carry handlers of their own by default: here they only propagate to the root
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class RequestLog:
    """The request log: one line per model request, in the same shape as every other line (`gateway.requests`,
    its `fields` as keys). It does not go through `logging`: a LogRecord, the handler's lock and one write per
    line cost about 7% of a request's CPU; here a line is one `orjson.dumps`, and the lines of the last
    `REQUEST_LOG_FLUSH_S` leave together in one write. `gateway.requests` below INFO turns it off, and so does
    a format of None: the default outside `gateway serve` (which sets FORMAT_ENV), as for an app embedded in
    tests, whose stderr is not a log."""

    def __init__(self, fmt: str | None = None) -> None:
        self.fmt = fmt if fmt is not None else os.environ.get(FORMAT_ENV)
        self._logger = logging.getLogger(REQUEST_LOGGER)
        self._pid = os.getpid()
        self._lines: list[bytes] = []
        self._flush: asyncio.TimerHandle | None = None
        # `json_line`'s own head, cut around the timestamp's milliseconds: '{"ts":"' | 1970-01-01T00:00:00 | .000 |
        # '+00:00","level":...,"message":"request"' (the closing brace left off)
        sample = orjson.dumps(
            json_line(dt.datetime.fromtimestamp(0, dt.UTC), "info", REQUEST_LOGGER, self._pid, "request")
        )
        seconds_at, millis_at = sample.index(b"1970-"), sample.index(b".000+")
        self._ts_key, self._after_millis = sample[:seconds_at], sample[millis_at + 4 : -1]
        self._second = -1
        self._stamp = b""  # the head up to the current second, made once a second

    def _json_line(self, fields: dict[str, Any]) -> bytes:
        """`json_line`'s line, with its head spliced in front of `orjson.dumps(fields)`: no dict or datetime per
        line (a third of the cost)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            at = dt.datetime.fromtimestamp(second, dt.UTC).replace(tzinfo=None).isoformat()
            self._second, self._stamp = second, self._ts_key + at.encode()
        head = b"%s.%03d%s" % (self._stamp, int((now - second) * 1000), self._after_millis)
        body = orjson.dumps(fields)
        return head + (b"," + body[1:] if len(body) > 2 else b"}")

    def write(self, fields: dict[str, Any]) -> None:
        if self.fmt is None or not self._logger.isEnabledFor(logging.INFO):
            return
        if self.fmt == "json":
            self._lines.append(self._json_line(fields))
        else:
            now = dt.datetime.now(dt.UTC)
            pairs = " ".join(f"{name}={text_value(value)}" for name, value in fields.items())
            stamp = f"{now.astimezone():%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d}"
            self._lines.append(f"{stamp} INFO {REQUEST_LOGGER}: request {pairs}".encode())
        if self._flush is None:
            try:
                self._flush = asyncio.get_running_loop().call_later(REQUEST_LOG_FLUSH_S, self.flush)
            except RuntimeError:  # no loop: write at once
                self.flush()

    def flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._lines:
            data = b"\n".join(self._lines) + b"\n"
            self._lines.clear()
            stream = sys.stderr
            binary = getattr(stream, "buffer", None)
            stream.flush()  # what `logging` wrote through the text layer goes first
            if binary is not None:
                binary.write(data)
                binary.flush()
            else:  # a text-only stream (a test's capture)
                stream.write(data.decode())
                stream.flush()
