"""The validated config compiled into what a request needs, once per load (never per request).

    Runtime ─► keys: sha256 ─► KeyIdentity(tenant, key id)
           └─► Tenant ─► routes: model alias ─► ModelRoute ─► Deployment(adapter, target, weight)

A tenant's routes hold only the models it may use, with its own provider credentials (bring your
own key) already substituted, so the hot path does dictionary look-ups and nothing else.
"""

from __future__ import annotations

import itertools
import random
import ssl
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from adapters.base import Adapter, Target
from adapters.registry import DEFAULT_BASE_URLS, adapter_for
from gateway.config.loader import ConfigError, LoadedConfig
from gateway.config.schema import (
    BudgetConfig,
    Config,
    DeploymentConfig,
    InjectionPolicy,
    ModelConfig,
    PiiPolicy,
    Policies,
    PolicyOverrides,
    RateLimits,
    TenantConfig,
)
from gateway.guardrails import TenantGuard, build_guard
from gateway.pricing import Price, look_up, price_table
from policies.budgets import LimitSpec, Unit, Window
from policies.injection import InjectionDetector
from policies.pii import PiiScanner


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    first_byte_s: float | None
    total_s: float


@dataclass(frozen=True, slots=True)
class Transport:
    """How the provider is reached, besides its URL: through which proxy, trusting which CAs (None: the system's)."""

    proxy: str | None = None
    tls: ssl.SSLContext | None = None

    def __repr__(self) -> str:  # a proxy URL may hold credentials
        return f"Transport(proxy={'set' if self.proxy else None}, tls={'own CAs' if self.tls else 'system'})"


DIRECT = Transport()


@dataclass(frozen=True, slots=True)
class Deployment:
    adapter: Adapter
    target: Target
    weight: int
    price: Price | None  # by model alias, else by upstream model; None: unknown
    transport: Transport = DIRECT
    max_output_tokens: int | None = None  # the upstream model's own output limit, when the config gives it

    def default_max_tokens(self, cap: int) -> int:
        """The output limit sent when a request gives none: the tenant's cap, within this deployment's limit."""
        return cap if self.max_output_tokens is None else min(cap, self.max_output_tokens)

    @property
    def label(self) -> str:
        return f"{self.target.provider}/{self.target.model}"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    alias: str
    deployments: tuple[Deployment, ...]  # enabled ones only, weight > 0
    fallbacks: tuple[str, ...]
    retries: int
    timeouts: Timeouts
    unavailable_reason: str | None  # why no deployment is enabled, when none is
    circuit_failures: int = 5
    circuit_cooldown_s: float = 30.0

    @property
    def cumulative_weights(self) -> tuple[int, ...]:
        return tuple(itertools.accumulate(d.weight for d in self.deployments))

    def pick(self, rng: random.Random) -> Deployment:
        """Weighted random choice among the enabled deployments."""
        return weighted_choice(self.deployments, rng)


def weighted_choice(pool: Sequence[Deployment], rng: random.Random) -> Deployment:
    """A deployment drawn with probability proportional to its weight (`pool` is not empty)."""
    if len(pool) == 1:
        return pool[0]
    point = rng.random() * sum(d.weight for d in pool)
    for deployment in pool:
        point -= deployment.weight
        if point < 0:
            return deployment
    return pool[-1]  # float rounding at the very top of the range


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    routes: Mapping[str, ModelRoute]
    max_tokens_per_request: int
    policies: Policies
    budgets: tuple[BudgetConfig, ...]
    rate_limits: RateLimits
    log_content: bool
    models_body: bytes  # the /v1/models answer, rendered once
    model_bodies: Mapping[str, bytes]  # /v1/models/{id} answers
    limits: tuple[LimitSpec, ...]  # budgets and rate limits, checked together at admission
    guard: TenantGuard


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    tenant: Tenant
    key_id: str


