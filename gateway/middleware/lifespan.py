"""ASGI lifespan: open the shared upstream client at start-up, reload the config on SIGHUP, drain on
SIGTERM (gateway/drain.py), and close everything at shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from gateway.drain import DrainOnSignal
from gateway.http import ASGIApp, Receive, Scope, Send
from gateway.metrics import TotalsCopier
from gateway.state import GatewayState

log = logging.getLogger("gateway")


class Lifespan:
    def __init__(self, app: ASGIApp, state: GatewayState, handle_signals: bool = True) -> None:
        self.app = app
        self.state = state
        self.handle_signals = handle_signals
        self.totals = TotalsCopier(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.state.client.start()
        self.state.open_state_store()
        await self.state.adopt_old_counters()
        await self.state.open_events()
        self.totals.start()
        if not self.handle_signals:
            return
        DrainOnSignal(self.state).install()
        if self.state.config_path is not None:
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.state.reload_soon)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests), or no signals
                log.debug("SIGHUP reload not installed in this thread")
            else:
                # a worker is spawned with SIGHUP blocked (gateway/supervisor.py): one sent while it started is
                # delivered now
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})

    async def shutdown(self) -> None:
        self.state.draining = True
        await self.state.client.close()
        await self.state.close_state_store()
        await self.state.close_events()
        self.state.policy_thread.close()
        await self.totals.stop()
