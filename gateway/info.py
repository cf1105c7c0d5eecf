"""GET /v1/models (the caller's allowed models), /healthz and /readyz."""

from __future__ import annotations

from gateway.auth import authenticate
from gateway.errors import GatewayError
from gateway.http import JSON_HEADERS, Receive, Scope, Send, send_bytes, send_error
from gateway.state import GatewayState


class ModelsEndpoint:
    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            identity = authenticate(scope, self.state.runtime)
        except GatewayError as err:
            await send_error(send, err)
            return
        await send_bytes(send, 200, identity.tenant.models_body, JSON_HEADERS)


class HealthEndpoint:
    """Alive: the process answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b'{"status":"ok"}', JSON_HEADERS)


class ReadyEndpoint:
    """Ready: a config is loaded and the process is not draining."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.state.draining:
            await send_bytes(send, 503, b'{"status":"draining"}', JSON_HEADERS)
            return
        await send_bytes(send, 200, b'{"status":"ready"}', JSON_HEADERS)
