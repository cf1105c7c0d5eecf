"""Admission and settlement of one request against its tenant's budgets and rate limits.

The worst case is reserved before the provider is called: an upper bound of the prompt's tokens
(its bytes, since a token is at least one byte, plus an allowance per image and one for a provider's
tool-use prompt) plus the most output tokens the request may produce (the request's own limit, else the
tenant's per-request cap within the deployments' own output limits, which the adapter then sends upstream;
times the `n` choices asked for), priced at the highest price among the model's deployments and fallbacks.
Settlement replaces the reservation with what the provider reported; when the provider was sent the request but
reported no usage (a stream the client left before its usage chunk, an API version that sends none, a request the
model's timeout cut), the reservation stands: unknown is charged as the worst case, never as nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import Usage
from gateway.errors import BudgetExceeded, PermissionDenied, Quota, RateLimited, ServiceUnavailable
from gateway.events import RequestRecord
from gateway.pricing import Price
from gateway.runtime import Deployment, Tenant
from policies.budgets import Admission, LimitSpec, ReservationStore, Unit, window_span
from policies.redis_store import StoreUnavailable

log = logging.getLogger("gateway.spend")

IMAGE_TOKEN_ALLOWANCE = 2000  # above the largest per-image charge of current vision models
# a provider's own system prompt for tool use (Anthropic's: 313-530 tokens by model and tool_choice, plus the
# gateway's tool for json_schema), which the body's bytes do not hold
TOOL_USE_TOKEN_ALLOWANCE = 1000
RATE_LIMIT_NAMES = frozenset({"rpm", "tpm"})


@dataclass(slots=True)
class Reservation:
    request_id: str
    asked: dict[Unit, float]


def prompt_upper_bound(body: bytes, payload: dict[str, Any]) -> int:
    images = 0
    for message in payload.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            images += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
    response_format = payload.get("response_format")
    structured = isinstance(response_format, dict) and response_format.get("type") != "text"
    tool_use = TOOL_USE_TOKEN_ALLOWANCE if payload.get("tools") or structured else 0
    return len(body) + images * IMAGE_TOKEN_ALLOWANCE + tool_use


def output_upper_bound(payload: dict[str, Any], cap: int, deployments_limit: int | None = None) -> int:
    """The most output tokens the answer may hold: the request's own limit (within `cap`, as checked), else the
    default sent upstream, the cap within the most any deployment it may reach can write. The limit applies to each
    of its `n` choices."""
    asked = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if isinstance(asked, int) and 0 < asked <= cap:
        per_choice = asked
    else:
        per_choice = cap if deployments_limit is None else min(cap, deployments_limit)
    choices = payload.get("n")
    return per_choice * (choices if type(choices) is int and choices > 1 else 1)


def _denied(admission: Admission, now: float) -> Exception:
    """The 429 of a refusal, with the refusing limit's numbers in OpenAI's x-ratelimit-* headers (none for a USD
    budget: OpenAI's have no such unit) and its wait to the millisecond (retry-after-ms), computed here, on the
    refusal only."""
    spec = admission.denied
    assert spec is not None and admission.retry_after_s is not None
    window = f"per {spec.window}"
    resets_in_s = window_span(spec.window, now).end - now
    wait_s = admission.retry_after_s if admission.held else resets_in_s
    quota = None if spec.unit == "usd" else Quota(spec.unit, spec.limit, admission.remaining, resets_in_s)
    # held: what is left is reserved by requests in flight (at their worst case), which mostly spend far less
    held = " The rest is held by requests in flight; some is likely to come back soon." if admission.held else ""
    if spec.name in RATE_LIMIT_NAMES:
        what = "requests" if spec.unit == "requests" else "tokens"
        return RateLimited(
            f"Rate limit reached: {spec.limit:g} {what} {window}.{held} Retry after {admission.retry_after_s:g} s.",
            retry_after=wait_s,
            error_type=what,  # as OpenAI types its own: "requests" for rpm, "tokens" for tpm
            quota=quota,
        )
    amount = f"${spec.limit:g}" if spec.unit == "usd" else f"{spec.limit:g} tokens"
    if admission.held:
        return BudgetExceeded(
            f"This key's budget of {amount} {window} has no room left for this request now.{held} Retry after "
            f"{admission.retry_after_s:g} s.",
            retry_after=wait_s,
            quota=quota,
        )
    return BudgetExceeded(
        f"This key's budget of {amount} {window} does not cover this request; it resets in "
        f"{admission.retry_after_s:g} s.",
        retry_after=wait_s,
        quota=quota,
    )


def _never_fits(spec: LimitSpec, asked: Mapping[Unit, float], prompt_tokens: int, output_tokens: int) -> Exception:
    """The request's worst case is above the limit itself: no wait lets it in, so no Retry-After (which SDKs would
    wait out, twice, for nothing) and x-should-retry: false; the numbers say what to lower."""
    bound = f"a bound of {prompt_tokens:,} tokens for the input and {output_tokens:,} of output"
    if spec.unit == "usd":
        need, limit = f"${asked['usd']:.6g} ({bound}, at the model's highest price)", f"${spec.limit:g}"
    else:
        need, limit = f"{asked['tokens']:,.0f} tokens ({bound})", f"{spec.limit:,.0f} tokens"
    advice = "set a lower max_tokens (or max_completion_tokens), or send less" if output_tokens else "send less"
    if spec.name in RATE_LIMIT_NAMES:
        return RateLimited(
            f"Request too large: it may use up to {need}, more than this key's limit of {limit} per {spec.window} "
            f"allows; {advice}.",
            error_type="tokens",
            should_retry=False,
        )
    return BudgetExceeded(
        f"This request may use up to {need}, more than this key's whole budget of {limit} per {spec.window}; {advice}.",
        should_retry=False,
    )


async def admit(
    store: ReservationStore,
    tenant: Tenant,
    request_id: str,
    model: str,
    worst_price: Price | None,
    prompt_tokens: int,
    output_tokens: int,
) -> Reservation | None:
    if not tenant.limits:
        return None
    asked: dict[Unit, float] = {"requests": 1.0, "tokens": float(prompt_tokens + output_tokens)}
    if any(spec.unit == "usd" for spec in tenant.limits):
        if worst_price is None:
            raise PermissionDenied(
                f"The model '{model}' has no known price, so this key's USD budget cannot be enforced; "
                "the gateway's `pricing:` needs an entry for it.",
                code="price_unknown",
            )
        asked["usd"] = worst_price.worst_case(prompt_tokens, output_tokens)
    for spec in tenant.limits:
        if asked.get(spec.unit, 0.0) > spec.limit:
            raise _never_fits(spec, asked, prompt_tokens, output_tokens)
    now = time.time()
    try:
        admission = await store.reserve(tenant.name, request_id, tenant.limits, asked, now)
    except StoreUnavailable:
        raise ServiceUnavailable(
            "Budgets and rate limits cannot be checked: the shared state store is unreachable.",
            code="state_store_unavailable",
        ) from None
    if not admission.admitted:
        raise _denied(admission, now)
    return Reservation(request_id, asked)


def usage_unreported(record: RequestRecord) -> bool:
    """The provider was sent the request and may have spent tokens on it, but reported none, or only part
    (a stream that stopped short): an attempt was at work, or had answered, when the request ended, whatever
    ended it (the answer, the client leaving, the model's timeout, the drain). An attempt that failed is not
    at work: the provider refused it or never answered."""
    return record.provider_at_work and (record.usage is None or record.usage_partial)


async def settle(
    store: ReservationStore,
    reservation: Reservation,
    usage: Usage | None,
    answered_by: Deployment | None,
    unreported: bool = False,
) -> None:
    if unreported:
        actual = dict(reservation.asked)  # the worst case it was admitted with
    else:
        actual = {"requests": 1.0, "tokens": float(usage.total_tokens if usage else 0)}
        if "usd" in reservation.asked:
            price = answered_by.price if answered_by is not None else None
            actual["usd"] = price.cost(usage) if price is not None and usage is not None else 0.0
    try:
        await store.settle(reservation.request_id, actual)
    except Exception:  # the store keeps a retry list; a failed settle must not fail the answer
        log.warning("settlement of %s deferred: the state store is unreachable", reservation.request_id)
