"""OpenTelemetry traces: one span per request, children for the policies, each upstream attempt and
the usage event, with GenAI semantic-convention attributes.

    chat gpt-4o-mini                    (SERVER; continues an incoming `traceparent`)
    ├── gateway.policy.guardrails       injection and PII
    ├── gateway.policy.budget           budget and rate-limit admission
    ├── chat gpt-4o-mini (attempt)      (CLIENT) one per upstream attempt, retries and fallbacks included;
    │                                   its request carries it upstream as `traceparent`
    └── gateway.usage_event             the event journaled and queued for the database

Configured by the standard variables: tracing is on when OTEL_TRACES_EXPORTER names exporters
(`otlp`, `console`, comma-separated) or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
..._TRACES_ENDPOINT); OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turns it off; anything else
is a start-up error. OTLP goes over HTTP/protobuf (the exporter reads OTEL_EXPORTER_OTLP_* itself:
endpoint, headers, timeout, compression). OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the
service (default `llm-gateway`); OTEL_TRACES_SAMPLER applies.

The tracer provider belongs to the gateway's state (not the global one). Off, every hook is a shared
no-op context: no span objects are made on the hot path.

Spans carry names and numbers only: never a key, a credential, a header, a prompt or an error's text
(a provider's message may quote what it was sent); a failure is described by its error code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.errors import GatewayError
from gateway.events.record import RequestRecord
from gateway.http import Scope

_NO_SPAN: AbstractContextManager[None] = nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()
_REQUEST_SPAN: ContextVar[Span | None] = ContextVar("gateway_request_span", default=None)
Attributes = Mapping[str, str | int | float | bool]
EXPORTERS = ("otlp", "console")
OTLP_PROTOCOLS = ("", "http/protobuf")
DEFAULT_SERVICE_NAME = "llm-gateway"


def _env_exporters(environ: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for (none: tracing is off). ValueError for a value
    this gateway cannot honour, so that a misconfiguration stops the start instead of losing traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        names = ["otlp"] if endpoint else []
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={environ.get('OTEL_TRACES_EXPORTER', '')!r}: {', '.join(map(repr, unknown))} "
            f"is not supported (use {', '.join(EXPORTERS)} or none, comma-separated)"
        )
    if "otlp" in names:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
        if protocol.strip().lower() not in OTLP_PROTOCOLS:
            raise ValueError(f"OTLP protocol {protocol!r} is not supported: this gateway exports http/protobuf")
    return list(dict.fromkeys(names))


def _service_name(environ: Mapping[str, str]) -> str:
    """OTEL_SERVICE_NAME, else `service.name` in OTEL_RESOURCE_ATTRIBUTES, else the gateway's default."""
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return unquote(value.strip())
    return DEFAULT_SERVICE_NAME


def _processor(exporter: str) -> SpanProcessor:
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*


def _error_type(exc: BaseException) -> tuple[str, int]:
    """A failure's class (its error code, never its message) and HTTP status; a failed attempt
    (failover.AttemptFailed) carries the gateway error it becomes in `.error`."""
    wrapped = getattr(exc, "error", None)
    error = wrapped if isinstance(wrapped, GatewayError) else exc
    if isinstance(error, GatewayError):
        return error.code or error.type, error.status
    return type(error).__qualname__, 500


