"""`Service.wait_idle`: a measured point starts only once the server has finished what the warm-up left behind
(the requests its wrk abandoned when it closed its connections). Real processes, CPU time read from /proc."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.servers import Service

SPIN_THEN_SLEEP = "import time\nend = time.monotonic() + {spin}\nwhile time.monotonic() < end: pass\ntime.sleep(60)\n"


@pytest.fixture
def spinner(tmp_path: Path) -> Iterator[Callable[[float], Service]]:
    started: list[Service] = []

    def start(spin_s: float) -> Service:
        process = subprocess.Popen([sys.executable, "-c", SPIN_THEN_SLEEP.format(spin=spin_s)])
        service = Service("spinner", process, tmp_path / "spinner.log")
        started.append(service)
        return service

    yield start
    for service in started:
        service.process.kill()
        service.process.wait()


def test_an_idle_process_is_not_waited_for(spinner: Callable[[float], Service]) -> None:
    service = spinner(0.0)
    assert service.wait_idle(timeout_s=10.0) < 5.0


def test_a_busy_process_is_waited_for_until_it_goes_quiet(spinner: Callable[[float], Service]) -> None:
    service = spinner(1.5)
    waited = service.wait_idle(timeout_s=20.0)
    assert waited >= 0.9  # it spun for 1.5 s from its start, a moment before the wait began
    assert service.process.poll() is None


def test_a_process_that_never_goes_quiet_is_waited_for_at_most_the_timeout(spinner: Callable[[float], Service]) -> None:
    service = spinner(60.0)
    waited = service.wait_idle(timeout_s=1.0)
    assert 1.0 <= waited < 3.0
