"""Cancel the work of a request the moment its client goes away.

While the endpoint waits on the upstream, a watcher task waits on `receive()`; an
`http.disconnect` before the response is complete cancels the endpoint's task, which closes the
upstream connection on its way out, so the provider stops generating (and billing) at once.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from gateway.http import Message, Receive, Send


class DisconnectWatch:
    __slots__ = ("_complete", "_receive", "_send", "_task", "_watcher", "disconnected", "started")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False
        self.started = False  # the response's status line has gone out
        self._complete = False

    async def send(self, message: Message) -> None:
        """The request's `send`: marks the response complete before its last message goes out, so the
        disconnect that servers report after a finished response is not taken for a client leaving."""
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                self._complete = True
        else:
            self.started = True
        await self._send(message)

    async def hang_up(self) -> None:
        """Ends the client's connection now, dropping what it has not taken (a client that stopped reading). ASGI
        cannot say so, and a server closes a connection only once its client has taken what is buffered: for ever,
        for a client that keeps its socket open and reads nothing. uvicorn's `receive` is a method of the
        request's cycle, which holds the connection's transport; under another server nothing is done here."""
        transport = getattr(getattr(self._receive, "__self__", None), "transport", None)
        abort = getattr(transport, "abort", None)
        if callable(abort):
            abort()
            await asyncio.sleep(0)  # the server learns it is gone (else it logs an error as the request ends)

    async def __aenter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._complete and self._task is not None:
                    self.disconnected = True
                    self._task.cancel()
                return

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        # Once the response is complete the server's `receive()` answers `http.disconnect` by itself (uvicorn
        # and httpx's ASGI transport both do), and the watcher ends on its own. Cancelling it instead would
        # leave a CancelledError whose traceback holds the watcher's frames in a reference cycle: garbage
        # for the cyclic collector, once per request.
        if self._watcher is not None and not (self._complete and exc_type is None):
            self._watcher.cancel()
        self._watcher = None
        if self.disconnected and exc_type is asyncio.CancelledError and self._task is not None:
            return self._task.uncancel() == 0  # swallow our own cancel only, never a second one
        return False
