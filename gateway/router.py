"""Exact-path routing: a dict look-up, then the method; a few prefixes route the rest themselves.

Unknown paths and methods get OpenAI-shaped errors.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import MethodNotAllowed, NotFound
from gateway.http import ASGIApp, Receive, Scope, Send, send_error, served_as


class Router:
    def __init__(
        self, routes: Mapping[str, Mapping[str, ASGIApp]], prefixes: Mapping[str, ASGIApp] | None = None
    ) -> None:
        self._routes = {path.rstrip("/") or "/": dict(methods) for path, methods in routes.items()}
        self._prefixes = tuple((prefixes or {}).items())  # path prefix ─► app that routes the rest itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets: nothing here speaks them
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        path = scope["path"]
        methods = self._routes.get(path) or self._routes.get(path.rstrip("/"))
        if methods is None:
            for prefix, prefixed_app in self._prefixes:
                if path.startswith(prefix):
                    await prefixed_app(scope, receive, send)
                    return
            await send_error(send, NotFound(f"Invalid URL ({scope['method']} {path})."))
            return
        method = scope["method"]
        app = methods.get(method) or methods.get(served_as(method))
        if app is None:
            await send_error(send, MethodNotAllowed(method, path, methods))
            return
        await app(scope, receive, send)
