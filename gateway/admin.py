"""The admin API, behind `admin.token_sha256` (absent: the admin API does not exist, 404)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from adapters.base import Adapter, LocalAdapter, Target, Unsupported, ping_auth
from adapters.registry import adapter_for
from gateway.auth import bearer_token
from gateway.config.schema import Config
from gateway.errors import AuthError, GatewayError, InvalidRequest, NotFound, ServiceUnavailable
from gateway.events.store import StoreUnreachable, open_store
from gateway.events.usage import (
    Dimension,
    check_range,
    parse_dimension,
    parse_instant,
    pending_journal_files,
    report_json,
    usage_report,
)
from gateway.http import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    header_values,
    path_after,
    require_method,
    send_bytes,
    send_error,
)
from gateway.runtime import DIRECT, Tenant, Timeouts, Transport, provider_target
from gateway.state import GatewayState
from gateway.state_store import LimitsSource
from gateway.upstream import UpstreamClient, UpstreamConnectError
from policies.budgets import LimitState
from policies.redis_store import StoreUnavailable


def check_admin(scope: Scope, state: GatewayState) -> None:
    expected = state.runtime.config.admin.token_sha256
    if expected is None:
        raise NotFound("The admin API is disabled (admin.token_sha256 is not set).")
    values = header_values(scope, b"authorization")  # every line: which one a server reads must not decide
    if not values:
        raise AuthError("The admin API needs 'Authorization: Bearer <admin token>'.", code="missing_admin_token")
    for value in values:
        token = bearer_token(value)
        if token is None:
            raise AuthError("The admin API needs 'Authorization: Bearer <admin token>'.", code="missing_admin_token")
        if not hmac.compare_digest(hashlib.sha256(token).hexdigest(), expected):
            raise AuthError("Incorrect admin token.", code="invalid_admin_token")


class AdminEndpoint(ABC):
    """One admin route: the token is checked, `answer` builds the JSON body, any GatewayError is the
    OpenAI-shaped error."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    @abstractmethod
    async def answer(self, scope: Scope) -> Any: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_admin(scope, self.state)
            body = await self.answer(scope)
        except GatewayError as err:
            await send_error(send, err)
            return
        await send_bytes(send, 200, orjson.dumps(body), JSON_HEADERS)


class ReloadEndpoint(AdminEndpoint):
    """POST /admin/reload: load the config file again; a bad one is rejected, the old one keeps serving."""

    async def answer(self, scope: Scope) -> Any:
        problems = await self.state.reload()
        if problems:
            raise InvalidRequest(
                "The new config was rejected; the previous config keeps serving. Problems: " + "; ".join(problems),
                code="config_invalid",
            )
        runtime = self.state.runtime
        return {
            "status": "reloaded",
            "all_workers": self.state.reload_other_workers(),
            "loaded_at": runtime.loaded_at,
            "disabled_providers": dict(runtime.disabled_providers),
            "needs_restart": list(self.state.needs_restart),  # changed in the file, not applied until a restart
        }


def _tenant_view(tenant: Tenant, states: list[LimitState], source: LimitsSource) -> dict[str, Any]:
    return {
        "id": tenant.name,
        "models": sorted(tenant.routes),
        "max_tokens_per_request": tenant.max_tokens_per_request,
        "policies": tenant.policies.model_dump(),
        "log_content": tenant.log_content,
        "limits_source": source,
        "limits": [
            {
                "name": s.spec.name,
                "unit": s.spec.unit,
                "per": s.spec.window,
                "window_start": s.span.start,
                "window_end": s.span.end,
                "limit": s.spec.limit,
                "reserved": s.reserved,
                "spent": s.spent,
                "remaining": s.remaining,
            }
            for s in states
        ],
    }


