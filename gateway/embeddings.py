"""POST /v1/embeddings: auth ─► parse ─► route ─► adapter ─► upstream ─► OpenAI embeddings JSON."""

from __future__ import annotations

import asyncio
import time

import orjson

from adapters.base import Embeddings, EmbeddingsRequest, LocalAdapter, Unsupported
from gateway.auth import authenticate
from gateway.azure_paths import MODEL_SCOPE_KEY
from gateway.disconnect import DisconnectWatch
from gateway.errors import GatewayError, UnsupportedParameter
from gateway.events import RequestRecord
from gateway.failures import connect_failure, provider_failure, timeout_failure
from gateway.http import JSON_HEADERS, ClientGone, Receive, Scope, Send, header, read_body, send_bytes, send_error
from gateway.request_models import parse_embeddings
from gateway.routing import new_request_id, resolve_route
from gateway.state import GatewayState
from gateway.upstream import UpstreamConnectError


class EmbeddingsEndpoint:
    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        runtime = state.runtime
        record = RequestRecord(request_id=new_request_id(), endpoint="embeddings", started_at=time.time())
        reply_headers = [(b"x-request-id", record.request_id.encode())]
        watch = DisconnectWatch(receive)
        send = watch.wrap_send(send)
        try:
            identity = authenticate(scope, runtime)
            record.tenant, record.key_id = identity.tenant.name, identity.key_id
            body = await read_body(receive, runtime.config.server.max_body_bytes, header(scope, b"content-length"))
            payload = parse_embeddings(body, scope.get(MODEL_SCOPE_KEY))
            record.model_requested = payload["model"]
            route = resolve_route(runtime, identity.tenant, payload["model"])
            deployment = route.pick(state.rng)
            record.deployment, record.provider = deployment.label, deployment.target.provider
            record.attempts.append(deployment.label)
            try:
                upstream_request = deployment.adapter.build_embeddings(EmbeddingsRequest(payload), deployment.target)
            except Unsupported as exc:
                raise UnsupportedParameter(exc.message, param=exc.param) from None
            local = deployment.adapter if isinstance(deployment.adapter, LocalAdapter) else None
            async with watch:
                try:
                    async with asyncio.timeout(route.timeouts.total_s):
                        response = await state.client.send(upstream_request, route.timeouts, local)
                        try:
                            raw = await response.read()
                        finally:
                            response.close()
                except TimeoutError:
                    raise timeout_failure(deployment) from None
                except UpstreamConnectError as exc:
                    raise connect_failure(deployment, str(exc)) from None
                result = deployment.adapter.parse_embeddings(response.status, raw)
                if not isinstance(result, Embeddings):
                    raise provider_failure(result, deployment, response.header("retry-after"))
                record.usage = result.usage
                record.status, record.http_status = "completed", 200
                await send_bytes(send, 200, orjson.dumps(result.body), JSON_HEADERS + reply_headers)
            if watch.disconnected:
                record.status, record.http_status = "cancelled", 499
        except GatewayError as err:
            record.http_status, record.error_type = err.status, err.type
            record.status = "blocked" if err.status in (401, 403) else "failed"
            await send_error(send, err, reply_headers)
        except ClientGone:
            record.status, record.http_status = "cancelled", 499
        finally:
            record.latency_s = time.time() - record.started_at
            state.events.emit(record)
