"""OpenTelemetry traces: one span per request, children for the policies, each upstream attempt and
the usage event, with GenAI semantic-convention attributes.

    chat gpt-4o-mini                    (SERVER; continues an incoming `traceparent`)
    ├── gateway.policy.guardrails       injection and PII
    ├── gateway.policy.budget           budget and rate-limit admission
    ├── chat gpt-4o-mini (attempt)      (CLIENT) one per upstream attempt, retries and fallbacks included
    └── gateway.usage_event             the event journaled and queued for the database

Configured by the standard variables: tracing is on when OTEL_TRACES_EXPORTER names an exporter
(`otlp`, `console`) or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT);
OTEL_SDK_DISABLED=true turns it off; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service.
The tracer provider belongs to the gateway's state (not the global one). Off, every hook is a shared
no-op context: no span objects are made on the hot path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.events.record import RequestRecord
from gateway.http import Scope

_NO_SPAN: AbstractContextManager[None] = nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()
Attributes = Mapping[str, str | int | float | bool]


def _env_wants_tracing(environ: Mapping[str, str]) -> str | None:
    """The exporter the standard variables ask for, or None."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return None if exporter == "none" else exporter
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def _processor(exporter: str) -> SpanProcessor:
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
    raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported (otlp, console, none)")


class Tracing:
    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: Tracer | None = provider.get_tracer("gateway") if provider is not None else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        exporter = _env_wants_tracing(environ)
        if exporter is None:
            return cls()
        provider = TracerProvider(resource=Resource.create({"service.name": "llm-gateway"}))
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
        with tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, record_exception=False, set_status_on_exception=False
        ) as span:
            yield span

    def request(self, scope: Scope, endpoint: str) -> AbstractContextManager[Span | None]:
        """The request's span, current for everything the request does until it ends."""
        if self.tracer is None:
            return _NO_SPAN
        return self._request(self.tracer, scope, endpoint)

    def span(
        self, name: str, attributes: Attributes | None = None, kind: SpanKind = SpanKind.INTERNAL
    ) -> AbstractContextManager[Span | None]:
        if self.tracer is None:
            return _NO_SPAN
        return self.tracer.start_as_current_span(
            name, attributes=attributes, kind=kind, record_exception=False, set_status_on_exception=False
        )

    def attempt(self, operation: str, system: str, model: str, deployment: str) -> AbstractContextManager[Span | None]:
        if self.tracer is None:
            return _NO_SPAN
        return self.span(
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
    def finish(span: Span | None, record: RequestRecord) -> None:
        """The request's outcome on its span (names and numbers only: no content, no key)."""
        if span is None:
            return
        operation = "embeddings" if record.endpoint == "embeddings" else "chat"
        span.update_name(f"{operation} {record.model_alias or record.model_requested or ''}".rstrip())
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "http.response.status_code": record.http_status,
            "gateway.request_id": record.request_id,
            "gateway.status": record.status,
            "gateway.streamed": record.streamed,
        }
        optional: dict[str, Any] = {
            "gen_ai.request.model": record.model_requested,
            "gen_ai.response.model": record.upstream_model,
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
        span.set_attributes(attributes)
        if record.status == "failed" or record.http_status >= 500:
            span.set_status(Status(StatusCode.ERROR, record.error_code or record.error_type or "failed"))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
