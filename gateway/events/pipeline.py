"""Usage events from the request path to the database, losing none.

    emit(record) ─► journal line on disk (before the response's last byte) ─► bounded queue
                 ─► writer task: batches of up to BATCH_ROWS ─► store.write ─► journal released

    store fails    ─► the open segment is sealed, the queue dropped (its rows are on disk); until the
                      store takes writes again, new events are journaled only; then every sealed
                      segment is replayed from disk, oldest first, and the queue resumes
    store refuses  ─► the batch is halved until the rows at fault are alone; the others are written,
    a row             those are set aside on disk with the reason (the spool's rejected.jsonl), logged
                      and counted: one bad row must not hold back every event after it
    queue full     ─► the event is journaled only and its segment replayed later
    start          ─► segments of dead processes (SIGKILL, OOM) are adopted and replayed
    close (SIGTERM)─► the queue is written within the deadline; what remains stays on disk

`emit` never blocks and never raises into a request: a failure to journal is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.events.journal import Journal, Segment
from gateway.events.record import RequestRecord
from gateway.events.store import EventStore, Row, StoreRejected, StoreUnreachable

log = logging.getLogger("gateway.events")
BATCH_ROWS = 500
QUEUE_ROWS = 20_000
LINGER_S = 0.2  # how long the writer waits for a batch to fill once an event is queued (fewer, larger batches)
RETRY_S = 1.0
SET_ASIDE_ROWS = 10_000  # refused rows remembered (by hash), so that a retried replay does not repeat them


@dataclass
class PipelineStats:
    written: int = 0  # rows the store accepted (replays of rows it already had included)
    rejected: int = 0  # rows the store refused for what they hold, set aside on disk
    write_failures: int = 0  # batches the store refused or could not take
    journal_failures: int = 0  # events that could not be journaled (disk full ...)
    replayed: int = 0
    last_error: str | None = None


class EventPipeline:
    def __init__(
        self,
        store: EventStore,
        spool_dir: Path,
        *,
        batch_rows: int = BATCH_ROWS,
        queue_rows: int = QUEUE_ROWS,
        linger_s: float = LINGER_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.store = store
        self.journal = Journal(spool_dir)
        self.batch_rows = batch_rows
        self.queue_rows = queue_rows
        self.linger_s = linger_s
        self.retry_s = retry_s
        self.stats = PipelineStats()
        self.healthy = False  # new events are queued for the writer (else journaled only, and replayed from disk)
        self.migrated = False
        self._recovering = False  # migrating or replaying the spool: the store has not shown yet that it takes writes
        self._queue: deque[tuple[Segment, Row]] = deque()
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._set_aside_rows: set[int] = set()  # hashes: a retried replay must not set a row aside twice

    # the request path -----------------------------------------------------------------------------
    def emit(self, record: RequestRecord) -> None:
        row = record.to_row()
        try:
            segment = self.journal.append(orjson.dumps(row))
        except OSError as exc:
            self.stats.journal_failures += 1
            log.error("usage event %s could not be journaled (%s); writing it from memory", record.request_id, exc)
            segment = None
        if len(self._queue) >= self.queue_rows:
            self.healthy = False  # the writer is behind: journal only, and replay from disk
        if segment is None:
            if len(self._queue) < self.queue_rows:
                self._queue.append((_UNJOURNALED, row))
            else:
                log.error("usage event %s lost: no disk and no room in memory", record.request_id)
        elif self.healthy:
            self._queue.append((segment, row))
        else:
            segment.replay = True  # journaled only: the writer replays it from disk
        if not self._wake.is_set():
            self._wake.set()

    # lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        adopted = self.journal.adopt_orphans()
        if adopted:
            log.info("usage events: %d rows left by earlier processes will be replayed", adopted)
        self._writer = asyncio.get_running_loop().create_task(self._run(), name="usage-event-writer")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Writes what is queued within `timeout_s`; what is not written stays in the journal."""
        self._closing = True
        self._wake.set()
        self._closed.set()
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
            except TimeoutError:
                self._writer.cancel()
                log.warning("usage events: %d rows left in the journal for the next start", self.queue_depth)
            except Exception:
                log.exception("usage event writer failed while closing")
        self.journal.close()
        await self.store.close()

    @property
    def writable(self) -> bool:
        """For readiness and the store-health gauge: events go from memory to the store. Not while it is unreachable,
        nor while the spool is replayed (new events are queued from the start of the last replay pass on, but a
        replay attempt on a server that hangs can wait out its deadline: the store is not known to take writes)."""
        return self.healthy and not self._recovering

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # the writer -----------------------------------------------------------------------------------
    async def _run(self) -> None:
        """The writer: survives anything a store raises (a bug there must not stop the journaling)."""
        while True:
            try:
                if await self._step():
                    return
            except Exception as exc:
                log.exception("usage event writer: unexpected failure; events stay journaled")
                self._failed(exc)
                self.journal.rotate()
                for segment, _ in self._queue:
                    segment.replay = True
                self._queue = deque(item for item in self._queue if item[0] is _UNJOURNALED)
                self.healthy = False
                await self._sleep(self.retry_s)

    async def _step(self) -> bool:
        """One turn of the writer; True when it is done (closing)."""
        if not self.healthy:
            if await self._recover():
                self.healthy = True
                log.info("usage events: store %s is writable", self.store.name)
            elif self._closing:
                return True
            else:
                await self._sleep(self.retry_s)
                return False
        if not self._queue:
            if self._closing:
                return True
            await self._wake.wait()
            self._wake.clear()
        # before every batch, not only the first after a quiet spell: a steady trickle would otherwise be written
        # a row or two at a time, each batch a transaction (at one request at a time, 2 of 3 requests paid one)
        if not self._closing and len(self._queue) < self.batch_rows:
            await asyncio.sleep(self.linger_s)
        if self._queue and self.healthy:
            await self._write_queued()
        return False

    async def _sleep(self, seconds: float) -> None:
        """A pause between attempts to reach the store; only closing cuts it short (not new events)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    async def _write_queued(self) -> None:
        batch = [self._queue.popleft() for _ in range(min(self.batch_rows, len(self._queue)))]
        try:
            written = await self._write([row for _, row in batch])
        except Exception as exc:  # StoreUnreachable, or a store's bug: either way the rows stay on disk
            self._failed(exc)
            self._queue.extendleft(reversed(batch))
            self._back_to_disk()
            return
        self.stats.written += written
        counts: dict[Segment, int] = {}
        for segment, _ in batch:
            counts[segment] = counts.get(segment, 0) + 1
        for segment, n in counts.items():
            if segment is not _UNJOURNALED:
                segment.committed += n
        self.journal.release_done()

    def _back_to_disk(self) -> None:
        """The store failed: what is queued is replayed from disk later (rows with no copy there stay in memory),
        and new events are journaled only until it takes writes again."""
        self.journal.rotate()
        for segment, _ in self._queue:
            segment.replay = True
        lost = [row for segment, row in self._queue if segment is _UNJOURNALED]
        self._queue.clear()
        self._queue.extend((_UNJOURNALED, row) for row in lost)  # no copy on disk: keep them in memory
        self.healthy = False

    async def _recover(self) -> bool:
        """Migrates (once), then replays every segment that needs it, oldest first. True when done. Events that
        arrive while the last segments are replayed are queued, not journaled for a replay of their own: under a
        steady trickle, each pass would otherwise leave a few new rows for the next, and it would never end."""
        self._recovering = True
        try:
            if not self.migrated:
                applied = await self.store.migrate()
                self.migrated = True
                if applied:
                    log.info("usage events: %s schema migrated to version %d", self.store.name, max(applied))
            unjournaled = [row for segment, row in self._queue if segment is _UNJOURNALED]
            if unjournaled:
                await self._write(unjournaled)
                self._queue = deque(item for item in self._queue if item[0] is not _UNJOURNALED)
            while True:  # each pass replays what was journaled during the one before; it converges
                if self.journal.current.replay:
                    self.journal.rotate()
                pending = self.journal.to_replay()
                if not pending:
                    break
                self.healthy = True  # new events are queued from here (in a new segment, not one to replay)
                for segment in pending:
                    await self._replay(segment)
        except Exception as exc:  # StoreUnreachable, or a store's bug: either way the rows stay on disk
            self._failed(exc)
            self._back_to_disk()
            return False
        finally:
            self._recovering = False
        return True

    async def _replay(self, segment: Segment) -> None:
        rows = segment.rows()
        while batch := list(itertools.islice(rows, self.batch_rows)):
            written = await self._write(batch)
            self.stats.written += written
            self.stats.replayed += written
            await asyncio.sleep(0)  # a long replay must not starve requests
        self.journal.replayed(segment)

    async def _write(self, rows: Sequence[Row]) -> int:
        """Writes `rows` and returns how many the store took, every other one set aside. StoreUnreachable
        (and anything unexpected) goes up, and the rows stay journaled. Halving costs ~2 log2(n)
        transactions for one bad row in n, and only when there is one."""
        try:
            await self.store.write(rows)
            return len(rows)
        except StoreRejected as exc:
            if len(rows) == 1:
                self._set_aside(rows[0], str(exc))
                return 0
        middle = len(rows) // 2
        return await self._write(rows[:middle]) + await self._write(rows[middle:])

    def _set_aside(self, row: Row, reason: str) -> None:
        as_json = orjson.dumps(row, default=repr)
        if hash(as_json) in self._set_aside_rows:
            return
        try:
            path = self.journal.set_aside(b'{"reason":' + orjson.dumps(reason) + b',"row":' + as_json + b"}")
        except OSError as exc:
            raise StoreUnreachable(f"spool: a refused row could not be set aside ({exc.strerror})") from None
        self.stats.rejected += 1
        if len(self._set_aside_rows) >= SET_ASIDE_ROWS:
            self._set_aside_rows.clear()
        self._set_aside_rows.add(hash(as_json))
        log.error("usage event %s: %s refused it (%s); set aside in %s", row[0], self.store.name, reason, path)

    def _failed(self, exc: Exception) -> None:
        self.stats.write_failures += 1
        message = str(exc) if isinstance(exc, StoreUnreachable) else f"{self.store.name}: {type(exc).__name__}"
        if message != self.stats.last_error:
            log.warning("usage events: %s; events are journaled in the spool until it returns", message)
        self.stats.last_error = message


class _Unjournaled(Segment):
    """Stands for "no copy on disk" (the journal write failed): such a row lives in memory only."""

    def __init__(self) -> None:
        super().__init__(Path(), -1)


_UNJOURNALED = _Unjournaled()
