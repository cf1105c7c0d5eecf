"""`workers > 1`: uvicorn's supervisor of worker processes sharing one listening socket, with three changes.

- SIGHUP is passed on to every worker, and each reloads its config in place (uvicorn's own restarts
  every worker, which would drop their streams in flight and their in-process circuit state). A worker
  still starting gets it once it has started: until its lifespan has set up the reload, SIGHUP would
  end it.
- SIGTERM is passed on as SIGTERM and SIGINT as SIGINT, at once, so each worker drains the way
  gateway/drain.py describes (uvicorn sends SIGTERM for both, at its next poll of the signals).
- The supervisor lets go of its copy of the listening socket once the workers are told to stop: the port
  is closed, and new connections refused, as soon as the workers close theirs.
"""

from __future__ import annotations

import os
import signal
import socket
from types import FrameType

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

SUPERVISOR_PID_ENV = "GATEWAY_SUPERVISOR_PID"  # tells a worker whom to ask for a reload of all workers


class Supervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._stop_signal: int | None = None
        self._reload_pending: list[Process] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_received)

    def _stop_received(self, sig: int, frame: FrameType | None) -> None:
        # Passed on at once, not at the supervisor's next poll (up to 0.5 s later): /readyz must turn 503 now.
        self.signal_queue.append(sig)
        if self._stop_signal is None:
            self._stop_signal = sig
            self._signal_workers(sig)

    def _signal_workers(self, sig: int) -> None:
        for worker in self.processes:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, sig)

    def handle_hup(self) -> None:
        self._reload_pending = list(self.processes)
        self._pass_reload_on()

    def _pass_reload_on(self) -> None:
        waiting = []
        for worker in self._reload_pending:
            if worker.pid is None or worker.exitcode is not None:
                continue  # gone: its replacement loads the config file as it is now
            if worker.is_ready(timeout=0.5):
                os.kill(worker.pid, signal.SIGHUP)
            else:
                waiting.append(worker)
        self._reload_pending = waiting

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        if self._reload_pending and not self.should_exit.is_set():
            self._pass_reload_on()

    def terminate_all(self) -> None:
        if self._stop_signal is None:  # stopping for another reason than a signal (a worker failed to start)
            self._signal_workers(signal.SIGTERM)
        for sock in self.sockets:
            sock.close()
