"""py-spy, the sampling profiler `--profile` records a server with (an optional dependency: `pip install -e
'.[bench]'`; the harness never installs it). It reads the server's memory from outside (`--nonblocking`: the
server is never paused), which needs root."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench.servers import VENV_BIN, Service, start

PYSPY = VENV_BIN / "py-spy"
RATE_HZ = 250
SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")
REAP_GRACE_S = 30.0  # how long after its sampling time py-spy may take to write its file and exit


def require() -> None:
    """Stops the run, with what to do, when py-spy is not installed in the virtualenv or we are not root."""
    if not PYSPY.exists():
        raise SystemExit(f"bench: --profile needs py-spy, not found at {PYSPY}: pip install -e '.[bench]'")
    if os.geteuid() != 0:
        raise SystemExit("bench: --profile needs root (py-spy reads the server's memory with ptrace rights)")


def command(pid: int, duration_s: float, output: Path, rate_hz: int = RATE_HZ) -> list[str]:
    return [
        str(PYSPY),
        "record",
        "-p",
        str(pid),
        "-d",
        str(max(1, round(duration_s))),
        "-r",
        str(rate_hz),
        "-f",
        "raw",
        "--nonblocking",
        "-o",
        str(output),
    ]


@dataclass(frozen=True)
class Recording:
    output: Path
    samples: int  # stack samples written (idle ones are left out)
    errors: int  # samples py-spy could not read (the server changed under it) and dropped
    cpu_s: float  # user + system time py-spy itself used
    rate_hz: int
    duration_s: float

    def as_dict(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "errors": self.errors,
            "pyspy_cpu_s": round(self.cpu_s, 3),
            "rate_hz": self.rate_hz,
            "duration_s": self.duration_s,
        }


def summary(log: str) -> tuple[int, int]:
    """(samples, errors) from py-spy's last line: `Wrote raw flamegraph data to '...'. Samples: N Errors: M`."""
    found = SUMMARY.findall(log)
    if not found:
        raise ValueError(f"no 'Samples: N Errors: M' in py-spy's output: {log.strip()[-500:]!r}")
    samples, errors = found[-1]
    return int(samples), int(errors)


def reap(service: Service, timeout_s: float) -> float:
    """Waits for `service` to exit (at most `timeout_s`) and returns the CPU time it used (wait4's rusage)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(service.pid, os.WNOHANG)
        if pid:
            service.process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} still running {timeout_s:g} s after it should have stopped")
        time.sleep(0.05)


def start_recording(pid: int, duration_s: float, output: Path, run_dir: Path, cpus: frozenset[int]) -> Service:
    """py-spy recording `pid` for `duration_s` into `output`, pinned to `cpus` (stop it with `finish`)."""
    return start(f"py-spy-{pid}", command(pid, duration_s, output), cpus, run_dir)


def finish(service: Service, output: Path, duration_s: float) -> Recording:
    """Waits for the recording to end and reads what py-spy reported."""
    cpu_s = reap(service, duration_s + REAP_GRACE_S)
    if service.process.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed ({service.process.returncode}):\n{service.log_tail()}")
    samples, errors = summary(service.log.read_text(errors="replace"))
    return Recording(output, samples, errors, cpu_s, RATE_HZ, float(max(1, round(duration_s))))
