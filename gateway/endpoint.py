"""What every model endpoint (chat, embeddings) does around its own work.

record ─► auth ─► bounded body ─► [endpoint's handle(), cancelled if the client leaves]
       ─► errors rendered once ─► exactly one RequestRecord emitted, whatever happened

The record is emitted (journaled on disk, counted in the metrics) by `Call.finish`, which runs just
before the response's last bytes are sent: a client that has its whole answer can count on its usage
event surviving even a SIGKILL a moment later. A request that never answers is finished at its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar

from adapters.base import JSON, LocalAdapter, UpstreamRequest
from gateway import spend
from gateway.auth import authenticate
from gateway.content_encoding import decoded_body
from gateway.disconnect import DisconnectWatch
from gateway.errors import (
    AuthError,
    GatewayError,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
    internal_error,
    stream_error_frame,
)
from gateway.events import RequestRecord
from gateway.failover import AttemptFailed
from gateway.failures import connect_failure, provider_retry_after, timeout_failure, unreadable_answer
from gateway.guardrails import RequestGuard, check_off_loop
from gateway.http import (
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    header_values,
    new_request_id,
    read_body,
    send_error,
)
from gateway.policy_thread import OFF_LOOP_BYTES
from gateway.runtime import Deployment, KeyIdentity, ModelRoute, Runtime
from gateway.spend import Reservation, admit
from gateway.state import GatewayState
from gateway.tracing import Tracing
from gateway.upstream import MAX_ANSWER_BYTES, UpstreamAnswerTooLarge, UpstreamConnectError, UpstreamResponse
from policies.budgets import ReservationStore

log = logging.getLogger("gateway")

SERVER_SHUTDOWN = "server_shutdown"  # a request's error code when the drain timeout cut it
LAST_WORD_S = 1.0  # the most the client of a request the drain timeout cut is waited on to take its error


@dataclass(slots=True)
class Call:
    """One request as an endpoint's `handle` sees it."""

    scope: Scope
    runtime: Runtime
    identity: KeyIdentity
    body: bytes
    record: RequestRecord
    send: Send
    reply_headers: list[tuple[bytes, bytes]]
    finish: Callable[[], None]  # emits the record; call it right before the response's last bytes
    watch: DisconnectWatch  # the client's connection (its `hang_up` gives up a client that stopped reading)
    tracing: Tracing = field(default_factory=Tracing)
    reservation: Reservation | None = None
    answered_by: Deployment | None = None

    async def admit(self, store: ReservationStore, model: str, prompt_tokens: int, output_tokens: int) -> None:
        """Reserve the worst case against the tenant's budgets and rate limits (429 when it does not fit)."""
        if not self.identity.tenant.limits:
            return
        with self.tracing.span("gateway.policy.budget"):
            self.reservation = await admit(
                store,
                self.identity.tenant,
                self.record.request_id,
                model,
                self.runtime.worst_prices.get(model),
                prompt_tokens,
                output_tokens,
            )


@dataclass(frozen=True, slots=True)
class FetchedAnswer:
    status: int
    body: bytes
    retry_after: float | None  # seconds, as the provider asked (`provider_retry_after`)


class Guarded:
    """The tenant's content policies for this request; verdicts reach the record and the response
    headers whether the request passes or is blocked. (A class, not a @contextmanager generator: it is
    entered once per request.)"""

    __slots__ = ("_call", "_guard", "_span")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._guard = call.identity.tenant.guard.start()
        self._span = call.tracing.span("gateway.policy.guardrails")

    def __enter__(self) -> RequestGuard:
        self._span.__enter__()
        return self._guard

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        guard, call = self._guard, self._call
        try:
            self._span.__exit__(exc_type, exc, tb)
        finally:
            call.record.injection_score = guard.injection_score
            call.record.injection_signals = guard.injection_signals
            call.record.pii_counts = guard.pii_counts
            call.reply_headers.extend(guard.response_headers())


POLICY_OF_CODE = {
    "prompt_injection_detected": "injection",
    "pii_detected": "pii",
    "budget_exceeded": "budget",
    "rate_limit_exceeded": "rate_limit",
    "model_not_allowed": "model_access",
    "price_unknown": "budget",
}


def blocked_by(err: GatewayError) -> str:
    """Which policy refused the request: a bounded name for the metrics and the event."""
    if isinstance(err, AuthError):
        return "auth"
    return POLICY_OF_CODE.get(err.code or "", "other")


