"""A row the database refuses for what it holds does not hold back the events after it.

Postgres and SQLite (real servers, real files) are each given good rows and rows they refuse, from the
live queue and from a dead process's journal: the good rows are all written, the refused ones are set
aside with the reason in the spool's rejected.jsonl, counted, and the journal is released. Before,
Postgres retried such a batch forever (every later event stayed on disk) and SQLite's INSERT OR IGNORE
dropped a NOT NULL violation without a word. A NUL a client sent (in a model name) reaches Postgres as
U+FFFD, end to end through the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.base import Usage
from gateway.events import RequestRecord
from gateway.events.journal import REJECTED_FILE, SEGMENT_GLOB
from gateway.events.pipeline import EventPipeline
from gateway.events.postgres_store import PostgresStore
from gateway.events.record import COLUMNS
from gateway.events.sqlite_store import SqliteStore
from gateway.events.store import EventStore, Row, StoreRejected, StoreUnreachable
from tests.gateway.test_metrics import scrape
from tests.gateway.test_usage_events import pg_rows, post, postgres_gateway, wait_for
from tests.support.postgres_server import PostgresServer
from tests.support.upstream import Behaviour, MockUpstream


def record(request_id: str, **fields: Any) -> RequestRecord:
    made = RequestRecord(request_id=request_id, endpoint="chat", started_at=1_790_000_000.0 + len(request_id))
    made.tenant, made.status, made.http_status = "acme", "completed", 200
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def line(made: RequestRecord, **columns: Any) -> bytes:
    row = dict(zip(COLUMNS, made.to_row(), strict=True)) | columns
    return orjson.dumps([row[c] for c in COLUMNS])


@dataclass
class Case:
    store: str
    refused: dict[str, RequestRecord | bytes]  # live records, or journal lines a dead process left


def null_status(request_id: str) -> bytes:
    return line(record(request_id), status=None)  # a damaged line: NOT NULL in both schemas


COMMON = {
    "live-null-endpoint": record("live-null-endpoint", endpoint=None),
    "disk-null-status": null_status("disk-null-status"),
}
CASES = [
    Case("sqlite", dict(COMMON)),
    Case(
        "postgres",
        COMMON
        | {
            "live-tokens-out-of-range": record("live-tokens-out-of-range", usage=Usage(prompt_tokens=3_000_000_000)),
            "disk-not-a-time": line(record("disk-not-a-time"), ts="yesterday"),
            "disk-text-for-a-number": line(record("disk-text-for-a-number"), http_status="two hundred"),
        },
    ),
]


def open_case_store(kind: str, tmp_path: Path, postgres: Callable[[], PostgresServer]) -> EventStore:
    if kind == "sqlite":
        return SqliteStore(str(tmp_path / "events.sqlite"))
    return PostgresStore(postgres().fresh_database(f"refused_{time.time_ns()}"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.store)
def test_refused_rows_are_set_aside_and_every_other_row_is_written(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    disk_good = [record(f"disk-good-{i:03d}") for i in range(40)]
    disk_lines = [orjson.dumps(r.to_row()) for r in disk_good[:20]]
    disk_lines += [v for v in case.refused.values() if isinstance(v, bytes)]
    disk_lines += [orjson.dumps(r.to_row()) for r in disk_good[20:]]
    (spool / f"journal-{time.time_ns():020d}-999999-000001.jsonl").write_bytes(b"\n".join(disk_lines) + b"\n")
    live_good = [record(f"live-good-{i:03d}") for i in range(60)]
    live_refused = [v for v in case.refused.values() if isinstance(v, RequestRecord)]
    store = open_case_store(case.store, tmp_path, lambda: request.getfixturevalue("postgres_server"))

    async def scenario() -> tuple[set[str], EventPipeline]:
        pipeline = EventPipeline(store, spool, linger_s=0.05)
        await pipeline.start()
        for i, made in enumerate(live_good):
            pipeline.emit(made)
            if i == 30:
                for bad in live_refused:  # in the middle of a batch
                    pipeline.emit(bad)
        await settled(pipeline)
        pipeline.emit(record("after-the-refusals"))  # the writer goes on
        await pipeline.close()
        reopened = open_again(store)
        try:
            written = {str(r[0]) for r in await reopened.query("SELECT request_id FROM usage_events")}
        finally:
            await reopened.close()
        return written, pipeline

    written, pipeline = asyncio.run(scenario())

    good = {r.request_id for r in disk_good + live_good} | {"after-the-refusals"}
    assert written == good
    set_aside = [orjson.loads(x) for x in (spool / REJECTED_FILE).read_bytes().splitlines()]
    assert sorted(entry["row"][0] for entry in set_aside) == sorted(case.refused)
    for entry in set_aside:
        assert entry["reason"].startswith(f"{case.store}: ") and len(entry["row"]) == len(COLUMNS)
    assert pipeline.stats.rejected == len(case.refused)
    assert pipeline.stats.written == len(good)
    assert pipeline.stats.write_failures == 0  # refused is not unreachable: no retry loop
    assert not list(spool.glob(SEGMENT_GLOB))  # every journaled row is in the store or set aside


def open_again(store: EventStore) -> EventStore:
    if isinstance(store, PostgresStore):
        return PostgresStore(store._dsn)
    assert isinstance(store, SqliteStore)
    return SqliteStore(str(store.path))


def test_through_the_gateway_a_nul_is_written_and_a_refused_row_is_set_aside_and_counted(
    upstream: MockUpstream, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    gateway, dsn = postgres_gateway(upstream, postgres_server, spool, "events_refused")
    try:
        hello = [{"role": "user", "content": "hi"}]
        unknown = post(gateway, {"model": "gpt\u0000x", "messages": hello})
        upstream.behaviour = Behaviour(usage={"prompt_tokens": 3_000_000_000, "completion_tokens": 1})
        overflowing = post(gateway, {"model": "gpt", "messages": hello})  # more than Postgres' integer holds
        upstream.behaviour = Behaviour()
        answered = post(gateway, {"model": "gpt", "messages": hello})
        rows = wait_for(lambda: pg_rows(dsn), 2, timeout_s=15)
        metrics = scrape(gateway)
    finally:
        gateway.stop()
    assert (unknown.status_code, overflowing.status_code, answered.status_code) == (404, 200, 200)
    by_id = {row["request_id"]: row for row in rows}
    assert set(by_id) == {unknown.headers["x-request-id"], answered.headers["x-request-id"]}
    assert by_id[unknown.headers["x-request-id"]]["model_requested"] == "gpt\ufffdx"
    assert by_id[answered.headers["x-request-id"]]["model_requested"] == "gpt"
    [entry] = [orjson.loads(x) for x in (spool / REJECTED_FILE).read_bytes().splitlines()]
    assert entry["row"][0] == overflowing.headers["x-request-id"]
    assert entry["row"][COLUMNS.index("prompt_tokens")] == 3_000_000_000
    assert metrics("gateway_events_rejected_total", store="postgres") == 1
    assert metrics("gateway_event_write_failures_total", store="postgres") == 0


class OutageAfterRefusal(SqliteStore):
    """Real SQLite that goes away once, in the middle of a replay, right after refusing a row alone."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.refusals = 0
        self.outages = 0

    async def write(self, rows: Sequence[Row]) -> None:
        if self.refusals and not self.outages:
            self.outages += 1
            raise StoreUnreachable("sqlite: gone for a moment")
        try:
            await super().write(rows)
        except StoreRejected:
            self.refusals += len(rows) == 1  # the row at fault found, and about to be set aside
            raise


