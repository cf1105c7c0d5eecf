"""How a provider's failure becomes the gateway's answer to the caller.

The caller's own mistakes (4xx) and the provider's rate limit pass through with their status; a
provider rejecting *our* credentials, or failing, is a 502 that names the provider, never the key.
Whatever the provider wrote is cleaned before it goes on: a credential it quotes is redacted from the
message, and its `type`, `code` and `param` pass only as short identifiers with no credential in them
(they also reach the usage event, the request log and a metric label).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import orjson

from adapters.base import ERROR_TYPES_BY_STATUS, JSON, ProviderError, Unsupported
from gateway.errors import (
    GatewayError,
    RequestTimeout,
    UnsupportedParameter,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from gateway.failover import AttemptFailed, classify, is_out_of_credit
from gateway.runtime import Deployment
from gateway.upstream import (
    UpstreamConnectError,
    UpstreamCutOff,
    UpstreamDropped,
    UpstreamInvalidHTTP,
    UpstreamResponse,
)

MAX_RETRY_AFTER_S = 3600.0
DEFAULT_RETRY_AFTER_S = 1.0  # a provider's 429 without a usable Retry-After: every 429 of ours carries one
IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
PARAM = re.compile(r"[A-Za-z0-9_.:\-\[\]]{1,128}")
MAX_DETAILS_BYTES = 4096
RATE_LIMIT_TYPES = frozenset({"requests", "tokens"})  # OpenAI types a rate limit's 429 by the limit it hit


def parse_retry_after(value: str | None, per_second: float = 1.0) -> float | None:
    """Seconds from a header of `per_second` units a second (1000 for milliseconds); None when it is no number
    of them, or a negative one."""
    if not value:
        return None
    try:
        seconds = float(value) / per_second
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def provider_retry_after(response: UpstreamResponse) -> float | None:
    """The wait a provider's answer asks for: OpenAI's and Azure's retry-after-ms (to the millisecond, and what the
    OpenAI SDK reads first) when it is usable, else retry-after."""
    precise = parse_retry_after(response.header("retry-after-ms"), per_second=1000.0)
    return precise if precise is not None else parse_retry_after(response.header("retry-after"))


def without_credentials(message: str, deployment: Deployment) -> str:
    """A provider may quote the key it was sent ("Incorrect API key provided: sk-..."): never pass it on."""
    target = deployment.target
    for secret in (target.api_key, *(value for _, value in target.headers)):
        if secret and len(secret) >= 8 and secret in message:
            message = message.replace(secret, "[REDACTED]")
    return message


def _identifier(value: str | None, shape: re.Pattern[str], deployment: Deployment) -> str | None:
    """`value` when it looks like an error code (or a parameter's path) and quotes no credential; else None."""
    if value is None or not shape.fullmatch(value) or without_credentials(value, deployment) != value:
        return None
    return value


def _detail(value: Any, deployment: Deployment, depth: int = 0) -> Any:
    """A provider's extra error field with only what cannot carry a secret: objects keyed by identifiers, short
    lists, booleans, numbers and identifiers, six levels deep at most (Azure's content_filter_result); else None."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _identifier(value, IDENTIFIER, deployment)
    if depth >= 6:
        return None
    if isinstance(value, list):
        return [_detail(item, deployment, depth + 1) for item in value[:16]]
    if isinstance(value, dict):
        return {
            key: _detail(item, deployment, depth + 1)
            for key, item in list(value.items())[:32]
            if isinstance(key, str) and _identifier(key, IDENTIFIER, deployment) is not None
        }
    return None


def cleaned(err: ProviderError, deployment: Deployment) -> ProviderError:
    return replace(
        err,
        message=without_credentials(err.message, deployment),
        type=_identifier(err.type, IDENTIFIER, deployment) or "invalid_request_error",
        code=_identifier(err.code, IDENTIFIER, deployment),
        param=_identifier(err.param, PARAM, deployment),
        details=_small(_detail(err.details, deployment)) if err.details else None,
    )


def _small(details: Any) -> Any:
    """Details are a few facts (which filter fired), not a document: past MAX_DETAILS_BYTES they are dropped."""
    return details if len(orjson.dumps(details)) <= MAX_DETAILS_BYTES else None


def relaying(err: ProviderError, error: GatewayError) -> GatewayError:
    """`error`, marked as carrying the provider's own code when it does (not one of the gateway's)."""
    error.relayed_code = err.code is not None and error.code == err.code
    return error


def provider_failure(err: ProviderError, deployment: Deployment, retry_after: float | None = None) -> GatewayError:
    err = cleaned(err, deployment)
    name = deployment.target.provider
    status = err.status
    if status in (401, 403):
        return UpstreamError(
            f"The provider '{name}' rejected the gateway's credentials (HTTP {status}); this is a gateway "
            "configuration problem, not your key.",
            code="upstream_auth_failed",
        )
    if is_out_of_credit(err):
        return UpstreamError(
            f"The provider '{name}' refused the gateway's account (HTTP {status}: billing); this is a gateway "
            "configuration problem, not your request.",
            code="upstream_payment_required",
        )
    if status == 429:
        return relaying(
            err,
            UpstreamRejected(
                f"The provider '{name}' is rate limiting requests: {err.message}",
                status=429,
                error_type=err.type if err.type in RATE_LIMIT_TYPES else "requests",
                # (Azure's code is the status again, "429": OpenAI's code for it tells a client to wait)
                code=err.code if err.code not in (None, "429") else "rate_limit_exceeded",
                retry_after=retry_after or DEFAULT_RETRY_AFTER_S,
            ),
        )
    if status == 408:  # (Azure's "The operation was timeout."): the provider's timeout, not the client's
        return UpstreamTimeout(f"The provider '{name}' did not answer in time (HTTP 408): {err.message}")
    if status == 404:
        return UpstreamError(f"The provider '{name}' does not know model '{deployment.target.model}': {err.message}")
    if 400 <= status < 500:
        return relaying(
            err,
            UpstreamRejected(
                err.message, status=status, error_type=err.type, code=err.code, param=err.param, details=err.details
            ),
        )
    if status == 0:
        return relaying(
            err, UpstreamError(f"The provider '{name}' failed: {err.message}", code=err.code or "upstream_error")
        )
    return UpstreamError(f"The provider '{name}' failed (HTTP {status}): {err.message}")


# An error inside a 200 stream carries no status: its type (in OpenAI's vocabulary, which every adapter
# translates into) says which it would have been: the inverse of OpenAI's status ─► type table
# (the first status of each type), and the types it does not hold.
STATUS_OF_STREAM_ERROR = {error_type: status for status, error_type in reversed(ERROR_TYPES_BY_STATUS.items())} | {
    "insufficient_quota": 429,  # out of quota: OpenAI answers it 429 (a chained gateway's budget_exceeded too)
    "requests": 429,
    "tokens": 429,
}
STATUS_OF_STREAM_CODE = {
    "rate_limit_exceeded": 429,
    "context_length_exceeded": 400,
    "request_too_large": 413,
    "content_filter": 400,  # Azure's
    "insufficient_quota": 429,  # OpenAI's: the gateway's account out of credit (see failover.is_out_of_credit)
    "overloaded": 529,  # Anthropic's overloaded_error, "an HTTP 529 in a non-streaming context"
}


def stream_error_with_status(err: ProviderError) -> ProviderError:
    """A stream's error event, with the HTTP status its code or type stands for (vLLM's code is the status
    itself; 500 when they say nothing more), so that the failover tells a bad request (not retried, not the
    provider's health) from a failing provider, as it does for an error answered with a status."""
    code = err.code or ""
    status = STATUS_OF_STREAM_CODE.get(code) or (
        int(code) if len(code) == 3 and code.isdigit() and "400" <= code < "600" else None
    )
    return replace(err, status=status or STATUS_OF_STREAM_ERROR.get(err.type, 500))


def answer_bytes(answer: JSON) -> bytes:
    """A provider's answer (or one chunk of it) as JSON for the client. One orjson could read (to 1,023 levels) but
    cannot write (deeper than 254) is the provider's fault: told apart here, where it is written, not by walking
    every answer (a big embeddings answer holds a million numbers)."""
    try:
        return orjson.dumps(answer)
    except orjson.JSONEncodeError:
        raise UpstreamError("The provider's answer could not be passed on: it is nested too deeply.") from None


def failed_attempt(err: ProviderError, deployment: Deployment, retry_after: float | None) -> AttemptFailed:
    """`retry_after`: the provider's answer's (`provider_retry_after`), None when it asked for no wait."""
    retryable, unhealthy = classify(err)
    return AttemptFailed(provider_failure(err, deployment, retry_after), retryable, unhealthy, retry_after)


def unsupported_attempt(exc: Unsupported) -> AttemptFailed:
    """The deployment's API cannot express the request: a 400 unless a fallback can."""
    return AttemptFailed(UnsupportedParameter(exc.message, param=exc.param), False, False, unsupported=True)


def timeout_failure(deployment: Deployment) -> GatewayError:
    return UpstreamTimeout(f"The provider '{deployment.target.provider}' did not answer in time.")


def client_timeout(timeout_s: float) -> GatewayError:
    """The request's time ran out while its client was not reading the stream the provider was sending."""
    return RequestTimeout(
        f"The stream was not read in time: {timeout_s:g} s ran out while the client took none of it.",
        code="client_timeout",
    )


def incomplete_stream(deployment: Deployment) -> GatewayError:
    """The provider was reached and answered, but its stream stopped short of the end of the answer (or was
    not a stream of events at all)."""
    return UpstreamError(
        f"The provider '{deployment.target.provider}' ended its stream before the answer was complete."
    )


def unreadable_answer(deployment: Deployment, detail: str) -> GatewayError:
    return UpstreamError(f"The provider '{deployment.target.provider}' answered, but {detail}.")


def connect_failure(deployment: Deployment, exc: UpstreamConnectError) -> GatewayError:
    name = deployment.target.provider
    if isinstance(exc, UpstreamInvalidHTTP):  # reached, but what came back was not HTTP
        return UpstreamError(f"The provider '{name}' answered with invalid HTTP: {exc}.")
    if isinstance(exc, UpstreamCutOff):
        return UpstreamError(f"The provider '{name}' answered, but its answer was cut short ({exc}).")
    if isinstance(exc, UpstreamDropped):
        return UpstreamError(f"The provider '{name}' closed the connection before answering ({exc}).")
    return UpstreamError(f"The provider '{name}' could not be reached: {exc}.", code="upstream_unreachable")
