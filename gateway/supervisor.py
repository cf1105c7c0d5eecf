"""`workers > 1`: uvicorn's supervisor of worker processes sharing one listening socket, with three changes.

- SIGHUP is passed on to every worker at once, and each reloads its config in place (uvicorn's own
  restarts every worker, which would drop their streams in flight and their in-process circuit state).
  Workers are spawned with SIGHUP blocked, so one still starting holds it until its lifespan has set up
  the reload and unblocks it (delivered then, it would end the worker).
- SIGTERM is passed on as SIGTERM and SIGINT as SIGINT, at once, so each worker drains the way
  gateway/drain.py describes (uvicorn sends SIGTERM for both, at its next poll of the signals).
- The supervisor lets go of its copy of the listening socket once the workers are told to stop: the port
  is closed, and new connections refused, as soon as the workers close theirs.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess

SUPERVISOR_PID_ENV = "GATEWAY_SUPERVISOR_PID"  # tells a worker whom to ask for a reload of all workers


@contextmanager
def reloads_held() -> Iterator[None]:
    """SIGHUP blocked in this thread: a worker spawned meanwhile inherits the mask (across exec), and a SIGHUP
    that arrives meanwhile waits, and is handled on leaving."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class Supervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._stop_signal: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_received)
        signal.signal(signal.SIGHUP, self._reload_received)

    def _stop_received(self, sig: int, frame: FrameType | None) -> None:
        # Passed on at once, not at the supervisor's next poll (up to 0.5 s later): /readyz must turn 503 now.
        self.signal_queue.append(sig)
        if self._stop_signal is None:
            self._stop_signal = sig
            self._signal_workers(sig)

    def _reload_received(self, sig: int, frame: FrameType | None) -> None:
        # At once as well. Not once stopping: a worker whose loop has closed would die of it, not exit 0. (Before
        # the workers exist there is no one to tell: they will read the file as it is when they start.)
        if self._stop_signal is None:
            self._signal_workers(sig)

    def _signal_workers(self, sig: int) -> None:
        for worker in self.processes:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, sig)

    def init_processes(self) -> None:
        with reloads_held():
            super().init_processes()

    def handle_ttin(self) -> None:  # (one more worker)
        with reloads_held():
            super().handle_ttin()

    def keep_subprocess_alive(self) -> None:
        with reloads_held():  # (it spawns the replacement of a worker that died)
            super().keep_subprocess_alive()

    def terminate_all(self) -> None:
        if self._stop_signal is None:  # stopping for another reason than a signal (a worker failed to start)
            self._stop_signal = signal.SIGTERM  # (and so no SIGHUP reaches a worker stopping)
            self._signal_workers(signal.SIGTERM)
        for sock in self.sockets:
            sock.close()
