"""POST /v1/chat/completions: the request pipeline of DESIGN.md, steps 1 to 9, JSON and SSE.

    auth ─► body ─► parse ─► model route ─► limits ─► adapter.build_chat ─► upstream
         ─► adapter.parse_chat | stream translator ─► client ─► usage record

Streams pass through as they arrive: each upstream read is translated and sent at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from adapters.base import (
    JSON,
    ChatCompletion,
    ChatRequest,
    ProviderError,
    StreamTranslator,
    Unsupported,
    UpstreamRequest,
)
from adapters.sse import DONE_FRAME, SSELineTooLong
from gateway.azure_paths import MODEL_SCOPE_KEY
from gateway.endpoint import Call, ModelEndpoint
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamTimeout,
    internal_error,
    stream_error_frame,
)
from gateway.events import RequestRecord
from gateway.failover import AttemptFailed
from gateway.failures import (
    answer_bytes,
    client_timeout,
    connect_failure,
    failed_attempt,
    incomplete_stream,
    provider_failure,
    provider_retry_after,
    stream_error_with_status,
    timeout_failure,
    unsupported_attempt,
)
from gateway.guardrails import RequestGuard
from gateway.http import JSON_HEADERS, Send, send_bytes
from gateway.opened_stream import OpenedStream
from gateway.request_models import parse_chat
from gateway.routing import resolve_route
from gateway.runtime import Deployment, ModelRoute, Tenant
from gateway.spend import output_upper_bound, prompt_upper_bound
from gateway.upstream import UpstreamAnswerTooLarge, UpstreamConnectError

log = logging.getLogger("gateway")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# The most a stream's last frame ([DONE], or the error event) waits for a client to take it (nginx's default
# send_timeout). A client that stopped reading (its TCP window full) is given up then: its connection is closed
# and its request settled, instead of a task, a connection and a budget reservation held for as long as it keeps
# the socket open. (Every frame before the last waits within the model's timeout_s.)
LAST_FRAME_S = 60.0


class ClientPace:
    """Whether a stream's relay is waiting for its client to take a frame (a client that stopped reading holds
    the provider back): time running out then is the client's failure, not the provider's."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting = False


def choice_texts(body: JSON, part: str) -> list[str]:
    """The text content of each choice's `part`: "message" in a completion, "delta" in a chunk."""
    texts = []
    choices = body.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get(part) if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    return texts


def chat_request(payload: dict[str, Any], tenant: Tenant) -> ChatRequest:
    cap = tenant.max_tokens_per_request
    for name in ("max_completion_tokens", "max_tokens"):
        asked = payload.get(name)
        if isinstance(asked, int) and asked > cap:
            raise InvalidRequest(
                f"'{name}' is {asked}, above this key's limit of {cap} tokens per request.",
                param=name,
                code="max_tokens_exceeded",
            )
    stream = payload.get("stream") is True
    options = payload.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return ChatRequest(body=payload, stream=stream, include_usage=include_usage, default_max_tokens=cap)


