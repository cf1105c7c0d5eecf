"""GET /v1/models (the caller's allowed models), /healthz and /readyz."""

from __future__ import annotations

from urllib.parse import unquote

import orjson

from gateway.auth import authenticate
from gateway.errors import GatewayError
from gateway.http import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    new_request_id,
    path_after,
    require_method,
    send_bytes,
    send_error,
)
from gateway.routing import model_not_found
from gateway.state import GatewayState

# SDKs are pointed at base URLs with and without /v1; AzureOpenAI's models.list() asks /openai/models?api-version=
MODEL_PREFIXES = ("/v1/models/", "/models/", "/openai/models/")


class ModelsEndpoint:
    """GET /v1/models (the list) and GET /v1/models/{id} (one model, 404 unless the caller may use it), with or
    without /v1 and with or without a trailing slash."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [*JSON_HEADERS, (b"x-request-id", new_request_id().encode())]
        try:
            require_method(scope, "GET")
            identity = authenticate(scope, self.state.runtime)
            path: str = scope["path"]
            named = next((path_after(scope, prefix) for prefix in MODEL_PREFIXES if path.startswith(prefix)), "")
            if not named:
                await send_bytes(send, 200, identity.tenant.models_body, headers)
                return
            model = unquote(named.removesuffix("/"))
            body = identity.tenant.model_bodies.get(model)
            if body is None:
                raise model_not_found(model)
            await send_bytes(send, 200, body, headers)
        except GatewayError as err:
            await send_error(send, err, headers[1:])


class HealthEndpoint:
    """Alive: the process answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b'{"status":"ok"}', JSON_HEADERS)


class ReadyEndpoint:
    """Ready: a config is loaded, the process is not draining, and the shared state store (Redis) answers,
    unless `state.on_error: fail_open` declares that the gateway serves without it. Usage events never make
    the gateway unready: while their store is away they wait in the journal on disk (`events: spooling`).
    The body says which checks were made: `{"status": "ready" | "degraded" | "not_ready" | "draining",
    "checks": {...}}`; 200 for ready and degraded, 503 otherwise."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, checks = await self.check()
        body = orjson.dumps({"status": status, "checks": checks})
        await send_bytes(send, 200 if status in ("ready", "degraded") else 503, body, JSON_HEADERS)

    async def check(self) -> tuple[str, dict[str, str]]:
        state = self.state
        if state.draining:
            return "draining", {}
        checks = {"config": "ok"}
        status = "ready"
        if state.state_store is not None and (redis := await state.state_store.probe()) != "in_process":
            checks["redis"] = redis
            if redis != "ok":
                status = "degraded" if state.state_store.on_error == "fail_open" else "not_ready"
        if state.pipeline is not None:
            checks["events"] = "ok" if state.pipeline.writable else "spooling"
            if not state.pipeline.writable and status == "ready":
                status = "degraded"
        return status, checks
