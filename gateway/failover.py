"""Which deployment serves an attempt, and what happens when it fails: retries, circuits, fallbacks.

    for the model, then each of its fallbacks (in order, if the tenant may use them):
        attempt on a weighted choice among deployments whose circuit lets a call through
        (untried ones first); on a retryable failure retry, with tenacity: exponential backoff with
        jitter, never sooner than the provider's Retry-After, at most `retries` times per model, and
        only while the retry budget allows
    a failure caused by the request itself (a 4xx) ends everything at once; a deployment whose API cannot
    express the request (Unsupported) is passed over at once for another deployment of the model, or
    else for the next fallback, without drawing on the retry budget, and the answer is then the last
    real failure, if any, rather than that "unsupported"; so is a model whose circuits are all open
    (nothing was sent: its fallback is the request's first attempt, not a retry)

The retry budget makes retries at most RETRY_RATIO (10%) of the client's requests plus a small burst,
so a failing provider sees at most about 1.1-1.2× the traffic, not a storm. Fallback attempts draw on
it too. It is per process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from adapters.base import ProviderError
from gateway.deadlines import Deadline, DeadlineWheel
from gateway.errors import GatewayError, ServiceUnavailable, UpstreamTimeout
from gateway.events import RequestRecord
from gateway.instruments import RequestMetrics
from gateway.runtime import Deployment, ModelRoute, Tenant, weighted_choice
from gateway.tracing import Tracing
from policies.circuit import CircuitBreaker, CircuitRegistry

T = TypeVar("T")
RETRY_RATIO = 0.1
RETRY_BURST = 5.0
MAX_RETRY_WAIT_S = 5.0  # a longer Retry-After is passed on (to a fallback, or the client) instead of waited out


@dataclass(slots=True)
class AttemptFailed(Exception):
    """One attempt on one deployment failed."""

    error: GatewayError
    retryable: bool  # the same request may succeed on another try (429, 5xx, timeout, connection)
    unhealthy: bool  # counts against the deployment's circuit (5xx, timeout, connection, our credentials)
    retry_after: float | None = None
    unsupported: bool = False  # this deployment's API cannot express the request; another's may

    @property
    def fallback_may_help(self) -> bool:
        """False when the request itself is at fault (a 4xx other than 429): no model can serve it."""
        return self.retryable or self.unhealthy or self.unsupported or self.error.status in (429, 503)


def is_out_of_credit(err: ProviderError) -> bool:
    """The gateway's own account with the provider cannot pay: Anthropic's (and OpenRouter's) 402, OpenAI's 429
    `insufficient_quota`, and any other 4xx an adapter read as that (Anthropic's 400 for an account out of credit or
    past a spend limit). Not the caller's doing, nor a rate limit that waiting would lift."""
    return err.status == 402 or (400 <= err.status < 500 and err.code == "insufficient_quota")


def classify(err: ProviderError) -> tuple[bool, bool]:
    """(retryable, unhealthy) for a provider's error status."""
    status = err.status
    if is_out_of_credit(err):
        return True, True  # the gateway's account: another provider's may pay
    if status == 429:
        return True, False
    if status in (401, 403, 404, 408) or status >= 500 or status == 0:
        return True, True  # our credentials, our model name, or the provider itself (408: it timed out): try elsewhere
    return False, False  # the request's own fault (400, 413, 422 ...): trying again cannot help


@dataclass(frozen=True, slots=True)
class _RetryWhileLeft:
    """tenacity's `retry`, which it asks before it checks `stop`: once the model has no retry left, `should_retry`
    (which spends the retry budget) is not asked, so a request pays for the retries it makes, not one more."""

    retries: int
    should_retry: Callable[[BaseException | None], bool]

    def __call__(self, state: RetryCallState) -> bool:
        failed = state.outcome.exception() if state.outcome is not None else None
        return state.attempt_number < self.retries and self.should_retry(failed)


@dataclass(slots=True)
class RetryBudget:
    ratio: float = RETRY_RATIO
    burst: float = RETRY_BURST
    tokens: float = RETRY_BURST

    def on_request(self) -> None:
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


FIRST_BACKOFF_S = 0.1


def _first_wait(failed: AttemptFailed) -> float:
    """The pause before the first retry: the backoff's first step with jitter, or Retry-After."""
    backoff = FIRST_BACKOFF_S + random.uniform(0, FIRST_BACKOFF_S)
    return max(backoff, failed.retry_after or 0.0)


class _RetryAfterOrBackoff(wait_base):
    """Exponential backoff with jitter, but never less than what the provider asked for."""

    def __init__(self) -> None:
        self._backoff = wait_exponential_jitter(multiplier=2 * FIRST_BACKOFF_S, max=2.0, jitter=FIRST_BACKOFF_S)

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = float(self._backoff(retry_state))
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        if isinstance(failure, AttemptFailed) and failure.retry_after is not None:
            return max(backoff, failure.retry_after)
        return backoff


@dataclass
class Failover:
    circuits: CircuitRegistry = field(default_factory=CircuitRegistry)
    budget: RetryBudget = field(default_factory=RetryBudget)
    rng: random.Random = field(default_factory=random.Random)
    metrics: RequestMetrics | None = None
    tracing: Tracing = field(default_factory=Tracing)
    deadlines: DeadlineWheel = field(default_factory=DeadlineWheel)

    def routes(self, route: ModelRoute, tenant: Tenant) -> list[ModelRoute]:
        chain = [route]
        for alias in route.fallbacks:
            fallback = tenant.routes.get(alias)
            if fallback is not None and fallback.deployments and fallback not in chain:
                chain.append(fallback)
        return chain

    def _breaker(self, route: ModelRoute, deployment: Deployment) -> CircuitBreaker:
        return self.circuits.get(deployment.label, route.circuit_failures, route.circuit_cooldown_s)

    def _choose(self, route: ModelRoute, tried: set[str], unable: set[str]) -> tuple[Deployment, CircuitBreaker] | None:
        """A weighted pick among deployments whose circuit allows a call, untried ones first, never one whose
        API cannot express the request (`unable`)."""
        able = [d for d in route.deployments if d.label not in unable] if unable else list(route.deployments)
        for pool in ([d for d in able if d.label not in tried], able):
            while pool:
                deployment = weighted_choice(pool, self.rng)
                breaker = self._breaker(route, deployment)
                if breaker.allow():
                    return deployment, breaker
                pool.remove(deployment)
        return None

    def _next_probe_in(self, route: ModelRoute, unable: set[str]) -> float:
        """Seconds until a circuit of the route lets a call through again (its Retry-After, which SDKs wait out
        when it is at most a minute); 0 when a probe is in flight already, whose verdict comes soon."""
        waits = [self._breaker(route, d).retry_in_s for d in route.deployments if d.label not in unable]
        return min(waits, default=0.0)

    async def run(
        self,
        route: ModelRoute,
        tenant: Tenant,
        record: RequestRecord,
        attempt: Callable[[ModelRoute, Deployment], Awaitable[T]],
    ) -> T:
        """Runs `attempt` until one succeeds; raises the last failure's GatewayError otherwise. The model's
        `timeout_s` bounds the whole: every attempt, backoff and fallback together."""
        self.budget.on_request()
        try:
            async with self.deadlines.timeout(route.timeouts.total_s) as deadline:
                return await self._run(route, tenant, record, attempt, deadline)
        except TimeoutError:
            raise UpstreamTimeout(
                f"No provider answered for '{route.alias}' within {route.timeouts.total_s:g} s."
            ) from None

    async def _attempt_able(
        self,
        current: ModelRoute,
        tried: set[str],
        unable: set[str],
        record: RequestRecord,
        attempt: Callable[[ModelRoute, Deployment], Awaitable[T]],
        deadline: Deadline,
    ) -> T:
        """An attempt; when the chosen deployment's API cannot express the request, another deployment of the
        model that may is tried at once (no retry: nothing was sent)."""
        while True:
            try:
                return await self._attempt(current, tried, unable, record, attempt, deadline)
            except AttemptFailed as failed:
                if not failed.unsupported or all(d.label in unable for d in current.deployments):
                    raise

    async def _attempt(
        self,
        current: ModelRoute,
        tried: set[str],
        unable: set[str],
        record: RequestRecord,
        attempt: Callable[[ModelRoute, Deployment], Awaitable[T]],
        deadline: Deadline,
    ) -> T:
        """One attempt on a deployment the circuits allow, with the verdict reported to its breaker."""
        chosen = self._choose(current, tried, unable)
        if chosen is None:
            raise AttemptFailed(
                ServiceUnavailable(
                    f"Every deployment of '{current.alias}' is failing; retry later.",
                    code="upstream_unavailable",
                    retry_after=self._next_probe_in(current, unable),
                ),
                retryable=False,
                unhealthy=False,
            )
        deployment, breaker = chosen
        if tried and self.metrics is not None and not tried <= unable:  # (passing over is no retry)
            self.metrics.retries(current.alias).inc()
        tried.add(deployment.label)
        record.attempts.append(deployment.label)
        operation = "embeddings" if record.endpoint == "embeddings" else "chat"
        outcome = "cancelled"
        started = time.perf_counter()
        with self.tracing.attempt(
            operation, deployment.adapter.gen_ai_system, deployment.target.model, deployment.label
        ) as span:
            record.provider_at_work = False  # until its request goes out (RequestRecord.provider_reached)
            try:
                result = await attempt(current, deployment)
                outcome = "ok"
            except AttemptFailed as failed:
                record.provider_at_work = False  # (a client leaving in the backoff owes it nothing)
                outcome = "error"
                if span is not None:
                    span.set_attribute("error.type", failed.error.code or failed.error.type)
                if failed.unsupported:
                    unable.add(deployment.label)
                if failed.unhealthy:
                    breaker.record_failure()
                else:
                    breaker.release()
                if failed.retry_after is not None and failed.retry_after > MAX_RETRY_WAIT_S:
                    failed.retryable = False  # too long to wait here: a fallback, or the client, may
                raise
            except BaseException:
                if deadline.expired:  # the model's timeout_s ran out while the provider worked: a timeout
                    outcome = "error"
                    self.tracing.failed(span, UpstreamTimeout.code)
                    breaker.record_failure()
                else:  # the client left, or the drain cut it: no verdict on the provider
                    breaker.release()
                raise
            finally:
                if self.metrics is not None:
                    self.metrics.attempt(
                        deployment.target.provider, deployment.label, outcome, time.perf_counter() - started
                    )
        breaker.record_success()
        return result

    async def _run(
        self,
        route: ModelRoute,
        tenant: Tenant,
        record: RequestRecord,
        attempt: Callable[[ModelRoute, Deployment], Awaitable[T]],
        deadline: Deadline,
    ) -> T:
        last: GatewayError | None = None
        passed_over = False  # nothing was sent on the route before (circuits open, API unable): the next is no retry

        def should_retry(exc: BaseException | None) -> bool:
            return isinstance(exc, AttemptFailed) and exc.retryable and self.budget.try_spend()

        for index, current in enumerate(self.routes(route, tenant)):
            if index > 0:
                if not passed_over and not self.budget.try_spend():
                    break  # a fallback is another attempt: the retry budget decides
                if self.metrics is not None:
                    self.metrics.fallbacks(route.alias, current.alias).inc()
            record.fallback_path.append(current.alias)
            tried: set[str] = set()
            unable: set[str] = set()
            try:
                try:  # the first attempt goes straight through: tenacity only once something failed
                    return await self._attempt_able(current, tried, unable, record, attempt, deadline)
                except AttemptFailed as failed:
                    if current.retries == 0 or not should_retry(failed):
                        raise
                    await asyncio.sleep(_first_wait(failed))
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(current.retries),
                    wait=_RetryAfterOrBackoff(),
                    retry=_RetryWhileLeft(current.retries, should_retry),
                    reraise=True,
                )
                async for attempt_state in retrying:
                    with attempt_state:
                        return await self._attempt_able(current, tried, unable, record, attempt, deadline)
            except AttemptFailed as failed:
                passed_over = tried <= unable  # every deployment open, or unable to express the request
                if not (failed.unsupported and last is not None):
                    last = failed.error
                if not failed.fallback_may_help:
                    raise failed.error from None
        raise last or ServiceUnavailable("No deployment could serve this request.", code="upstream_unavailable")
