"""A throwaway redis-server on a free loopback port, and a black-holing TCP proxy for outage tests.

`RedisServer.start()` installs redis-server with apt-get when it is missing (CI runs as root), so the
tests that need Redis never skip. `stop()`/`start()` on the same object reuse the port and directory (the
lifecycle is `ScratchServer`'s); `stop(persist=True)` snapshots first (SAVE), so the data survives an
outage as it would on a real server.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import redis

from tests.support.scratch_server import ScratchServer, free_port, installed_binary


@dataclass
class RedisServer(ScratchServer):
    name: ClassVar[str] = "redis-server"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-test-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _prepare(self) -> list[str]:
        options = {
            "port": str(self.port),
            "bind": self.host,
            "save": "",  # no snapshots of its own; stop(persist=True) asks for one
            "appendonly": "no",
            "dir": str(self.directory),
            "dbfilename": "dump.rdb",
        }
        binary = installed_binary("redis-server", "redis-server")
        return [binary, *(arg for name, value in options.items() for arg in (f"--{name}", value))]

    def _ready(self) -> bool:
        with (
            contextlib.suppress(redis.RedisError, OSError),
            redis.Redis(host=self.host, port=self.port, socket_timeout=0.5) as client,
        ):
            return bool(client.ping())
        return False

    def stop(self, persist: bool = False) -> None:
        """Stops the server; the port and directory stay, so `start()` brings the same server back."""
        if persist and self.running:
            with redis.Redis(host=self.host, port=self.port, socket_timeout=5) as client:
                client.save()
        self._stop_process((signal.SIGTERM, 10.0))

    def restart(self, persist: bool = True) -> None:
        self.stop(persist=persist)
        self.start()

    def clients_left(self, wait_s: float = 2.0) -> list[str]:
        """The addresses of the clients still connected (this call's own aside), once every client that is
        closing got through (a disconnect reaches the server a moment after the close: polled, boundedly)."""
        deadline = time.monotonic() + wait_s
        with redis.Redis(host=self.host, port=self.port, socket_timeout=5) as client:
            own = client.client_id()
            while True:
                left = [str(c["addr"]) for c in client.client_list() if int(c["id"]) != own]
                if not left or time.monotonic() > deadline:
                    return left
                time.sleep(0.02)

    def flush(self) -> None:
        with redis.Redis(host=self.host, port=self.port, socket_timeout=5) as client:
            client.flushdb()


class BlackHole:
    """A TCP listener on loopback that accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # read nothing, write nothing

    @property
    def accepted(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        self._listener.close()
        for conn in self._held:
            conn.close()
        self._held.clear()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
