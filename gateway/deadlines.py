"""Deadlines for the request path, cheaper than `asyncio.timeout`.

Under uvloop every `asyncio.timeout` scope opens and closes a libuv timer handle: ~10 µs, and a request
has five of them (body, failover, first byte, two Redis calls). Here a scope is one entry in a set: the
deadlines fall into buckets of `TICK_S`, and one periodic callback, running only while scopes are open,
expires the buckets whose time has come and forgets those that all their scopes have left (~3 µs a
scope). A deadline fires up to `TICK_S` late, never early.

`DeadlineWheel.timeout(seconds)` is used like `asyncio.timeout(seconds)`, with the same semantics: when
it expires, the task is cancelled and the scope raises `TimeoutError` on its way out, unless the task was
also cancelled by someone else; `None` means no deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from types import TracebackType

TICK_S = 0.01


class DeadlineWheel:
    """One per event loop (it binds to the loop of its first scope)."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._buckets: dict[int, set[Deadline]] = {}
        self._order: list[int] = []  # heap of the buckets' indexes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticking = False

    def timeout(self, seconds: float | None) -> Deadline:
        return Deadline(self, seconds)

    def _add(self, deadline: Deadline, when: float) -> set[Deadline]:
        index = math.ceil(when / self.tick_s)
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = set()
            heapq.heappush(self._order, index)
        bucket.add(deadline)
        if not self._ticking:
            self._ticking = True
            self.loop.call_later(self.tick_s, self._tick)
        return bucket

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _tick(self) -> None:
        now_index = math.floor(self.loop.time() / self.tick_s)
        order, buckets = self._order, self._buckets
        while order and (order[0] <= now_index or not buckets[order[0]]):  # due, or emptied by its scopes
            for deadline in buckets.pop(heapq.heappop(order)):
                deadline.expire()
        if order:
            self.loop.call_later(self.tick_s, self._tick)
        else:
            self._ticking = False


class Deadline:
    __slots__ = ("_bucket", "_cancelling", "_seconds", "_task", "_wheel", "expired")

    def __init__(self, wheel: DeadlineWheel, seconds: float | None) -> None:
        self._wheel = wheel
        self._seconds = seconds
        self._bucket: set[Deadline] | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.expired = False

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline must be used inside a task")
        self._task, self._cancelling = task, task.cancelling()
        if self._seconds is not None:
            self._bucket = self._wheel._add(self, self._wheel.loop.time() + self._seconds)
        return self

    def expire(self) -> None:
        self._bucket = None
        if self._task is not None and not self._task.done():
            self.expired = True
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bucket is not None:
            self._bucket.discard(self)
            self._bucket = None
        task, self._task = self._task, None  # no reference left from a finished scope to its task
        if self.expired and task is not None:
            ours_only = task.uncancel() <= self._cancelling  # as asyncio.timeout: another cancel wins
            if ours_only and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
