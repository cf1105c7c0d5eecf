"""The admin API, behind `admin.token_sha256` (absent: the admin API does not exist, 404)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import unquote

import orjson

from gateway.errors import AuthError, GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from gateway.http import JSON_HEADERS, Receive, Scope, Send, header, send_bytes, send_error
from gateway.runtime import Tenant
from gateway.state import GatewayState
from policies.budgets import LimitState


def check_admin(scope: Scope, state: GatewayState) -> None:
    expected = state.runtime.config.admin.token_sha256
    if expected is None:
        raise NotFound("The admin API is disabled (admin.token_sha256 is not set).")
    value = header(scope, b"authorization") or b""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        raise AuthError("The admin API needs 'Authorization: Bearer <admin token>'.", code="missing_admin_token")
    if not hmac.compare_digest(hashlib.sha256(token.strip()).hexdigest(), expected):
        raise AuthError("Incorrect admin token.", code="invalid_admin_token")


class ReloadEndpoint:
    """POST /admin/reload: load the config file again; a bad one is rejected, the old one keeps serving."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_admin(scope, self.state)
            problems = await self.state.reload()
            if problems:
                raise InvalidRequest(
                    "The new config was rejected; the previous config keeps serving. Problems: " + "; ".join(problems),
                    code="config_invalid",
                )
        except GatewayError as err:
            await send_error(send, err)
            return
        runtime = self.state.runtime
        body = {
            "status": "reloaded",
            "loaded_at": runtime.loaded_at,
            "disabled_providers": dict(runtime.disabled_providers),
        }
        await send_bytes(send, 200, orjson.dumps(body), JSON_HEADERS)


def _tenant_view(tenant: Tenant, states: list[LimitState]) -> dict[str, Any]:
    return {
        "id": tenant.name,
        "models": sorted(tenant.routes),
        "max_tokens_per_request": tenant.max_tokens_per_request,
        "policies": tenant.policies.model_dump(),
        "log_content": tenant.log_content,
        "limits": [
            {
                "name": s.spec.name,
                "unit": s.spec.unit,
                "per": s.spec.window,
                "window_start": s.span.start,
                "window_end": s.span.end,
                "limit": s.spec.limit,
                "reserved": s.reserved,
                "spent": s.spent,
                "remaining": s.remaining,
            }
            for s in states
        ],
    }


class TenantsEndpoint:
    """GET /admin/tenants (ids) and GET /admin/tenants/{id} (policies in force after inheritance, live
    budget and rate-limit state)."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_admin(scope, self.state)
            if scope["method"] != "GET":
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use GET.")
            tenants = self.state.runtime.tenants
            name = scope["path"].removeprefix(TENANTS_PREFIX).strip("/")
            if not name:
                body: Any = {"object": "list", "data": sorted(tenants)}
            else:
                tenant = tenants.get(unquote(name))
                if tenant is None:
                    raise NotFound(f"No tenant '{unquote(name)}'.")
                states = await self.state.store.state(tenant.name, tenant.limits, time.time())
                body = _tenant_view(tenant, states)
        except GatewayError as err:
            await send_error(send, err)
            return
        await send_bytes(send, 200, orjson.dumps(body), JSON_HEADERS)


class CircuitsEndpoint:
    """GET /admin/circuits: every deployment's breaker."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_admin(scope, self.state)
        except GatewayError as err:
            await send_error(send, err)
            return
        body = {"object": "list", "data": self.state.failover.circuits.snapshot()}
        await send_bytes(send, 200, orjson.dumps(body), JSON_HEADERS)


TENANTS_PREFIX = "/admin/tenants"