@dataclass(frozen=True)
class Runtime:
    config: Config
    keys: Mapping[str, KeyIdentity]
    tenants: Mapping[str, Tenant]
    model_names: frozenset[str]
    disabled_providers: Mapping[str, str]
    loaded_at: float
    worst_prices: Mapping[str, Price | None]  # per model alias, over its deployments and fallbacks
    output_limits: Mapping[str, int | None]  # per model alias, over its deployments and fallbacks; None: unbounded
    transports: Mapping[str, Transport]  # per provider


def tenant_limits(tenant: TenantConfig) -> tuple[LimitSpec, ...]:
    limits = budget_limits(tenant.budgets)
    if tenant.rate_limits.rpm is not None:
        limits.append(LimitSpec("rpm", "requests", "minute", float(tenant.rate_limits.rpm)))
    if tenant.rate_limits.tpm is not None:
        limits.append(LimitSpec("tpm", "tokens", "minute", float(tenant.rate_limits.tpm)))
    return tuple(limits)


def reachable_deployments(config: Config, alias: str) -> list[tuple[str, DeploymentConfig]]:
    """Every deployment a request for `alias` may be answered by, its own and its fallbacks' (each model once), with
    the alias of the model it belongs to."""
    found: list[tuple[str, DeploymentConfig]] = []
    seen: set[str] = set()

    def walk(current: str) -> None:
        if current in seen:
            return
        seen.add(current)
        model = config.models[current]
        found.extend((current, d) for d in model.deployments)
        for fallback in model.fallbacks:
            walk(fallback)

    walk(alias)
    return found


def budget_limits(budgets: Sequence[BudgetConfig]) -> list[LimitSpec]:
    """Each budget named by what it is, "tokens_per_day", never by its place in the list (the budget metrics'
    `limit` label, which a reordered list must not move to another budget); by its ceiling too when budgets share
    a unit and a window ("tokens_per_day_500"). One repeated to the letter is one limit."""
    kinds: list[tuple[Unit, Window]] = [("tokens" if b.tokens is not None else "usd", b.per) for b in budgets]
    limits: dict[str, LimitSpec] = {}
    for place, (b, (unit, window)) in enumerate(zip(budgets, kinds, strict=True)):
        name = f"{unit}_per_{window}"
        if kinds.count((unit, window)) > 1:
            name += f"_{b.tokens}" if b.tokens is not None else f"_{_exact(b.usd or 0.0)}"
        limit = float(b.tokens or b.usd or 0)
        limits.setdefault(name, LimitSpec(name, unit, window, limit, former_name=f"budget[{place}]"))
    return list(limits.values())


def _exact(amount: float) -> str:
    """`amount` as short as it can be written without rounding: two ceilings never read as one ("1e+06" was both
    1,000,000.5 and 1,000,000.25, and the second budget was dropped)."""
    short = f"{amount:g}"
    return short if float(short) == amount else repr(amount)


def worst_prices(config: Config, prices: Mapping[str, Price]) -> dict[str, Price | None]:
    """The highest input and output price a request for each alias may incur, following fallbacks;
    None when any candidate has no known price."""
    result: dict[str, Price | None] = {}
    for alias in config.models:
        reachable = reachable_deployments(config, alias)
        found = [look_up(prices, owner) or look_up(prices, d.model) for owner, d in reachable]
        known = [p for p in found if p is not None]
        if not known or len(known) != len(found):
            result[alias] = None
            continue
        highest_write = max(p.cache_write or 0.0 for p in known)
        result[alias] = Price(
            max(p.input for p in known),
            max(p.output for p in known),
            None,
            highest_write,
            max(p.cache_write_1h or 0.0 for p in known),
            max(p.audio_input or 0.0 for p in known),
            max(p.audio_output or 0.0 for p in known),
        )
    return result


def output_limits(config: Config) -> dict[str, int | None]:
    """The most output tokens any deployment a request for each alias may reach is configured to write, following
    fallbacks; None when one of them has no limit (it may write up to the tenant's cap)."""
    result: dict[str, int | None] = {}
    for alias in config.models:
        limits = [d.max_output_tokens for _, d in reachable_deployments(config, alias)]
        result[alias] = None if None in limits else max(limit for limit in limits if limit is not None)
    return result