class ChatEndpoint(ModelEndpoint):
    name = "chat"

    async def handle(self, call: Call) -> None:
        payload = parse_chat(call.body, call.scope.get(MODEL_SCOPE_KEY))
        call.record.model_requested = payload["model"]
        route = resolve_route(call.runtime, call.identity.tenant, payload["model"])
        req = chat_request(payload, call.identity.tenant)
        call.record.streamed = req.stream
        guard, checked = await self.check_content(call, RequestGuard.check_chat, req.body)
        if checked is not req.body:  # redacted
            req = replace(req, body=checked)
        if call.identity.tenant.log_content:
            call.record.prompt_content = await self.logged_prompt(
                call, guard, orjson.dumps(req.body["messages"]).decode()
            )
        await call.admit(
            self.state.store,
            route.alias,
            prompt_upper_bound(call.body, payload),
            output_upper_bound(payload, req.default_max_tokens, call.runtime.output_limits.get(route.alias)),
        )
        if req.stream:
            await self._stream(req, route, call, guard)
        else:
            await self._json(req, route, call, guard)

    def _build(self, req: ChatRequest, deployment: Deployment) -> UpstreamRequest:
        default_max_tokens = deployment.default_max_tokens(req.default_max_tokens)
        if default_max_tokens != req.default_max_tokens:
            req = replace(req, default_max_tokens=default_max_tokens)
        try:
            return deployment.adapter.build_chat(req, deployment.target)
        except Unsupported as exc:
            raise unsupported_attempt(exc) from None

    async def _json(self, req: ChatRequest, route: ModelRoute, call: Call, guard: RequestGuard) -> None:
        record = call.record

        async def attempt(current: ModelRoute, deployment: Deployment) -> ChatCompletion:
            self.answering(call, current, deployment)
            answer = await self.fetch(self._build(req, deployment), current, deployment, record)
            result = deployment.adapter.parse_chat(answer.status, answer.body)
            if not isinstance(result, ChatCompletion):
                raise failed_attempt(result, deployment, answer.retry_after)
            return result

        result = await self.state.failover.run(route, call.identity.tenant, record, attempt)
        record.usage = result.usage
        answered = result.body.get("model")
        record.response_model = answered if isinstance(answered, str) else None
        if call.identity.tenant.log_content:  # before the placeholders are put back
            record.completion_content = guard.loggable("\n".join(choice_texts(result.body, "message")))
        guard.restore_completion(result.body)
        answer = answer_bytes(result.body)
        record.status, record.http_status = "completed", 200
        call.finish()
        await send_bytes(call.send, 200, answer, JSON_HEADERS + call.reply_headers)

    async def _stream(self, req: ChatRequest, route: ModelRoute, call: Call, guard: RequestGuard) -> None:
        record, send, reply_headers = call.record, call.send, call.reply_headers
        restorer = guard.stream_restore()
        hide_usage = not req.include_usage
        logged: list[str] | None = [] if call.identity.tenant.log_content else None

        async def attempt(current: ModelRoute, deployment: Deployment) -> OpenedStream:
            """Opens the stream and reads it to its first chunk: a failure before then may be retried elsewhere."""
            self.answering(call, current, deployment)
            response = await self.open_upstream(self._build(req, deployment), current, deployment, record)
            if response.status >= 300:
                try:
                    body = await response.read()
                except UpstreamAnswerTooLarge:
                    body = b""  # an error's page that large says nothing more than its status
                finally:
                    response.close()
                raise failed_attempt(
                    deployment.adapter.parse_error(response.status, body), deployment, provider_retry_after(response)
                )
            opened = OpenedStream(response, deployment.adapter.stream_translator(req, deployment.target))
            try:
                await opened.read_first()
                if opened.failed_before_first_chunk:
                    error = opened.translator.error
                    if error is None:  # a 200 with no event (a JSON body, an HTML page): not retried, as the
                        raise AttemptFailed(incomplete_stream(deployment), False, False)  # provider may have worked
                    raise failed_attempt(stream_error_with_status(error), deployment, None)
            except UpstreamConnectError as exc:
                response.close()
                raise AttemptFailed(connect_failure(deployment, exc), True, True) from None
            except SSELineTooLong as exc:
                response.close()
                raise failed_attempt(ProviderError(0, str(exc)), deployment, None) from None
            except BaseException:
                response.close()
                raise
            return opened

        def frames(chunks: list[JSON]) -> list[bytes]:
            out = []
            for chunk in chunks:
                if record.response_model is None and isinstance(chunk.get("model"), str):
                    record.response_model = chunk["model"]
                if hide_usage and "usage" in chunk:
                    if not chunk.get("choices"):
                        continue
                    del chunk["usage"]  # some servers report it on every chunk (the translator has counted it)
                if logged is not None:
                    logged.extend(choice_texts(chunk, "delta"))
                if restorer is not None:
                    restorer.apply(chunk)
                out.append(b"data: " + answer_bytes(chunk) + b"\n\n")
            return out

        started = False
        pace = ClientPace()
        failure: GatewayError | None = None
        handed_on = False  # the response, complete, is the client's to read to its end
        translator: StreamTranslator | None = None
        deployment: Deployment | None = None
        try:
            async with self.state.deadlines.timeout(route.timeouts.total_s):
                opened = await self.state.failover.run(route, call.identity.tenant, record, attempt)
                deployment, translator = call.answered_by, opened.translator
                assert deployment is not None
                try:
                    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + reply_headers})
                    started = True
                    await self._relay(opened, frames, record, send, pace)
                    if translator.done:  # the body's last bytes are read off the request's path, for the pool
                        self.state.client.drain_later(opened.response)
                        handed_on = True
                finally:
                    if not handed_on:
                        opened.response.close()
        except TimeoutError:
            if deployment is None:
                raise UpstreamTimeout("No provider answered in time.") from None
            # the time ran out while the client was not taking what the provider had sent: not the provider's fault
            failure = client_timeout(route.timeouts.total_s) if pace.waiting else timeout_failure(deployment)
        except UpstreamConnectError as exc:
            assert deployment is not None
            failure = connect_failure(deployment, exc)
        except SSELineTooLong as exc:
            assert deployment is not None
            failure = provider_failure(ProviderError(0, str(exc)), deployment)
        except GatewayError as exc:  # (a chunk the provider nested too deeply to pass on)
            if not started:
                raise
            failure = exc
        except Exception:
            if not started:
                raise  # answered as any other error, before a status line went out
            log.exception("the stream of request %s failed in the gateway", record.request_id)
            failure = internal_error()  # the client still gets a last error event, not a cut connection
        finally:
            if translator is not None:  # what was reported so far is kept, even if the client left
                record.usage = translator.usage
                record.usage_partial = not (translator.done or translator.usage_final)
        assert translator is not None and deployment is not None
        if failure is None and translator.error is not None:
            failure = provider_failure(translator.error, deployment)
        if failure is None and not translator.done:
            failure = incomplete_stream(deployment)
        if failure is not None and not started:
            raise failure
        if logged is not None:
            record.completion_content = guard.loggable("".join(logged))
        if failure is not None:
            record.status, record.http_status = "failed", 200
            record.error_type, record.error_code = failure.type, failure.code
            record.error_code_relayed = failure.relayed_code
            last = stream_error_frame(failure)
        else:
            record.status, record.http_status = "completed", 200
            last = DONE_FRAME
        call.finish()
        sending = send({"type": "http.response.body", "body": last, "more_body": False})
        if not await self.last_words(call.watch, sending, LAST_FRAME_S):
            log.warning("the client of request %s stopped reading its stream; it is given up", record.request_id)

    @staticmethod
    async def _relay(
        opened: OpenedStream,
        frames: Callable[[list[JSON]], list[bytes]],
        record: RequestRecord,
        send: Send,
        pace: ClientPace,
    ) -> None:
        """Upstream events ─► client frames, one send per upstream read (never batched further), starting with
        what the attempt read ahead."""
        translator = opened.translator

        async def forward(out: list[bytes]) -> None:
            if out:
                if record.first_token_s is None:
                    record.first_token_s = time.perf_counter() - record.started_clock
                pace.waiting = True
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                pace.waiting = False

        await forward(frames(opened.pending))
        while not (translator.error is not None or translator.done or opened.ended):
            chunks = await opened.read()
            if chunks is None:
                break
            await forward(frames(chunks))
        if translator.error is not None:
            return
        if translator.done:
            return  # (the caller reads the body to its end once the client has its last frame)
        await forward(frames(opened.flush() + translator.finish()))