class TenantsEndpoint(AdminEndpoint):
    """GET /admin/tenants (ids) and GET /admin/tenants/{id} (policies in force after inheritance, live
    budget and rate-limit state)."""

    async def answer(self, scope: Scope) -> Any:
        require_method(scope, "GET")
        tenants = self.state.runtime.tenants
        name = unquote(path_after(scope, TENANTS_PREFIX).strip("/"))
        if not name:
            return {"object": "list", "data": sorted(tenants)}
        tenant = tenants.get(name)
        if tenant is None:
            raise NotFound(f"No tenant '{name}'.")
        try:
            states, source = await self.state.limit_states(tenant.name, tenant.limits, time.time())
        except StoreUnavailable:  # Redis away under fail_closed: said as the request path says it, not a bug's 500
            raise ServiceUnavailable(
                f"The live budget and rate-limit state of tenant '{name}' cannot be read: the shared state store "
                "is unreachable.",
                code="state_store_unavailable",
            ) from None
        return _tenant_view(tenant, states, source)


class CircuitsEndpoint(AdminEndpoint):
    """GET /admin/circuits: every deployment's breaker."""

    async def answer(self, scope: Scope) -> Any:
        return {"object": "list", "data": self.state.failover.circuits.snapshot()}


USAGE_PARAMETERS = ("tenant", "since", "until", "by")


def _usage_parameters(scope: Scope) -> dict[str, str]:
    """The query string's parameters (each at most once; an empty value counts as absent)."""
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
    for name, values in query.items():
        if name not in USAGE_PARAMETERS:
            raise InvalidRequest(
                f"Unknown parameter '{name}'; /admin/usage takes {', '.join(USAGE_PARAMETERS)}.",
                param=name,
                code="unknown_parameter",
            )
        if len(values) > 1:
            raise InvalidRequest(f"'{name}' is given more than once.", param=name, code="invalid_value")
        if any("\x00" in value for value in values):  # (Postgres text cannot hold it: not an outage)
            raise InvalidRequest(f"'{name}' holds a NUL character.", param=name, code="invalid_value")
    return {name: values[0].strip() for name, values in query.items() if values[0].strip()}


def _instant(parameters: dict[str, str], name: str, now: dt.datetime) -> dt.datetime | None:
    if name not in parameters:
        return None
    try:
        return parse_instant(parameters[name], now)
    except ValueError as exc:
        raise InvalidRequest(f"'{name}': {exc}.", param=name, code="invalid_value") from None


class UsageEndpoint(AdminEndpoint):
    """GET /admin/usage?tenant=&since=&until=&by=model|day|key|tenant: requests, tokens and spend from
    the event store, as `gateway usage --json` prints them. `since`/`until`: YYYY-MM-DD, ISO 8601 or a
    time ago (7d); the range is [since, until), UTC.

    It reads the running pipeline's store (SQLite: on the writer's own thread, so a report sees every
    batch written before it). A gateway whose pipeline is not open (an app served without its lifespan)
    opens a store from `events:` for the one query: the rows are in the database either way."""

    async def answer(self, scope: Scope) -> Any:
        parameters = _usage_parameters(scope)
        try:
            by: Dimension = parse_dimension(parameters.get("by", "model"))
        except ValueError as exc:
            raise InvalidRequest(f"'by': {exc}.", param="by", code="invalid_value") from None
        now = dt.datetime.now(dt.UTC)
        since, until = _instant(parameters, "since", now), _instant(parameters, "until", now)
        try:
            check_range(since, until)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.", param="until", code="invalid_value") from None
        tenant = parameters.get("tenant")
        config = self.state.runtime.config.events
        pipeline = self.state.pipeline
        store = pipeline.store if pipeline is not None else open_store(config)
        try:
            rows = await usage_report(store, by=by, tenant=tenant, since=since, until=until)
        except StoreUnreachable as exc:
            raise ServiceUnavailable(
                f"The usage event store is unreachable ({exc}).", code="event_store_unavailable"
            ) from None
        finally:
            if pipeline is None:
                await store.close()
        # the spool the pipeline journals to (events: changes need a restart, so not the reloaded config's)
        pending = pending_journal_files(pipeline.journal.directory if pipeline is not None else Path(config.spool_dir))
        return report_json(rows, by, tenant=tenant, since=since, until=until, pending_files=pending)