def merge_policies(defaults: Policies, overrides: PolicyOverrides) -> Policies:
    """Tenant overrides win field by field over the defaults."""
    injection = InjectionPolicy(
        action=overrides.injection.action or defaults.injection.action,
        threshold=defaults.injection.threshold
        if overrides.injection.threshold is None
        else overrides.injection.threshold,
    )
    pii = PiiPolicy(
        action=overrides.pii.action or defaults.pii.action,
        entities=defaults.pii.entities if overrides.pii.entities is None else overrides.pii.entities,
    )
    return Policies(injection=injection, pii=pii)


def provider_target(config: Config, provider_name: str, model: str, api_key_override: str | None) -> Target:
    provider = config.providers[provider_name]
    base_url = (DEFAULT_BASE_URLS[provider.type] if provider.base_url is None else provider.base_url).rstrip("/")
    return Target(
        provider=provider_name,
        model=model,
        base_url=base_url,
        api_key=api_key_override if api_key_override is not None else provider.api_key,
        api_version=provider.api_version,
        headers=tuple(sorted(provider.headers.items())),
    )


def provider_transports(config: Config) -> dict[str, Transport]:
    """Each provider's proxy and CAs, settled once per load: the environment's proxies as they are now, a CA file
    as it is now (a reload reads a rotated one again)."""
    environment = urllib.request.getproxies_environment()
    contexts: dict[str, ssl.SSLContext] = {}
    transports: dict[str, Transport] = {}
    for name, provider in config.providers.items():
        base_url = provider.base_url or DEFAULT_BASE_URLS.get(provider.type, "")
        proxy = provider.proxy if provider.proxy is not None else _environment_proxy(environment, base_url)
        tls = None
        if provider.ca_bundle:  # ("": an unset ${VAR})
            tls = contexts.get(provider.ca_bundle)
            if tls is None:
                tls = contexts[provider.ca_bundle] = ssl.create_default_context()
                try:
                    tls.load_verify_locations(cafile=provider.ca_bundle)  # besides the system's, which it loaded
                except (OSError, ssl.SSLError) as exc:  # (changed since the schema read it: a rotation under way)
                    raise ConfigError([f"providers.{name}.ca_bundle: cannot be read ({type(exc).__name__})"]) from None
        transports[name] = Transport(proxy=proxy or None, tls=tls)
    return transports


def _environment_proxy(environment: Mapping[str, str], base_url: str) -> str | None:
    """HTTPS_PROXY or HTTP_PROXY for the URL's scheme (not ALL_PROXY, often a SOCKS one for other tools), unless
    NO_PROXY names its host. A value without a scheme is taken as http:// (as curl does); one of another scheme
    (socks5://) is not used: this client speaks only to HTTP proxies."""
    url = urlsplit(base_url)
    proxy = environment.get(url.scheme)
    if not proxy or not url.hostname or urllib.request.proxy_bypass(url.hostname):
        return None
    if "://" not in proxy:
        return "http://" + proxy
    return proxy if proxy.startswith(("http://", "https://")) else None


