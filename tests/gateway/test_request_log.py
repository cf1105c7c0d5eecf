"""The request log's lines: the same keys, order and formats as every other JSON log line."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import re
from typing import Any

import pytest

from gateway.logs import REQUEST_LOG_FLUSH_S, REQUEST_LOGGER, RequestLog, json_line


class TextOnly(io.StringIO):
    """A stream without a binary layer, as pytest's capture is."""


@pytest.fixture(autouse=True)
def request_logger_on() -> Any:
    logger = logging.getLogger(REQUEST_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize(
    "fields",
    [
        {"request_id": "r-1", "tenant": None, "status": 200, "latency_ms": 1.234, "streamed": False},
        {"message_like": 'quote " and newline \n and é', "n": 0},
        {},
    ],
)
def test_a_json_line_matches_json_line_key_for_key(fields: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out = TextOnly()
    monkeypatch.setattr("sys.stderr", out)
    log = RequestLog("json")
    before = dt.datetime.now(dt.UTC)
    log.write(fields)
    log.flush()
    after = dt.datetime.now(dt.UTC)
    [line] = out.getvalue().splitlines()
    parsed = json.loads(line)
    expected = json_line(before, "info", REQUEST_LOGGER, parsed["pid"], "request", fields)
    assert list(parsed) == list(expected)
    assert {k: v for k, v in parsed.items() if k != "ts"} == {k: v for k, v in expected.items() if k != "ts"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", parsed["ts"])
    at = dt.datetime.fromisoformat(parsed["ts"])
    assert before - dt.timedelta(milliseconds=1) <= at <= after


def test_lines_of_one_flush_leave_in_order_through_the_binary_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    monkeypatch.setattr("sys.stderr", stream)
    log = RequestLog("json")

    async def three_then_flush() -> None:
        for n in range(3):
            log.write({"n": n})
        assert raw.getvalue() == b""  # held for REQUEST_LOG_FLUSH_S
        await asyncio.sleep(REQUEST_LOG_FLUSH_S * 2)

    asyncio.run(three_then_flush())
    assert [json.loads(line)["n"] for line in raw.getvalue().splitlines()] == [0, 1, 2]


def test_text_format_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    out = TextOnly()
    monkeypatch.setattr("sys.stderr", out)
    RequestLog("text").write({"request_id": "r-2", "status": 200})
    RequestLog(None).write({"request_id": "r-3"})
    logging.getLogger(REQUEST_LOGGER).setLevel(logging.WARNING)
    RequestLog("json").write({"request_id": "r-4"})
    [line] = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO gateway.requests: request request_id=r-2 status=200", line
    )


@pytest.mark.parametrize(
    ("model", "shown"),
    [
        pytest.param("gpt-4o-mini", "model=gpt-4o-mini", id="plain"),
        pytest.param("a/b:c@d+e_f.g", "model=a/b:c@d+e_f.g", id="url-ish characters"),
        pytest.param(
            "x\n2026-01-01 00:00:00,000 ERROR gateway: forged",
            'model="x\\n2026-01-01 00:00:00,000 ERROR gateway: forged"',
            id="a newline forging a line",
        ),
        pytest.param("x\rforged", 'model="x\\rforged"', id="a carriage return"),
        pytest.param("gpt tenant=admin", 'model="gpt tenant=admin"', id="a space forging a field"),
        pytest.param('say "hi"', 'model="say \\"hi\\""', id="quotes"),
        pytest.param("", 'model=""', id="empty"),
    ],
)
def test_a_text_line_cannot_be_forged_by_what_a_client_sent(
    model: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model name is the client's: in the text format a newline in it wrote a second line of its choosing
    (an ERROR of the gateway's, say), and a space a key=value pair of its choosing. A string value that is not a
    plain word is written quoted and escaped, as JSON writes it."""
    out = TextOnly()
    monkeypatch.setattr("sys.stderr", out)
    RequestLog("text").write({"request_id": "r-5", "tenant": "acme", "model": model, "status": 404, "cost_usd": None})
    [line] = out.getvalue().splitlines()
    assert line.endswith(f" request request_id=r-5 tenant=acme {shown} status=404 cost_usd=None")
