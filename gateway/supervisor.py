"""`workers > 1`: uvicorn's supervisor of worker processes sharing one listening socket, with three changes.

- SIGHUP is passed on to every worker, and each reloads its config in place (uvicorn's own restarts
  every worker, which would drop their streams in flight and their in-process circuit state).
- SIGTERM is passed on as SIGTERM and SIGINT as SIGINT, so each worker drains the way gateway/drain.py
  describes (uvicorn sends SIGTERM for both).
- The supervisor lets go of its copy of the listening socket once the workers are told to stop: the port
  is closed, and new connections refused, as soon as the workers close theirs.
"""

from __future__ import annotations

import os
import signal

from uvicorn.supervisors.multiprocess import Multiprocess

SUPERVISOR_PID_ENV = "GATEWAY_SUPERVISOR_PID"  # tells a worker whom to ask for a reload of all workers


class Supervisor(Multiprocess):
    _stop_signal = signal.SIGTERM

    def handle_int(self) -> None:
        self._stop_signal = signal.SIGINT
        super().handle_int()

    def handle_hup(self) -> None:
        for worker in self.processes:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGHUP)

    def terminate_all(self) -> None:
        for worker in self.processes:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, self._stop_signal)
        for sock in self.sockets:
            sock.close()