def _route(
    config: Config,
    alias: str,
    model: ModelConfig,
    disabled: Mapping[str, str],
    credentials: Mapping[str, str],
    prices: Mapping[str, Price],
    transports: Mapping[str, Transport],
) -> ModelRoute:
    deployments: list[Deployment] = []
    reasons: list[str] = []
    for d in model.deployments:
        provider = config.providers[d.provider]
        # "" is an unset ${VAR}: never fall back to the public default with a tenant's own key
        has_url = bool(provider.base_url) or (provider.base_url is None and provider.type in DEFAULT_BASE_URLS)
        if d.provider in disabled and (d.provider not in credentials or not has_url):
            reasons.append(f"provider '{d.provider}' is disabled ({disabled[d.provider]})")
            continue
        if d.weight == 0:
            continue
        target = provider_target(config, d.provider, d.model, credentials.get(d.provider))
        price = look_up(prices, alias) or look_up(prices, d.model)
        transport = transports.get(d.provider, DIRECT)
        adapter = adapter_for(config.providers[d.provider].type)
        deployments.append(Deployment(adapter, target, d.weight, price, transport, d.max_output_tokens))
    first_byte = model.first_byte_timeout_s
    return ModelRoute(
        alias=alias,
        deployments=tuple(deployments),
        fallbacks=tuple(model.fallbacks),
        retries=model.retries,
        timeouts=Timeouts(model.connect_timeout_s, first_byte, model.timeout_s),
        unavailable_reason=None if deployments else "; ".join(reasons) or "no deployment has a weight above 0",
        circuit_failures=model.circuit.failures,
        circuit_cooldown_s=model.circuit.cooldown_s,
    )


def _model_objects(routes: Mapping[str, ModelRoute], created: int) -> list[dict[str, object]]:
    """OpenAI `Model` objects for the models a tenant may use and that have an enabled deployment."""
    return [
        {"id": alias, "object": "model", "created": created, "owned_by": route.deployments[0].target.provider}
        for alias, route in sorted(routes.items())
        if route.deployments
    ]


def _tenant(
    config: Config,
    name: str,
    tenant: TenantConfig,
    shared: Mapping[str, ModelRoute],
    disabled: Mapping[str, str],
    created: int,
    guard_parts: tuple[InjectionDetector, dict[tuple[str, ...], PiiScanner]],
    prices: Mapping[str, Price],
    transports: Mapping[str, Transport],
) -> Tenant:
    allowed = list(config.models) if "*" in tenant.models else tenant.models
    credentials = {provider: c.api_key for provider, c in tenant.credentials.items()}
    routes: dict[str, ModelRoute] = {}
    for alias in allowed:
        model = config.models[alias]
        uses_own_key = any(d.provider in credentials for d in model.deployments)
        routes[alias] = (
            _route(config, alias, model, disabled, credentials, prices, transports) if uses_own_key else shared[alias]
        )
    policies = merge_policies(config.defaults.policies, tenant.policies)
    models = _model_objects(routes, created)
    return Tenant(
        name=name,
        routes=routes,
        max_tokens_per_request=tenant.max_tokens_per_request or config.defaults.max_tokens_per_request,
        policies=policies,
        guard=build_guard(policies, *guard_parts),
        limits=tenant_limits(tenant),
        budgets=tuple(tenant.budgets),
        rate_limits=tenant.rate_limits,
        log_content=tenant.log_content,
        models_body=orjson.dumps({"object": "list", "data": models}),
        model_bodies={str(m["id"]): orjson.dumps(m) for m in models},
    )


def build_runtime(loaded: LoadedConfig) -> Runtime:
    config = loaded.config
    disabled = loaded.disabled_providers
    now = time.time()
    prices = price_table(config.pricing)
    transports = provider_transports(config)
    shared = {
        alias: _route(config, alias, model, disabled, {}, prices, transports) for alias, model in config.models.items()
    }
    guard_parts: tuple[InjectionDetector, dict[tuple[str, ...], PiiScanner]] = (InjectionDetector(), {})
    tenants = {
        name: _tenant(config, name, t, shared, disabled, int(now), guard_parts, prices, transports)
        for name, t in config.tenants.items()
    }
    keys = {
        key.sha256: KeyIdentity(tenants[name], key.id) for name, tenant in config.tenants.items() for key in tenant.keys
    }
    return Runtime(
        config=config,
        keys=keys,
        tenants=tenants,
        model_names=frozenset(config.models),
        disabled_providers=dict(disabled),
        loaded_at=now,
        worst_prices=worst_prices(config, prices),
        output_limits=output_limits(config),
        transports=transports,
    )
