"""Graceful stop, in the order a load balancer needs it.

SIGTERM ─► /readyz answers 503 at once (`state.draining`), new requests are still served
        ─► after `server.readiness_grace_s` (time for the load balancer to stop sending): uvicorn closes
           the listener, so new connections are refused, and waits for requests and streams in flight,
           for at most `server.drain_timeout_s`
        ─► lifespan shutdown writes the usage-event queue, then the process exits 0
SIGINT (Ctrl-C), or a second SIGTERM: the same without the grace period.

uvicorn installs its own SIGTERM/SIGINT handlers with `signal.signal` before the lifespan starts (it
does so on purpose, to restore them afterwards); `DrainOnSignal` wraps them from the lifespan's
start-up and hands the signal on to uvicorn once the grace period is over.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from gateway.state import GatewayState

log = logging.getLogger("gateway")

Handler = Callable[[int, FrameType | None], Any]


class DrainOnSignal:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> bool:
        """Wraps the running server's SIGTERM and SIGINT handlers; False where signals cannot be handled
        (not the main thread, as for a gateway served from a test's thread)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            server_handler = signal.getsignal(sig)
            if callable(server_handler):
                signal.signal(sig, partial(self._received, loop, server_handler))
        return True

    def _received(
        self, loop: asyncio.AbstractEventLoop, server_handler: Handler, sig: int, frame: FrameType | None
    ) -> None:
        # Runs in the main thread between two bytecodes: only set flags and schedule, as uvicorn's own does.
        first = not self.state.draining
        self.state.draining = True
        grace_s = self.state.runtime.config.server.readiness_grace_s
        if first and sig == signal.SIGTERM and grace_s > 0:
            log.info("SIGTERM: not ready any more; closing the listener in %g s, then draining", grace_s)
            loop.call_soon_threadsafe(self._start_timer, loop, grace_s, partial(server_handler, sig, None))
            return
        if self._timer is not None:
            self._timer.cancel()
        log.info("%s: closing the listener and draining", signal.Signals(sig).name)
        server_handler(sig, frame)

    def _start_timer(self, loop: asyncio.AbstractEventLoop, grace_s: float, stop_server: Callable[[], Any]) -> None:
        self._timer = loop.call_later(grace_s, stop_server)
