"""`gateway serve` as a real subprocess on a loopback port: start it, wait until it is ready, shut it down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def serve(config: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Starts `python -m gateway serve` on 127.0.0.1:`port`, in the config's directory (relative paths in the
    config, such as the usage database and the spool, land there). Provider keys (`*_API_KEY`) and `OTEL_*`
    variables of the test run are not passed on, only those in `env`. Output (stdout and stderr) is piped."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")}
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
        cwd=config.parent,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(port: int, process: subprocess.Popen[str], timeout_s: float = 30.0) -> None:
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
            output = process.communicate(timeout=10)[0]
            raise AssertionError(f"gateway serve on port {port} was not ready within {timeout_s}s; output:\n{output}")
        time.sleep(0.1)
    output = process.communicate(timeout=10)[0]
    raise AssertionError(f"gateway serve on port {port} exited with {process.returncode}; output:\n{output}")


def shut_down(*processes: subprocess.Popen[str], timeout_s: float = 15.0) -> None:
    """SIGTERM to every process at once, then waits for each (SIGKILL when one takes longer than `timeout_s`)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
