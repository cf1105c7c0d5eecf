"""The whole ASGI stack, assembled explicitly in one place (as Starlette's `applications.py` does)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.admin import (
    PROVIDERS_PREFIX,
    TENANTS_PREFIX,
    CircuitsEndpoint,
    ProviderPingEndpoint,
    ReloadEndpoint,
    TenantsEndpoint,
    UsageEndpoint,
)
from gateway.azure_paths import PREFIX as AZURE_PREFIX
from gateway.azure_paths import AzureDeployments
from gateway.chat import ChatEndpoint
from gateway.config.loader import load_file
from gateway.embeddings import EmbeddingsEndpoint
from gateway.gc_tuning import tune_garbage_collector
from gateway.http import ASGIApp
from gateway.info import MODEL_PREFIXES, HealthEndpoint, ModelsEndpoint, ReadyEndpoint
from gateway.metrics import MetricsEndpoint
from gateway.middleware.error_boundary import ErrorBoundary
from gateway.middleware.lifespan import Lifespan
from gateway.router import Router
from gateway.runtime import build_runtime
from gateway.state import GatewayState
from gateway.supervisor import SUPERVISOR_PID_ENV
from gateway.tracing import Tracing

CONFIG_ENV = "GATEWAY_CONFIG"


def build_app(state: GatewayState, handle_signals: bool = True) -> ASGIApp:
    chat = ChatEndpoint(state)
    embeddings = EmbeddingsEndpoint(state)
    models = ModelsEndpoint(state)
    tenants = TenantsEndpoint(state)
    routes: dict[str, dict[str, ASGIApp]] = {
        "/healthz": {"GET": HealthEndpoint()},
        "/readyz": {"GET": ReadyEndpoint(state)},
        "/admin/reload": {"POST": ReloadEndpoint(state)},
        "/admin/tenants": {"GET": tenants},
        "/admin/circuits": {"GET": CircuitsEndpoint(state)},
        "/admin/usage": {"GET": UsageEndpoint(state)},
        "/metrics": {"GET": MetricsEndpoint(state)},
    }
    # OpenAI SDKs are pointed at a base URL with or without /v1; answer both.
    for prefix in ("/v1", ""):
        routes[f"{prefix}/chat/completions"] = {"POST": chat}
        routes[f"{prefix}/embeddings"] = {"POST": embeddings}
    for prefix in MODEL_PREFIXES:
        routes[prefix] = {"GET": models}
    prefixes: dict[str, ASGIApp] = {
        AZURE_PREFIX: AzureDeployments({"chat/completions": chat, "embeddings": embeddings}),
        TENANTS_PREFIX + "/": tenants,
        PROVIDERS_PREFIX + "/": ProviderPingEndpoint(state),
        **{prefix: models for prefix in MODEL_PREFIXES},
    }
    return Lifespan(ErrorBoundary(Router(routes, prefixes)), state, handle_signals=handle_signals)


def state_from_file(path: str | Path) -> GatewayState:
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)  # set by `gateway serve` for its workers when workers > 1
    return GatewayState(
        runtime=build_runtime(load_file(path)),
        config_path=Path(path),
        tracing=Tracing.from_env(),
        supervisor_pid=int(supervisor) if supervisor else None,
    )


def app_from_env() -> ASGIApp:
    """uvicorn factory (`gateway serve` and every worker): the config path comes from GATEWAY_CONFIG."""
    app = build_app(state_from_file(os.environ[CONFIG_ENV]))
    tune_garbage_collector()
    return app
