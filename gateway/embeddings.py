"""POST /v1/embeddings: parse ─► route ─► adapter ─► upstream ─► OpenAI embeddings JSON."""

from __future__ import annotations

import orjson

from adapters.base import Embeddings, EmbeddingsRequest, Unsupported
from gateway.azure_paths import MODEL_SCOPE_KEY
from gateway.endpoint import Call, ModelEndpoint
from gateway.failures import answer_bytes, failed_attempt, unsupported_attempt
from gateway.guardrails import RequestGuard
from gateway.http import JSON_HEADERS, send_bytes
from gateway.request_models import parse_embeddings
from gateway.routing import resolve_route
from gateway.runtime import Deployment, ModelRoute

# 2,048 inputs of 3,072 dimensions as JSON floats are some 125 MB: a whole batch is a legitimate answer
EMBEDDINGS_ANSWER_BYTES = 256 * 1024 * 1024


class EmbeddingsEndpoint(ModelEndpoint):
    name = "embeddings"
    max_answer_bytes = EMBEDDINGS_ANSWER_BYTES

    async def handle(self, call: Call) -> None:
        payload = parse_embeddings(call.body, call.scope.get(MODEL_SCOPE_KEY))
        call.record.model_requested = payload["model"]
        route = resolve_route(call.runtime, call.identity.tenant, payload["model"])
        guard, payload = await self.check_content(call, RequestGuard.check_embeddings, payload)
        if call.identity.tenant.log_content:
            call.record.prompt_content = await self.logged_prompt(
                call, guard, orjson.dumps(payload.get("input")).decode()
            )
        await call.admit(self.state.store, route.alias, len(call.body), 0)

        async def attempt(current: ModelRoute, deployment: Deployment) -> Embeddings:
            self.answering(call, current, deployment)
            try:
                request = deployment.adapter.build_embeddings(EmbeddingsRequest(payload), deployment.target)
            except Unsupported as exc:
                raise unsupported_attempt(exc) from None
            answer = await self.fetch(request, current, deployment, call.record)
            result = deployment.adapter.parse_embeddings(answer.status, answer.body)
            if not isinstance(result, Embeddings):
                raise failed_attempt(result, deployment, answer.retry_after)
            return result

        result = await self.state.failover.run(route, call.identity.tenant, call.record, attempt)
        call.record.usage = result.usage
        answered = result.body.get("model")
        call.record.response_model = answered if isinstance(answered, str) else None
        answer = answer_bytes(result.body)
        call.record.status, call.record.http_status = "completed", 200
        call.finish()
        await send_bytes(call.send, 200, answer, JSON_HEADERS + call.reply_headers)
