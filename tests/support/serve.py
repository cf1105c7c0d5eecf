"""`gateway serve` as a real subprocess on a loopback port: start it, wait until it is ready, shut it down."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


class Served(subprocess.Popen[str]):
    """A `gateway serve` process; what it writes (stdout and stderr) goes to `log_path`, a file rather than
    a pipe, so that a test which never reads it cannot stall the gateway on a full pipe."""

    log_path: Path

    def kill(self) -> None:
        """SIGKILL to the whole process group: with `workers > 1`, the workers too, not only the supervisor
        (orphaned workers would keep the port and their Redis connections for the rest of the session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (`gateway serve` logs JSON by default)."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]


def serve(config: Path, port: int, env: dict[str, str] | None = None) -> Served:
    """Starts `python -m gateway serve` on 127.0.0.1:`port`, in the config's directory (relative paths in the
    config, such as the usage database and the spool, land there). Provider keys (`*_API_KEY`) and `OTEL_*`
    variables of the test run are not passed on, only those in `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")}
    environment.update(env or {})
    log_path = config.parent / f"gateway-{port}.log"
    with log_path.open("w") as log:
        process = Served(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            cwd=config.parent,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so that `kill` reaches the workers too
        )
    process.log_path = log_path
    return process


def wait_ready(port: int, process: Served, timeout_s: float = 30.0) -> None:
    """Polls /readyz until it answers 200; fails with the process's output when it exits or is not ready in
    time (it is killed then, to read what it wrote)."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise AssertionError(
                f"gateway serve on port {port} was not ready within {timeout_s}s; output:\n{process.output()}"
            )
        time.sleep(0.1)
    process.wait(10)
    raise AssertionError(f"gateway serve on port {port} exited with {process.returncode}; output:\n{process.output()}")


def shut_down(*processes: subprocess.Popen[str], timeout_s: float = 15.0) -> None:
    """SIGINT to every process at once (a drain without SIGTERM's readiness grace period), then waits for each
    (SIGKILL when one takes longer than `timeout_s`)."""
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
