"""The usage-event writer under a steady trickle of events, from its start: it leaves its replay of the
journal (events arriving meanwhile do not each start another pass) and writes batches of a linger's worth,
not one database transaction per event or two (a real SQLite store underneath, its batches counted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.events import RequestRecord
from gateway.events.pipeline import EventPipeline
from gateway.events.sqlite_store import SqliteStore
from gateway.events.store import Row


class CountingStore(SqliteStore):
    """SQLite that answers as slowly as a database across a network (a transaction is a few round trips)."""

    def __init__(self, path: str, write_s: float) -> None:
        super().__init__(path)
        self.write_s = write_s
        self.batches: list[int] = []

    async def write(self, rows: Sequence[Row]) -> None:
        self.batches.append(len(rows))
        await asyncio.sleep(self.write_s)
        await super().write(rows)


def test_a_steady_trickle_is_written_in_batches_of_the_linger(tmp_path: Path) -> None:
    linger_s, events, gap_s = 0.05, 150, 0.002

    async def scenario() -> tuple[list[int], int]:
        store = CountingStore(str(tmp_path / "events.sqlite"), write_s=0.005)
        pipeline = EventPipeline(store, tmp_path / "spool", linger_s=linger_s)
        await pipeline.start()
        started = time.monotonic()
        for i in range(events):  # one at a time, as sequential requests are
            record = RequestRecord(request_id=f"req-{i:04d}", endpoint="chat", started_at=time.time())
            record.tenant, record.status, record.http_status = "acme", "completed", 200
            pipeline.emit(record)
            await asyncio.sleep(gap_s)
        elapsed = time.monotonic() - started
        assert pipeline.healthy  # the startup replay ended while events kept coming
        await pipeline.close()
        (count,) = (await SqliteStore(str(tmp_path / "events.sqlite")).query("SELECT count(*) FROM usage_events"))[0]
        assert elapsed > 0
        return store.batches, int(count)

    batches, rows = asyncio.run(scenario())
    assert rows == events  # nothing lost
    assert sum(batches) == events
    # about one batch per linger while events keep coming (plus the one written on close); row by row would be
    # ~100 batches here
    assert len(batches) <= events * gap_s / linger_s * 3 + 2, batches
