"""The admin API, behind `admin.token_sha256` (absent: the admin API does not exist, 404)."""

from __future__ import annotations

import hashlib
import hmac

import orjson

from gateway.errors import AuthError, GatewayError, InvalidRequest, NotFound
from gateway.http import JSON_HEADERS, Receive, Scope, Send, header, send_bytes, send_error
from gateway.state import GatewayState


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
