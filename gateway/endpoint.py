"""What every model endpoint (chat, embeddings) does around its own work.

record ─► auth ─► bounded body ─► [endpoint's handle(), cancelled if the client leaves]
       ─► errors rendered once ─► exactly one RequestRecord emitted, whatever happened
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from adapters.base import LocalAdapter, UpstreamRequest
from gateway import spend
from gateway.auth import authenticate
from gateway.disconnect import DisconnectWatch
from gateway.errors import GatewayError, RequestTimeout
from gateway.events import RequestRecord
from gateway.failover import AttemptFailed
from gateway.failures import connect_failure, timeout_failure
from gateway.guardrails import RequestGuard
from gateway.http import ClientGone, Receive, Scope, Send, header, read_body, send_error
from gateway.routing import new_request_id
from gateway.runtime import Deployment, KeyIdentity, ModelRoute, Runtime
from gateway.spend import Reservation, admit
from gateway.state import GatewayState
from gateway.upstream import UpstreamConnectError, UpstreamResponse
from policies.budgets import ReservationStore


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
    reservation: Reservation | None = None
    answered_by: Deployment | None = None

    async def admit(self, store: ReservationStore, model: str, prompt_tokens: int, output_tokens: int) -> None:
        """Reserve the worst case against the tenant's budgets and rate limits (429 when it does not fit)."""
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
    retry_after: str | None


@contextmanager
def guarded(call: Call) -> Iterator[RequestGuard]:
    """The tenant's content policies for this request; verdicts reach the record and the response
    headers whether the request passes or is blocked."""
    guard = call.identity.tenant.guard.start()
    try:
        yield guard
    finally:
        call.record.injection_score = guard.injection_score
        call.record.injection_signals = guard.injection_signals
        call.record.pii_counts = guard.pii_counts
        call.reply_headers.extend(guard.response_headers())


class ModelEndpoint(ABC):
    name: str

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    @abstractmethod
    async def handle(self, call: Call) -> None:
        """Parse, route, call the provider and answer; raise GatewayError for anything that fails."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        runtime = state.runtime
        record = RequestRecord(request_id=new_request_id(), endpoint=self.name, started_at=time.time())
        reply_headers = [(b"x-request-id", record.request_id.encode())]
        watch = DisconnectWatch(receive)
        send = watch.wrap_send(send)
        call: Call | None = None
        try:
            identity = authenticate(scope, runtime)
            record.tenant, record.key_id = identity.tenant.name, identity.key_id
            server = runtime.config.server
            try:
                async with asyncio.timeout(server.body_timeout_s):
                    body = await read_body(receive, server.max_body_bytes, header(scope, b"content-length"))
            except TimeoutError:
                raise RequestTimeout(f"The request body did not arrive within {server.body_timeout_s:g} s.") from None
            call = Call(scope, runtime, identity, body, record, send, reply_headers)
            async with watch:
                await self.handle(call)
            if watch.disconnected:
                record.status, record.http_status = "cancelled", 499
        except GatewayError as err:
            record.http_status, record.error_type = err.status, err.type
            record.status = "blocked" if err.status in (401, 403) else "failed"
            await send_error(send, err, reply_headers)
        except ClientGone:
            record.status, record.http_status = "cancelled", 499
        finally:
            if call is not None and call.reservation is not None:
                # shielded: a cancelled request still turns its reservation into what it really spent
                await asyncio.shield(spend.settle(state.store, call.reservation, record.usage, call.answered_by))
            record.latency_s = time.time() - record.started_at
            state.events.emit(record)

    @staticmethod
    def answering(call: Call, deployment: Deployment) -> None:
        """The deployment now being tried is the one that answers, unless it fails."""
        call.answered_by = deployment
        call.record.deployment, call.record.provider = deployment.label, deployment.target.provider

    async def fetch(self, request: UpstreamRequest, route: ModelRoute, deployment: Deployment) -> FetchedAnswer:
        """Send `request` and read the whole answer within the route's total timeout (one attempt)."""
        try:
            async with asyncio.timeout(route.timeouts.total_s):
                response = await self.open_upstream(request, route, deployment)
                try:
                    body = await response.read()
                except UpstreamConnectError as exc:
                    raise AttemptFailed(connect_failure(deployment, str(exc)), True, True) from None
                finally:
                    response.close()
        except TimeoutError:
            raise AttemptFailed(timeout_failure(deployment), True, True) from None
        return FetchedAnswer(response.status, body, response.header("retry-after"))

    async def open_upstream(
        self, request: UpstreamRequest, route: ModelRoute, deployment: Deployment
    ) -> UpstreamResponse:
        """Send `request`; connect and first-byte failures are failed attempts."""
        local = deployment.adapter if isinstance(deployment.adapter, LocalAdapter) else None
        try:
            return await self.state.client.send(request, route.timeouts, local)
        except TimeoutError:
            raise AttemptFailed(timeout_failure(deployment), True, True) from None
        except UpstreamConnectError as exc:
            raise AttemptFailed(connect_failure(deployment, str(exc)), True, True) from None
