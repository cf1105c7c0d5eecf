"""The journal's line format: a row is a JSON array in COLUMNS order. A spool left by an older process,
with rows written as JSON objects or with fewer columns, is still replayed, value for value, into a
real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from adapters.base import Usage
from gateway.events import RequestRecord
from gateway.events.journal import Segment
from gateway.events.pipeline import EventPipeline
from gateway.events.record import COLUMNS
from gateway.events.sqlite_store import SqliteStore


def full_record() -> RequestRecord:
    return RequestRecord(
        request_id="req-array",
        endpoint="chat",
        started_at=1_790_000_000.25,
        tenant="acme",
        key_id="acme-1",
        model_requested="gpt",
        model_alias="gpt",
        deployment="openai/gpt-4o-mini",
        provider="openai",
        upstream_model="gpt-4o-mini",
        streamed=True,
        status="completed",
        http_status=200,
        usage=Usage(prompt_tokens=11, completion_tokens=7, cached_tokens=3, reasoning_tokens=2),
        cost_usd=0.0125,
        price_version="p1",
        latency_s=0.5,
        first_token_s=0.125,
        fallback_path=["gpt", "claude"],
        attempts=["openai/gpt-4o-mini", "anthropic/claude"],
        injection_score=0.25,
        injection_signals=("override",),
        pii_counts={"email": 2},
    )


def replayed(spool: Path, lines: list[bytes], database: Path) -> dict[str, dict[str, object]]:
    """Leaves `lines` in an orphaned segment (its process gone), starts a pipeline on the spool and
    returns what reached the database, by request id."""
    spool.mkdir()
    (spool / f"journal-{time.time_ns():020d}-999999-000001.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    async def scenario() -> list[tuple[object, ...]]:
        pipeline = EventPipeline(SqliteStore(str(database)), spool, linger_s=0.01)
        await pipeline.start()
        for _ in range(200):
            if pipeline.healthy:
                break
            await asyncio.sleep(0.01)
        assert pipeline.healthy
        await pipeline.close()
        return await SqliteStore(str(database)).query(f"SELECT {', '.join(COLUMNS)} FROM usage_events")

    return {str(row[0]): dict(zip(COLUMNS, row, strict=True)) for row in asyncio.run(scenario())}


def test_a_row_is_a_json_array_in_column_order(tmp_path: Path) -> None:
    record = full_record()
    line = orjson.dumps(record.to_row())
    assert isinstance(orjson.loads(line), list) and len(orjson.loads(line)) == len(COLUMNS)
    (tmp_path / "segment.jsonl").write_bytes(line + b"\n")
    segment = Segment(tmp_path / "segment.jsonl", -1)
    assert list(segment.rows()) == [record.to_row()]


def test_rows_of_every_format_are_replayed_value_for_value(tmp_path: Path) -> None:
    current = orjson.dumps(full_record().to_row())
    as_object = orjson.dumps(dict(zip(COLUMNS, full_record().to_row(), strict=True)) | {"request_id": "req-object"})
    full = full_record()
    full.request_id, full.prompt_content, full.completion_content = "req-short", "hi", "hello"
    shorter = orjson.dumps(full.to_row()[:-2])  # written before the last two columns existed
    rows = replayed(tmp_path / "spool", [current, b"not json", as_object, b"42", shorter], tmp_path / "u.db")

    assert set(rows) == {"req-array", "req-object", "req-short"}  # the two lines that are not rows are skipped
    for request_id in ("req-array", "req-object"):
        row = rows[request_id]
        assert row["ts"] == 1_790_000_000.25
        assert (row["tenant"], row["key_id"], row["provider"], row["status"]) == (
            "acme",
            "acme-1",
            "openai",
            "completed",
        )
        assert orjson.loads(str(row["fallback_path"])) == ["gpt", "claude"]
        assert orjson.loads(str(row["attempts"])) == ["openai/gpt-4o-mini", "anthropic/claude"]
        assert orjson.loads(str(row["injection_signals"])) == ["override"]
        assert orjson.loads(str(row["pii_counts"])) == {"email": 2}
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["reasoning_tokens"]) == (
            11,
            7,
            3,
            2,
        )
        assert (row["cost_usd"], row["latency_ms"], row["ttft_ms"], row["streamed"]) == (0.0125, 500.0, 125.0, 1)
    short = rows["req-short"]
    assert (short["ts"], short["tenant"], short["status"], short["cost_usd"]) == (
        1_790_000_000.25,
        "acme",
        "completed",
        0.0125,
    )
    assert short["prompt_content"] is None and short["completion_content"] is None  # columns it predates are NULL
    assert rows["req-array"]["prompt_content"] is None  # (log_content is off for the full record)


def test_empty_json_columns_are_written_as_empty_json(tmp_path: Path) -> None:
    bare = RequestRecord(request_id="req-bare", endpoint="chat", started_at=1_790_000_002.0, status="failed")
    row = replayed(tmp_path / "spool", [orjson.dumps(bare.to_row())], tmp_path / "u.db")["req-bare"]
    assert (row["fallback_path"], row["attempts"], row["injection_signals"], row["pii_counts"]) == (
        "[]",
        "[]",
        "[]",
        "{}",
    )
    assert row["cost_usd"] is None and row["ttft_ms"] is None