PROVIDERS_PREFIX = "/admin/providers"
PING_TIMEOUTS = Timeouts(connect_s=5.0, first_byte_s=10.0, total_s=10.0)  # the client applies connect and first byte
"""A ping waits at most this long, whatever the timeouts of the models that use the provider."""


def _ping_provider_name(path: str) -> str:
    """`name` in /admin/providers/{name}/ping."""
    name, slash, action = path.removeprefix(PROVIDERS_PREFIX + "/").rpartition("/")
    if not slash or not name or action != "ping":
        raise NotFound(f"Invalid URL ({path}); the provider routes are {PROVIDERS_PREFIX}/{{name}}/ping.")
    return name


def _ping_target(config: Config, name: str) -> Target:
    """The provider's own credentials (never a tenant's). The model, which only a chat-call ping uses,
    is the first one deployed on the provider."""
    deployed = (d.model for m in config.models.values() for d in m.deployments if d.provider == name)
    return provider_target(config, name, next(deployed, ""), None)


def _answered(status: int, latency_ms: float) -> dict[str, Any]:
    """The verdict on the provider's answer. Its body is never relayed (it may quote our key): the reason
    is ours."""
    auth = ping_auth(status)
    if auth == "ok":
        error = None
    elif auth == "rejected":
        error = f"the provider rejected the credentials (HTTP {status})"
    elif status == 404:
        error = "HTTP 404: the provider has no such endpoint (check base_url)"
    else:
        error = f"HTTP {status} from the provider"
    return {"reachable": True, "auth": auth, "status": status, "latency_ms": latency_ms, "error": error}


def _failure(reason: str) -> dict[str, Any]:
    """No answer (or no call): nothing is known about the credentials."""
    return {"reachable": False, "auth": "unknown", "status": None, "latency_ms": None, "error": reason}


async def ping(
    client: UpstreamClient, adapter: Adapter, target: Target, transport: Transport = DIRECT
) -> dict[str, Any]:
    """Send the adapter's ping once (no retry, no circuit, no usage event) and read only its status."""
    try:
        request = adapter.build_ping(target)
    except Unsupported as exc:
        return _failure(f"cannot build the ping: {exc.message}")
    local = adapter if isinstance(adapter, LocalAdapter) else None
    started = time.perf_counter()
    try:  # the client bounds connecting and the wait for the answer's headers by `first_byte_s`
        response = await client.send(request, PING_TIMEOUTS, local, transport)
    except TimeoutError:
        return _failure(f"no answer within {PING_TIMEOUTS.first_byte_s:g} s")
    except UpstreamConnectError as exc:
        return _failure(str(exc))
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    try:
        await response.drain()  # read (and drop) the rest, so the connection can be reused
    finally:
        response.close()
    return _answered(response.status, latency_ms)


class ProviderPingEndpoint(AdminEndpoint):
    """POST /admin/providers/{name}/ping: a connection test of the provider's configured credentials,
    through the adapter's cheapest request (a models list where the API has one: no tokens). Answers 200
    whenever the ping was carried out, whatever the provider said; a disabled provider is not called."""

    async def answer(self, scope: Scope) -> Any:
        name = _ping_provider_name(scope["path"])
        require_method(scope, "POST")
        runtime = self.state.runtime
        provider = runtime.config.providers.get(name)
        if provider is None:
            raise NotFound(f"No provider '{name}'.", code="provider_not_found")
        adapter = adapter_for(provider.type)
        about = {"provider": name, "type": provider.type, "probe": adapter.ping_probe}
        disabled = runtime.disabled_providers.get(name)
        if disabled is not None:
            return {**about, **_failure(f"disabled: {disabled}")}
        target = _ping_target(runtime.config, name)
        transport = runtime.transports.get(name, DIRECT)
        return {**about, **await ping(self.state.client, adapter, target, transport)}


TENANTS_PREFIX = "/admin/tenants"
