"""Instructions a request, counted by callgrind in the live server (`python -m bench --instructions`).

Wall-clock figures on this virtual machine drift by ±10-20% over minutes; callgrind counts the instructions the
server executes, which repeat to within about 1% whatever else the machine is doing. The server runs under
`valgrind --tool=callgrind` (some 50 times slower), answers a warm-up of sequential requests on one keep-alive
connection (0 ms upstream), then its counters are zeroed, a fixed number of requests is sent, and the counters are
dumped: what it executed in between, divided by the requests, is the cost of one request (the timers and the
usage-event writer that ran meanwhile included, as in production). Its timers tick by the clock, so a run slowed by
other work on the machine would count more of them a request: what the server executes idle, a second, counted
just before, is taken off for the run's duration (both figures are reported).
"""

from __future__ import annotations

import http.client
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from bench.load import chat_body
from bench.servers import BENCH_KEY, Service, Target

SUMMARY = re.compile(rb"^summary:\s*(\d+)", re.MULTILINE)
READY_TIMEOUT_S = 600.0  # start-up under valgrind: imports and the first compilations at a fiftieth of the speed
SETTLE_S = 1.0  # after the warm-up: the request log's and the event writer's delayed work done before zeroing
IDLE_S = 3.0  # the idle count's span


def callgrind_wrapper(out_dir: Path) -> list[str]:
    """The command prefix that runs a server under callgrind, its counts written into `out_dir`."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.%p"]


def send_sequential(target: Target, kind: str, count: int) -> None:
    """`count` chat requests one after another on one keep-alive connection; each must answer 200."""
    url = urlsplit(target.url(kind))
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    headers = {"authorization": f"Bearer {BENCH_KEY}", "content-type": "application/json"}
    model = target.routes[kind].model
    try:
        for _ in range(count):
            connection.request("POST", url.path, chat_body(model, stream=False), headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{target.name} answered {response.status}: {body[:300]!r}")
    finally:
        connection.close()


def callgrind_control(option: str, service: Service) -> None:
    subprocess.run(["callgrind_control", option, str(service.pid)], check=True, capture_output=True, timeout=120)


def dumped_instructions(out_dir: Path, pid: int, before: Sequence[Path]) -> int:
    """The instructions counted in the dump that appeared in `out_dir` since `before` was listed."""
    deadline = time.monotonic() + 60
    while True:
        new = [path for path in out_dir.glob(f"callgrind.{pid}.*") if path not in before]
        if new:
            found = SUMMARY.search(new[0].read_bytes())
            if found is not None:
                return int(found.group(1))
        if time.monotonic() > deadline:
            raise RuntimeError(f"callgrind wrote no dump for process {pid} in {out_dir}")
        time.sleep(0.2)


def counted(service: Service, out_dir: Path, run: Callable[[], None]) -> tuple[int, float]:
    """(instructions, seconds) the server spent while `run` ran: counters zeroed before, dumped after."""
    callgrind_control("--zero", service)
    before = list(out_dir.glob(f"callgrind.{service.pid}.*"))
    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    callgrind_control("--dump", service)
    return dumped_instructions(out_dir, service.pid, before), elapsed


def count_per_request(target: Target, out_dir: Path, requests: int, warmup: int) -> dict[str, object]:
    """Warm-up, the idle rate, then `requests` requests: the instructions of one request at one connection, 0 ms
    upstream, with and without the idle rate taken off for the run's duration."""
    service = target.service
    assert service is not None
    send_sequential(target, "json0", warmup)
    time.sleep(SETTLE_S)
    idle, idle_s = counted(service, out_dir, lambda: time.sleep(IDLE_S))
    total, run_s = counted(service, out_dir, lambda: send_sequential(target, "json0", requests))
    idle_per_s = idle / idle_s
    return {
        "requests": requests,
        "warmup": warmup,
        "instructions": total,
        "run_s": round(run_s, 3),
        "idle_per_s": round(idle_per_s),
        "gross_per_request": total / requests,
        "per_request": (total - idle_per_s * run_s) / requests,
    }
