"""Every error the gateway answers with, in one tree, rendered to OpenAI's error JSON in one place.

    GatewayError                      500 server_error
    ├── InvalidRequest                400 invalid_request_error
    │   ├── PayloadTooLarge           413
    │   ├── RequestTimeout            408 (the body did not arrive in time)
    │   ├── UnsupportedMediaType      415 (a Content-Encoding the gateway cannot undo)
    │   └── UnsupportedParameter      400 (the chosen provider cannot do it)
    ├── AuthError                     401 invalid_request_error / invalid_api_key
    ├── PermissionDenied              403 permission_error
    │   ├── ModelNotAllowed           403 / model_not_allowed
    │   └── PolicyViolation           403 (a content policy blocked the request)
    ├── NotFound                      404 invalid_request_error
    │   └── ModelNotFound             404 / model_not_found
    ├── MethodNotAllowed              405
    ├── RateLimited                   429 rate_limit_exceeded (+ Retry-After, and OpenAI's x-ratelimit-* of its limit)
    │   └── BudgetExceeded            429 budget_exceeded
    ├── ServiceUnavailable            503 (no deployment can serve, draining, state store down)
    └── UpstreamError                 502 the provider failed
        ├── UpstreamTimeout           504
        └── UpstreamRejected          the provider's own 4xx/429, passed on with its status

`render` is the only function that turns an error into bytes; nothing else builds error JSON.
Messages are written for the caller and never carry credentials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    relayed_code: bool = False  # `code` is a provider's, passed on (the metrics bound those: any value may come)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details  # more fields of the error object, beside OpenAI's four (a provider's innererror)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if error_type is not None:
            self.type = error_type
        self.retry_after = retry_after
        self.should_retry = should_retry  # x-should-retry, which the OpenAI and Anthropic SDKs obey over the status

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = []
        if self.retry_after is not None:  # (OpenAI's SDK reads retry-after-ms first: the wait to the millisecond)
            headers.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
            headers.append((b"retry-after-ms", str(max(1, math.ceil(self.retry_after * 1000))).encode()))
        if self.should_retry is not None:
            headers.append((b"x-should-retry", b"true" if self.should_retry else b"false"))
        return headers


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class RequestTimeout(InvalidRequest):
    status = 408
    code = "request_timeout"


class UnsupportedMediaType(InvalidRequest):
    status = 415

    def __init__(self, message: str, *, code: str, accept_encoding: str) -> None:
        super().__init__(message, code=code)
        self.accept_encoding = accept_encoding  # RFC 9110: the codings the request may use

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [*super().headers(), (b"accept-encoding", self.accept_encoding.encode())]


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class AuthError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class ModelNotAllowed(PermissionDenied):
    code = "model_not_allowed"


class PolicyViolation(PermissionDenied):
    type = "invalid_request_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    """Answered with `Allow` (RFC 9110), which names HEAD wherever GET is served."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, method: str, path: str, allowed: Iterable[str]) -> None:
        methods = set(allowed)
        if "GET" in methods:
            methods.add("HEAD")
        self.allow = ", ".join(sorted(methods))
        super().__init__(f"{method} is not allowed on {path}; use {self.allow}.")

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [*super().headers(), (b"allow", self.allow.encode())]


@dataclass(frozen=True, slots=True)
class Quota:
    """The limit a request was refused by, as OpenAI's x-ratelimit-* headers tell theirs."""

    unit: Literal["requests", "tokens"]
    limit: float
    remaining: float | None  # None: the store did not say
    resets_in_s: float  # until its window ends

    def headers(self) -> list[tuple[bytes, bytes]]:
        unit = self.unit.encode()
        headers = [
            (b"x-ratelimit-limit-" + unit, _count(self.limit)),
            (b"x-ratelimit-reset-" + unit, duration(self.resets_in_s).encode()),
        ]
        if self.remaining is not None:
            headers.append((b"x-ratelimit-remaining-" + unit, _count(max(0.0, self.remaining))))
        return headers


def _count(value: float) -> bytes:
    return str(math.floor(value)).encode()


def duration(seconds: float) -> str:
    """`seconds` as OpenAI writes x-ratelimit-reset-*: "20ms", "1.5s", "6m0s", "2h0m5s" (rounded up to the ms)."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    rest = f"{ms / 1000:g}s"
    if hours:
        return f"{hours}h{minutes}m{rest}"
    return f"{minutes}m{rest}" if minutes else rest


class RateLimited(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, quota: Quota | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.quota = quota

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = super().headers()
        if self.quota is not None:
            headers.extend(self.quota.headers())
        return headers


class BudgetExceeded(RateLimited):
    type = "insufficient_quota"
    code = "budget_exceeded"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamError(GatewayError):
    status = 502
    type = "api_error"
    code: str | None = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamRejected(UpstreamError):
    """The provider refused the request for a reason of the caller's (4xx) or its own rate limit: passed on as
    the provider said it, its `code` too, null included (OpenAI answers many a 400 with no code)."""

    code = None


def internal_error() -> GatewayError:
    """What a client is told of a bug: nothing of it (the traceback goes to the server log)."""
    return GatewayError("The gateway hit an internal error. It has been logged.")


def error_body(err: GatewayError) -> bytes:
    return orjson.dumps({"error": error_object(err)})


def error_object(err: GatewayError) -> dict[str, Any]:
    error: dict[str, Any] = {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    if err.details:
        error.update((name, value) for name, value in err.details.items() if name not in error)
    return error


def stream_error_frame(err: GatewayError) -> bytes:
    """`err` as a stream's last event, once its 200 went out: a second status line cannot be sent."""
    return b"data: " + orjson.dumps({"error": error_object(err)}) + b"\n\n"


def render(err: GatewayError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the HTTP answer for `err`."""
    headers = [(b"content-type", b"application/json")]
    headers.extend(err.headers())
    return err.status, headers, error_body(err)
