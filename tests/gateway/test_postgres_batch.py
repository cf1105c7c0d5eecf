"""A batch of usage events reaches Postgres as one JSON array that Postgres takes apart: every value arrives
as it would have through asyncpg's own encoding, `ts` to the very microsecond Python's `fromtimestamp`
gives (a replay of a row written before must hit the same primary key, else it is counted twice), and a
row whose time rounds into the next day lands in that day's partition."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from typing import Any

import orjson
import pytest

from gateway.events import RequestRecord, postgres_store
from gateway.events.postgres_store import CASTS, PostgresStore
from gateway.events.record import COLUMNS, JSON_COLUMNS, TS_POSITION, row_values
from gateway.events.store import Row, StoreRejected
from tests.gateway.test_journal_format import full_record
from tests.support.postgres_server import PostgresServer

UTC = dt.UTC
DAY = 20_413  # 2025-11-21, in days since the epoch


def written(server: PostgresServer, rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Writes `rows` in one batch into a fresh database; what Postgres holds, by request id."""
    store = PostgresStore(server.fresh_database(f"batch_{time.time_ns()}"))

    async def scenario() -> list[tuple[Any, ...]]:
        try:
            await store.migrate()
            await store.write(rows)
            await store.write(rows)  # a replay: nothing twice
            return await store.query(f"SELECT {', '.join(COLUMNS)} FROM usage_events")
        finally:
            await store.close()

    found = asyncio.run(scenario())
    assert len(found) == len(rows)
    return {str(row[0]): dict(zip(COLUMNS, row, strict=True)) for row in found}


def with_ts(request_id: str, ts: float) -> Row:
    row = list(full_record().to_row())
    row[0], row[TS_POSITION] = request_id, ts
    return tuple(row)


def test_every_column_arrives_as_asyncpg_would_have_written_it(postgres_server: PostgresServer) -> None:
    record = full_record()
    record.model_requested = "gpt\x00nul"  # Postgres text cannot hold NUL: U+FFFD instead
    record.error_code = "a \\u0000 that is text"  # a backslash and "u0000": kept as it is
    record.prompt_content = '[{"role": "user", "content": "naïve — 東京 \\n"}]'
    record.completion_content = "tab\tand newline\n"
    row = record.to_row()
    stored = written(postgres_server, [row])[record.request_id]

    expected = dict(zip(COLUMNS, row_values(row), strict=True))
    expected["ts"] = dt.datetime.fromtimestamp(record.started_at, UTC)
    expected["model_requested"] = "gpt\ufffdnul"
    for column in JSON_COLUMNS:  # asyncpg reads jsonb back as text, in Postgres's own layout: compare as JSON
        assert orjson.loads(stored.pop(column)) == orjson.loads(expected.pop(column)), column
    assert stored == expected


def test_a_row_with_no_usage_and_no_json_content_arrives_with_nulls_and_empty_json(
    postgres_server: PostgresServer,
) -> None:
    record = RequestRecord(request_id="req-bare", endpoint="chat", started_at=1_790_000_000.0)
    record.status, record.http_status = "failed", 400
    stored = written(postgres_server, [record.to_row()])["req-bare"]
    assert stored["cost_usd"] is None and stored["ttft_ms"] is None and stored["tenant"] is None
    assert (stored["prompt_tokens"], stored["streamed"], stored["injection_signals"], stored["pii_counts"]) == (
        0,
        False,
        "[]",
        "{}",
    )


def test_ts_is_the_microsecond_python_gives_ties_and_day_ends_included(postgres_server: PostgresServer) -> None:
    rng = random.Random(7)
    stamps = [DAY * 86_400 + rng.uniform(0, 86_400) for _ in range(3_000)]
    stamps += [
        DAY * 86_400 + 0.0000005,  # a tie: rounded half to even
        DAY * 86_400 + 0.0000015,
        DAY * 86_400 + 12.5,
        (DAY + 1) * 86_400 - 0.0000004,  # rounds into the next day (and its partition)
        (DAY + 1) * 86_400 - 0.0000006,
    ]
    rows = [with_ts(f"req-{i}", ts) for i, ts in enumerate(stamps)]
    stored = written(postgres_server, rows)
    wrong = [
        (ts, stored[f"req-{i}"]["ts"])
        for i, ts in enumerate(stamps)
        if stored[f"req-{i}"]["ts"] != dt.datetime.fromtimestamp(ts, UTC)
    ]
    assert wrong == []
    assert stored[f"req-{len(stamps) - 2}"]["ts"] == dt.datetime(2025, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize("ts", [(DAY + 1) * 86_400 - 0.0000004, (DAY + 3) * 86_400 + 5.0])
def test_a_batch_whose_rows_fall_on_another_day_gets_that_days_partition(
    postgres_server: PostgresServer, ts: float
) -> None:
    rows = [with_ts("req-early", DAY * 86_400 + 60.0), with_ts("req-late", ts)]
    stored = written(postgres_server, rows)
    assert stored["req-late"]["ts"] == dt.datetime.fromtimestamp(ts, UTC)


def test_every_column_that_is_not_text_has_its_cast(postgres_server: PostgresServer) -> None:
    """A column added to the schema as a number, a boolean or JSON needs its cast, else Postgres refuses the
    text for it and every batch fails (it would not be a refused row: the whole journal would wait)."""
    store = PostgresStore(postgres_server.fresh_database(f"casts_{time.time_ns()}"))

    async def types() -> dict[str, str]:
        try:
            await store.migrate()
            found = await store.query(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'usage_events'"
            )
            return {str(name): str(kind) for name, kind in found}
        finally:
            await store.close()

    not_text = {name for name, kind in asyncio.run(types()).items() if kind != "text"}
    assert not_text == set(CASTS)


def test_a_batch_too_large_for_one_statement_is_written_whole_or_not_at_all(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows with their content logged can make a batch's JSON larger than jsonb takes (256 MB): it goes as
    several statements in one transaction, and a row Postgres refuses still leaves none of them written."""
    monkeypatch.setattr(postgres_store, "MAX_STATEMENT_JSON", 4_000)
    rows = [with_ts(f"req-{i}", DAY * 86_400 + i) for i in range(40)]
    assert len(postgres_store.batch_json(rows)) >= 4
    assert len(written(postgres_server, rows)) == 40

    refused = list(rows[33])
    refused[0], refused[COLUMNS.index("prompt_tokens")] = "req-refused", 2**40  # out of an integer's range
    store = PostgresStore(postgres_server.fresh_database(f"batch_{time.time_ns()}"))

    async def scenario() -> list[tuple[Any, ...]]:
        try:
            await store.migrate()
            with pytest.raises(StoreRejected):
                await store.write([*rows, tuple(refused)])
            return await store.query("SELECT request_id FROM usage_events")
        finally:
            await store.close()

    assert asyncio.run(scenario()) == []
