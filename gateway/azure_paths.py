"""Azure OpenAI clients call `/openai/deployments/{deployment}/{operation}?api-version=...` with an
`api-key` header. The deployment name is the model alias here: it is put into `scope` for the
endpoint, which uses it in place of the body's `model` (as Azure does)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from gateway.errors import MethodNotAllowed, NotFound
from gateway.http import ASGIApp, Receive, Scope, Send, path_after, send_error

PREFIX = "/openai/deployments/"
MODEL_SCOPE_KEY = "gateway.model"


class AzureDeployments:
    def __init__(self, operations: Mapping[str, ASGIApp]) -> None:
        self._operations = dict(operations)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deployment, _, operation = path_after(scope, PREFIX).partition("/")
        app = self._operations.get(unquote(operation).rstrip("/"))
        if not deployment or app is None:
            await send_error(send, NotFound(f"Invalid URL ({scope['method']} {scope['path']})."))
            return
        if scope["method"] != "POST":
            await send_error(send, MethodNotAllowed(scope["method"], scope["path"], ("POST",)))
            return
        await app({**scope, MODEL_SCOPE_KEY: unquote(deployment)}, receive, send)