def test_a_replay_retried_after_an_outage_sets_each_refused_row_aside_once(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    good = [record(f"disk-good-{i:03d}") for i in range(30)]
    lines = [orjson.dumps(r.to_row()) for r in good[:10]] + [null_status("disk-null-status")]
    lines += [orjson.dumps(r.to_row()) for r in good[10:]]
    (spool / f"journal-{time.time_ns():020d}-999999-000001.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    store = OutageAfterRefusal(str(tmp_path / "events.sqlite"))

    async def scenario() -> tuple[set[str], EventPipeline]:
        pipeline = EventPipeline(store, spool, linger_s=0.01, retry_s=0.05)
        await pipeline.start()
        await settled(pipeline)
        await pipeline.close()
        reopened = SqliteStore(str(tmp_path / "events.sqlite"))
        try:
            return {str(r[0]) for r in await reopened.query("SELECT request_id FROM usage_events")}, pipeline
        finally:
            await reopened.close()

    written, pipeline = asyncio.run(scenario())
    assert store.outages == 1 and pipeline.stats.write_failures == 1  # the replay was cut short, then retried
    assert written == {r.request_id for r in good}
    set_aside = [orjson.loads(x)["row"][0] for x in (spool / REJECTED_FILE).read_bytes().splitlines()]
    assert set_aside == ["disk-null-status"]
    assert pipeline.stats.rejected == 1


def test_a_dropped_partition_is_made_again_and_its_rows_are_not_set_aside(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A retention job (or a restore) drops a day's partition while the gateway runs: Postgres refuses that
    day's rows with check_violation (23514), which is no fault of the rows. The partition is made again and
    the rows written, none set aside."""
    dsn = postgres_server.fresh_database(f"partition_{time.time_ns()}")
    spool = tmp_path / "spool"

    async def scenario() -> tuple[set[str], EventPipeline]:
        pipeline = EventPipeline(PostgresStore(dsn), spool, linger_s=0.02, retry_s=0.05)
        await pipeline.start()
        pipeline.emit(record("before-the-drop"))
        await settled(pipeline)
        store = PostgresStore(dsn)
        try:
            [(partition,)] = await store.query(
                "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'usage_events'::regclass"
            )
            await store.query(f"DROP TABLE {partition}")
            pipeline.emit(record("after-the-drop"))
            await settled(pipeline)
            await pipeline.close()
            return {str(r[0]) for r in await store.query("SELECT request_id FROM usage_events")}, pipeline
        finally:
            await store.close()

    written, pipeline = asyncio.run(scenario())
    assert written == {"after-the-drop"}  # (the first row went with its partition)
    assert pipeline.stats.rejected == 0 and not (spool / REJECTED_FILE).exists()
    assert pipeline.stats.write_failures == 1  # once, then the partition was made again


async def settled(pipeline: EventPipeline) -> None:
    """Until the writer is healthy with nothing queued or journaled left (6 s at most)."""
    for _ in range(300):
        if pipeline.healthy and pipeline.queue_depth == 0 and pipeline.journal.pending_segments() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the event pipeline did not settle")
