"""A throwaway redis-server on a free loopback port, and a black-holing TCP proxy for outage tests.

`RedisServer.start()` installs redis-server with apt-get when it is missing (CI runs as root), so the
tests that need Redis never skip. `stop()`/`start()` on the same object reuse the port and directory;
`stop(persist=True)` snapshots first (SAVE), so the data survives an outage as it would on a real server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["sh", "-c", "apt-get update -qq && apt-get install -y -qq redis-server"],
            check=True,
            env=env,
            timeout=600,
        )
        found = shutil.which("redis-server") or next((p for p in ["/usr/bin/redis-server"] if Path(p).exists()), None)
    if found is None:
        raise RuntimeError("redis-server is not installed and apt-get did not provide it")
    return found


@dataclass
class RedisServer:
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-test-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        binary = redis_server_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": self.host,
            "save": "",  # no snapshots of its own; stop(persist=True) asks for one
            "appendonly": "no",
            "dir": str(self.directory),
            "dbfilename": "dump.rdb",
        }
        self.process = subprocess.Popen(
            [binary, *(arg for name, value in options.items() for arg in (f"--{name}", value))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} (port {self.port})")
            try:
                with redis.Redis(host=self.host, port=self.port, socket_timeout=0.5) as client:
                    if client.ping():
                        return self
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def stop(self, persist: bool = False) -> None:
        """Stops the server; the port and directory stay, so `start()` brings the same server back."""
        if self.process is None:
            return
        if persist and self.process.poll() is None:
            with redis.Redis(host=self.host, port=self.port, socket_timeout=5) as client:
                client.save()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, persist: bool = True) -> None:
        self.stop(persist=persist)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

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
