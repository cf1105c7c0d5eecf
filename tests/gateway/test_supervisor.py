"""The supervisor's SIGHUP hold: a worker spawned while it holds is born with SIGHUP blocked (so a reload sent
before its lifespan can handle one waits instead of ending it), and a SIGHUP the supervisor gets meanwhile is
handled once it lets go, not lost."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from gateway.supervisor import reloads_held


def report_mask(conn: multiprocessing.connection.Connection) -> None:
    conn.send(signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    conn.close()


def spawned_with_sighup_blocked() -> bool:
    context = multiprocessing.get_context("spawn")  # as uvicorn spawns its workers
    parent, child = context.Pipe()
    process = context.Process(target=report_mask, args=(child,))
    process.start()
    try:
        return bool(parent.recv())
    finally:
        process.join(10)


@pytest.fixture
def hups() -> Iterator[list[int]]:
    received: list[int] = []

    def handler(sig: int, frame: FrameType | None) -> None:
        received.append(sig)

    previous = signal.signal(signal.SIGHUP, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_worker_spawned_while_reloads_are_held_starts_with_sighup_blocked() -> None:
    with reloads_held():
        assert spawned_with_sighup_blocked()
    assert not spawned_with_sighup_blocked()


def test_a_sighup_while_held_is_handled_on_letting_go(hups: list[int]) -> None:
    with reloads_held():
        # to this thread: sent to the process, another thread of the test run (a served gateway's) could take it
        signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
        assert hups == []
    assert hups == [signal.SIGHUP]
