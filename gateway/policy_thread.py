"""Where a request's content policies run when its texts are large: a worker thread, off the event loop.

The injection and PII scans are pure CPU work, some 0.3 s a megabyte of dense text: on the loop, a 4 MB body
would freeze every other request and stream of every tenant for as long. A body above `OFF_LOOP_BYTES` (which
bounds the length of the texts in it) is scanned here instead, and the loop serves the others in between: it
takes the GIL back at least every `sys.getswitchinterval()` (5 ms). Below it the scan costs at most about that
much on the loop, and a thread would add its hand-over to the many small requests for nothing.

One thread per process: the scans hold the GIL, so a second thread would add no throughput, only take more of the
loop's share of it. Large requests wait for each other here (first come, first served); small ones never do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

OFF_LOOP_BYTES = 16 * 1024  # a (decoded) request body above this has its content policies run in the thread

P = ParamSpec("P")
T = TypeVar("T")


class PolicyThread:
    __slots__ = ("executor", "in_flight")

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-policies")  # started on use
        self.in_flight = 0  # calls of `run` not yet returned: waiting for the thread or running in it

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in the thread. Cancelled (its client left), the caller stops waiting at once: a
        call still queued never runs; one running finishes on its own, and what it returns is dropped."""
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
