"""The gateway under test, served by uvicorn on a real loopback socket in a background thread."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from gateway.app import build_app
from gateway.config.loader import load_text
from gateway.runtime import build_runtime
from gateway.state import GatewayState
from policies.budgets import LimitState
from tests.support.scratch_server import free_port

T = TypeVar("T")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def sqlite_usage_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of the SQLite usage events at `path`; none while the file or its table is not there yet."""
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM usage_events")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


class RunningGateway:
    def __init__(self, config_text: str, config_path: Path | None = None) -> None:
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if not any(line.startswith("events:") for line in config_text.splitlines()):
            # usage events of a test gateway go to a scratch directory, never into the working tree
            self._scratch = tempfile.TemporaryDirectory(prefix="gateway-events-")
            base = self._scratch.name
            events = f"events: {{sqlite_path: '{base}/usage.sqlite', spool_dir: '{base}/spool'}}\n"
            config_text = events + config_text
        if config_path is not None:
            config_path.write_text(config_text)
        self.state = GatewayState(runtime=build_runtime(load_text(config_text)), config_path=config_path)
        self.port = free_port()
        self.app = build_app(self.state, handle_signals=False)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", loop="asyncio"
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve()

        asyncio.run(serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """Client connections the server still holds (uvicorn forgets one once it is closed)."""
        return len(self._server.server_state.connections)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Runs `coroutine` on the gateway's own event loop (where its Redis and Postgres connections live) and
        returns its result. A loop of the caller's own would make those clients open connections of that loop,
        left open when it ends."""
        if self._loop is None or not self._thread.is_alive():
            return asyncio.run(coroutine)  # not serving: nothing of the gateway's is running on a loop
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def start(self) -> RunningGateway:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        if self._scratch is not None:
            self._scratch.cleanup()


def settled_limits(gateway: RunningGateway, tenant: str, timeout_s: float = 5.0) -> list[LimitState]:
    """The tenant's limit counters once no reservation is held. A request settles its reservation right after
    its response's last byte (off the response's path), so a client can have its answer a moment before
    the settlement lands: poll for it, boundedly."""
    limits = gateway.state.runtime.tenants[tenant].limits
    deadline = time.monotonic() + timeout_s
    while True:
        states = gateway.run(gateway.state.store.state(tenant, limits, time.time()))
        if all(state.reserved == 0 for state in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.01)
