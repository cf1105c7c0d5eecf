"""What the throwaway servers of the suite (PostgreSQL, Prometheus, Redis) share: free loopback ports,
installing a missing binary with apt-get, and the lifecycle of one server process in a scratch directory.

A `ScratchServer` runs its process in its own session (a ^C in the test run must not reach it before
`close()` does), appends the process's output to `<name>.log` in its directory, and closes itself at
interpreter exit if a test did not. `stop()` keeps the directory and port, so `start()` brings the same
server back; `close()` stops it and removes the directory.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar, Self


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def apt_install(*packages: str) -> None:
    """`apt-get install` without letting a package's postinst start its service (policy-rc.d exits 101)."""
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
        subprocess.run(
            ["sh", "-c", f"apt-get update -qq && apt-get install -y -qq --no-install-recommends {' '.join(packages)}"],
            check=True,
            env=env,
            timeout=900,
        )
    finally:
        if created:
            policy.unlink(missing_ok=True)


def installed_binary(name: str, package: str) -> str:
    """The path of `name` (PATH, then /usr/bin); apt-get installs `package` first when it is missing and we are root."""

    def lookup() -> str | None:
        return shutil.which(name) or next((p for p in [f"/usr/bin/{name}"] if Path(p).exists()), None)

    found = lookup()
    if found is None and os.geteuid() == 0:
        apt_install(package)
        found = lookup()
    if found is None:
        raise RuntimeError(f"{name} is not installed and apt-get did not provide it")
    return found


class ScratchServer:
    """The lifecycle of one throwaway server process; a subclass is a dataclass with the fields below and
    provides `_prepare()` (the command line) and `_ready()` (the readiness probe)."""

    name: ClassVar[str]  # in messages, and the log's file name
    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _prepare(self) -> list[str]:
        """Gets the directory ready (binaries, initial data, config files); returns the server's command line."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Whether the running process serves requests yet."""
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        """More keyword arguments for Popen (environment, user)."""
        return {}

    def start(self, timeout_s: float = 30.0) -> Self:
        """Starts the server (nothing when it runs) and waits until it is ready; returns self."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        command = self._prepare()
        if not port_is_free(self.host, self.port):
            raise RuntimeError(f"cannot start {self.name}: {self.host}:{self.port} is already in use by something else")
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            log.write(f"--- start on port {self.port} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.directory,
                start_new_session=True,
                **self._popen_options(),
            )
        atexit.unregister(self.close)  # registered once however often it is restarted
        atexit.register(self.close)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"{self.name} exited with {code} (port {self.port}):\n{self.log_tail()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"{self.name} did not become ready in {timeout_s}s (port {self.port}):\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _stop_process(self, *escalation: tuple[signal.Signals, float]) -> None:
        """Sends each signal in turn until the process exits within that signal's timeout, else SIGKILL."""
        if self.process is None:
            return
        for signum, timeout_s in escalation:
            if self.process.poll() is not None:
                break
            self.process.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout_s)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Takes the server down; the port and directory stay, so `start()` brings the same server back."""
        self._stop_process((signal.SIGTERM, 15.0))

    def kill(self) -> None:
        """An abrupt outage: SIGKILL."""
        self._stop_process()

    def close(self) -> None:
        """Stops the server and removes its directory."""
        self.stop()
        atexit.unregister(self.close)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