class ModelEndpoint(ABC):
    name: str
    max_answer_bytes: ClassVar[int] = MAX_ANSWER_BYTES  # a whole answer read from the provider, decompressed

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def check_content(
        self, call: Call, check: Callable[[RequestGuard, JSON], JSON], payload: JSON
    ) -> tuple[RequestGuard, JSON]:
        """The tenant's content policies over `payload` (`check`: `RequestGuard.check_chat`, `.check_embeddings`),
        and the body to send on: on the loop, or in the policy thread for a body above OFF_LOOP_BYTES (which bounds
        its texts' length)."""
        with Guarded(call) as guard:
            if len(call.body) > OFF_LOOP_BYTES:
                return guard, await check_off_loop(self.state.policy_thread, guard, check, payload)
            return guard, check(guard, payload)

    async def logged_prompt(self, call: Call, guard: RequestGuard, text: str) -> str:
        """`text`, the request's content, as `log_content` keeps it (redacted): off the loop, as its checks, for a
        large body."""
        if len(call.body) > OFF_LOOP_BYTES:
            return await self.state.policy_thread.run(guard.loggable, text)
        return guard.loggable(text)

    @abstractmethod
    async def handle(self, call: Call) -> None:
        """Parse, route, call the provider and answer; raise GatewayError for anything that fails."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        record = RequestRecord(
            request_id=new_request_id(), endpoint=self.name, started_at=time.time(), started_clock=time.perf_counter()
        )
        with state.tracing.request(scope, self.name) as span:
            try:
                await self._serve(scope, receive, send, record)
            finally:
                state.tracing.finish(span, record, state.runtime.model_names)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        state = self.state
        runtime = state.runtime
        reply_headers = [(b"x-request-id", record.request_id.encode())]
        watch = DisconnectWatch(receive, send)
        send = watch.send
        call: Call | None = None

        def finish() -> None:
            self.emit(runtime, record, call.answered_by if call is not None else None)

        try:
            identity = authenticate(scope, runtime)
            record.tenant, record.key_id = identity.tenant.name, identity.key_id
            server = runtime.config.server
            try:
                async with state.deadlines.timeout(server.body_timeout_s):
                    body = await read_body(receive, server.max_body_bytes, header(scope, b"content-length"))
            except TimeoutError:
                raise RequestTimeout(f"The request body did not arrive within {server.body_timeout_s:g} s.") from None
            codings = header_values(scope, b"content-encoding")  # several lines are one list (RFC 9110 5.3)
            body = decoded_body(body, b", ".join(codings) if codings else None, server.max_body_bytes)
            call = Call(scope, runtime, identity, body, record, send, reply_headers, finish, watch, state.tracing)
            async with watch:
                await self.handle(call)
            if watch.disconnected and not record.emitted:
                record.status, record.http_status = "cancelled", 499
        except GatewayError as err:
            record.http_status, record.error_type, record.error_code = err.status, err.type, err.code
            record.error_code_relayed = err.relayed_code
            if isinstance(err, (AuthError, PermissionDenied, RateLimited)):
                record.status, record.blocked_by = "blocked", blocked_by(err)
            else:
                record.status = "failed"
            finish()
            await send_error(send, err, reply_headers)
        except ClientGone:
            if not record.emitted:
                record.status, record.http_status = "cancelled", 499
        except asyncio.CancelledError:
            # Cancelled by the server, not by its client (DisconnectWatch swallows its own cancel): the drain
            # timeout ran out. A stream cut that way was answered 200 and may have cost tokens it never reported.
            cut = not record.emitted
            if cut:
                record.status, record.error_type, record.error_code = "failed", "server_error", SERVER_SHUTDOWN
                record.http_status = 200 if watch.started else 503
            finish()
            if not (cut and not watch.disconnected and await self.tell_cut(watch, record, reply_headers)):
                raise
        except Exception:  # a bug: the record and the answer still say what happened, with the request id
            internal = internal_error()
            if not record.emitted:  # (a stream that started was answered 200, whatever came after)
                record.status, record.error_type = "failed", internal.type
                record.http_status = 200 if watch.started else internal.status
            finish()
            if watch.started:
                raise  # a second status line cannot be sent: the error boundary logs it and ends the connection
            log.exception("unhandled error in request %s", record.request_id)
            await send_error(send, internal, reply_headers)
        finally:
            finish()  # a no-op when the answer already finished it
            if call is not None and call.reservation is not None:
                settling = spend.settle(
                    state.store,
                    call.reservation,
                    record.usage,
                    call.answered_by,
                    spend.usage_unreported(record),
                )
                # shielded when it waits on I/O: a cancelled request still turns its reservation into what it spent
                await (settling if state.store.settles_in_process else asyncio.shield(settling))
            call = None  # `call` holds `finish`, whose closure holds `call`: no cycle left for the collector

    async def tell_cut(
        self, watch: DisconnectWatch, record: RequestRecord, reply_headers: list[tuple[bytes, bytes]]
    ) -> bool:
        """The drain timeout cut the request: its client is told so (a 503 server_shutdown, or a stream's last
        error event), as for any other failure, instead of the server's plain-text 500 or a connection closed
        mid-stream. The cancel is then the request's own end, taken back (no traceback: a planned stop, not a
        bug). False, and the cancel stands, when nothing can be said (a JSON answer already started)."""
        task = asyncio.current_task()
        if task is None or (watch.started and not record.streamed):
            return False
        task.uncancel()
        cut = ServiceUnavailable(
            "The gateway is shutting down, and this request did not finish within its drain timeout.",
            code=SERVER_SHUTDOWN,
        )
        if watch.started:
            sending = watch.send({"type": "http.response.body", "body": stream_error_frame(cut), "more_body": False})
        else:
            sending = send_error(watch.send, cut, reply_headers)
        await self.last_words(watch, sending, LAST_WORD_S)
        return True

    async def last_words(self, watch: DisconnectWatch, sending: Awaitable[None], within_s: float) -> bool:
        """Awaits `sending`, a response's last bytes, for at most `within_s`; False when the client took nothing
        by then (it stopped reading) and was hung up on: the server would close its connection only once it had
        taken what is buffered, for as long as it keeps its socket open."""
        try:
            async with self.state.deadlines.timeout(within_s):
                await sending
        except TimeoutError:
            await watch.hang_up()
            return False
        return True

    def emit(self, runtime: Runtime, record: RequestRecord, answered_by: Deployment | None) -> None:
        """The record's final numbers, then out: journal and queue, metrics. Once per request."""
        if record.emitted:
            return
        record.emitted = True
        record.latency_s = time.perf_counter() - record.started_clock
        usage = record.usage
        if spend.usage_unreported(record):
            record.cost_usd = None  # unknown (budgets are charged the worst case)
        elif usage is None or usage.total_tokens == 0:
            record.cost_usd = 0.0  # nothing was spent, whatever the price
        elif answered_by is not None and answered_by.price is not None:
            record.cost_usd = answered_by.price.cost(usage)
            record.price_version = answered_by.price.version
        state = self.state
        with state.tracing.span("gateway.usage_event"):
            state.events.emit(record)
        state.metrics.observe(record, runtime.model_names)
        if runtime.config.server.request_log:
            state.request_log.write(record.log_fields())

    @staticmethod
    def answering(call: Call, route: ModelRoute, deployment: Deployment) -> None:
        """The deployment now being tried is the one that answers, unless it fails."""
        call.answered_by = deployment
        record = call.record
        record.model_alias, record.deployment = route.alias, deployment.label
        record.provider, record.upstream_model = deployment.target.provider, deployment.target.model

    async def fetch(
        self, request: UpstreamRequest, route: ModelRoute, deployment: Deployment, record: RequestRecord
    ) -> FetchedAnswer:
        """Send `request` and read the whole answer (one attempt). The route's total timeout is the
        failover's, around every attempt together; the first byte's is the upstream client's."""
        response = await self.open_upstream(request, route, deployment, record)
        try:
            body = await response.read(self.max_answer_bytes)
        except UpstreamConnectError as exc:
            raise AttemptFailed(connect_failure(deployment, exc), True, True) from None
        except UpstreamAnswerTooLarge as exc:  # the same again elsewhere is likely: not retried
            raise AttemptFailed(unreadable_answer(deployment, str(exc)), False, False) from None
        finally:
            response.close()
        return FetchedAnswer(response.status, body, provider_retry_after(response))

    async def open_upstream(
        self, request: UpstreamRequest, route: ModelRoute, deployment: Deployment, record: RequestRecord
    ) -> UpstreamResponse:
        """Send `request`; connect and first-byte failures are failed attempts."""
        local = deployment.adapter if isinstance(deployment.adapter, LocalAdapter) else None
        self.state.tracing.inject(request.headers)  # the attempt's span, for a provider that traces
        try:
            client = self.state.client
            return await client.send(request, route.timeouts, local, deployment.transport, record.provider_reached)
        except TimeoutError:
            raise AttemptFailed(timeout_failure(deployment), True, True) from None
        except UpstreamConnectError as exc:
            raise AttemptFailed(connect_failure(deployment, exc), True, True) from None