class Tracing:
    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: Tracer | None = provider.get_tracer("gateway") if provider is not None else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        exporters = _env_exporters(environ)
        if not exporters:
            return cls()
        provider = TracerProvider(resource=Resource.create({"service.name": _service_name(environ)}))
        for exporter in exporters:
            provider.add_span_processor(_processor(exporter))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @contextmanager
    def _request(self, tracer: Tracer, scope: Scope, name: str) -> Iterator[Span]:
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in (b"traceparent", b"tracestate")
        }
        parent: Context | None = _PROPAGATOR.extract(carrier) if carrier else None
        attributes = {"http.request.method": str(scope.get("method", "")), "url.path": str(scope.get("path", ""))}
        with tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            token = _REQUEST_SPAN.set(span)
            try:
                yield span
            finally:
                _REQUEST_SPAN.reset(token)

    def request(self, scope: Scope, endpoint: str) -> AbstractContextManager[Span | None]:
        """The request's span, current for everything the request does until it ends."""
        if self.tracer is None:
            return _NO_SPAN
        return self._request(self.tracer, scope, endpoint)

    @contextmanager
    def _span(self, tracer: Tracer, name: str, attributes: Attributes | None, kind: SpanKind) -> Iterator[Span]:
        with tracer.start_as_current_span(
            name, attributes=attributes, kind=kind, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except Exception as exc:
                # a policy that refuses (4xx) did its job; an attempt that fails, or a 5xx, is an error
                error_type, status = _error_type(exc)
                span.set_attribute("error.type", error_type)
                if kind is SpanKind.CLIENT or status >= 500:
                    span.set_status(Status(StatusCode.ERROR, error_type))
                raise

    def span(
        self, name: str, attributes: Attributes | None = None, kind: SpanKind = SpanKind.INTERNAL
    ) -> AbstractContextManager[Span | None]:
        if self.tracer is None:
            return _NO_SPAN
        return self._span(self.tracer, name, attributes, kind)

    def attempt(self, operation: str, system: str, model: str, deployment: str) -> AbstractContextManager[Span | None]:
        """One upstream attempt (CLIENT). The request's span takes the attempt's `gen_ai.system`: the
        last attempt is the one that answered, or the one whose failure the client got."""
        if self.tracer is None:
            return _NO_SPAN
        request_span = _REQUEST_SPAN.get()
        if request_span is not None:
            request_span.set_attribute("gen_ai.system", system)
        return self._span(
            self.tracer,
            f"{operation} {model}",
            {
                "gen_ai.operation.name": operation,
                "gen_ai.system": system,
                "gen_ai.request.model": model,
                "gateway.deployment": deployment,
            },
            SpanKind.CLIENT,
        )

    @staticmethod
    def failed(span: Span | None, error_type: str) -> None:
        """A span's work failed though no exception of its own went through it (a deadline's cancel did)."""
        if span is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))

    def inject(self, headers: dict[str, str]) -> None:
        """W3C `traceparent` (and `tracestate`) naming the current span, an upstream attempt's, into the headers
        of its request, so that a provider that traces continues the trace. A header the config sets wins."""
        if self.tracer is None:
            return
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        for name, value in carrier.items():
            if not any(key.lower() == name for key in headers):
                headers[name] = value

    @staticmethod
    def finish(span: Span | None, record: RequestRecord, known_models: frozenset[str]) -> None:
        """The request's outcome on its span (names and numbers only: no content, no key). The span is named by
        the model only when the config knows it: a name must stay low-cardinality, whatever a client sends."""
        if span is None:
            return
        operation = "embeddings" if record.endpoint == "embeddings" else "chat"
        requested = record.model_requested if record.model_requested in known_models else None
        span.update_name(f"{operation} {record.model_alias or requested or ''}".rstrip())
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "http.response.status_code": record.http_status,
            "gateway.request_id": record.request_id,
            "gateway.status": record.status,
            "gateway.streamed": record.streamed,
        }
        optional: dict[str, Any] = {
            "gen_ai.request.model": record.model_requested,
            "gen_ai.response.model": record.response_model or record.upstream_model,
            "gateway.tenant": record.tenant,
            "gateway.provider": record.provider,
            "gateway.deployment": record.deployment,
            "gateway.cost_usd": record.cost_usd,
            "gateway.blocked_by": record.blocked_by,
            "gateway.injection_score": record.injection_score,
            "error.type": record.error_code or record.error_type,
        }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if record.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = record.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = record.usage.completion_tokens
        if record.fallback_path:
            attributes["gateway.fallback_path"] = list(record.fallback_path)
        if record.attempts:
            attributes["gateway.attempts"] = len(record.attempts)
        span.set_attributes(attributes)
        if record.http_status >= 500 or (record.status == "failed" and record.http_status < 400):
            # a 4xx is the client's error, not the server's (OpenTelemetry's HTTP conventions leave a SERVER span's
            # status unset then; error.type says what it was); a failure after a 200 went out (a stream's) is ours
            span.set_status(Status(StatusCode.ERROR, record.error_code or record.error_type or "failed"))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
