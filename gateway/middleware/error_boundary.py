"""The last line: any exception an endpoint did not handle becomes an OpenAI-shaped 500.

The traceback goes to the server log with the request id the answer carries (never to the client); if the
response had already started, the connection is simply ended, because a second status line cannot be sent.
"""

from __future__ import annotations

import logging

from gateway.errors import internal_error
from gateway.http import REQUEST_ID_HEADER, ASGIApp, Message, Receive, Scope, Send, new_request_id, send_error

log = logging.getLogger("gateway")


class ErrorBoundary:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = new_request_id()
            log.exception("unhandled error in request %s on %s %s", request_id, scope.get("method"), scope.get("path"))
            if not started:
                await send_error(send, internal_error(), [(REQUEST_ID_HEADER, request_id.encode())])
