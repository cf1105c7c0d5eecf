"""An event loop of its own in a daemon thread, for servers a test plays (providers, proxies) beside the code
under test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable


def start_loop_thread(setup: Callable[[], Awaitable[None]]) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new loop running in a new thread, returned once `setup()` (say, binding a listener) has run on it."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(setup())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    return loop, thread
