"""The shape of config.yaml (see DESIGN.md), validated with pydantic.

Field names are fixed: tools and tests write these files. Every model forbids unknown keys so that
a typo is an error that names its path, not a silently ignored setting.
"""

from __future__ import annotations

import ssl
from typing import Annotated, Literal, get_args
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from policies.redis_client import RedisAddress, RedisURLError

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$", to_lower=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Window = Literal["minute", "hour", "day", "month"]
InjectionAction = Literal["block", "flag", "off"]
PiiAction = Literal["redact", "block", "flag", "off"]
PiiEntity = Literal["email", "phone", "credit_card", "ssn", "iban", "ip_address", "secret"]
ALL_PII_ENTITIES: tuple[PiiEntity, ...] = get_args(PiiEntity)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf: no deadline could hold it


class ServerConfig(Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=256)
    max_body_bytes: int = Field(4_000_000, ge=1024)
    drain_timeout_s: float = Field(30, ge=0)  # after the listener closes: in-flight requests and streams finish
    readiness_grace_s: float = Field(5, ge=0, le=300)  # SIGTERM: /readyz says 503 this long before the listener closes
    request_log: bool = True  # one JSON line per model request (request id, tenant, model, status, latency)
    body_timeout_s: float = Field(30, gt=0)  # a client must finish sending its request body within this


def _split_url(value: str, invalid: str) -> SplitResult:
    """`value`'s parts; ValueError(`invalid`), never quoting the value (it may hold a secret), when it is no URL or
    its port is not a number in range."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port that is not a number in range)
    except ValueError:
        raise ValueError(invalid) from None
    return parts


def _redis_url(value: str | None) -> str | None:
    """Refused here, by the client's own parse, whatever the client would refuse at start-up (a path that is not a
    database number, a port that is not one, a password with an unescaped / or #), so that check-config and a
    reload say so rather than the next start. The value is not echoed: it may hold a password."""
    if value is None:
        return None
    if not value.startswith(("redis://", "rediss://")) or "?" in value:
        raise ValueError("must be a redis:// or rediss:// URL without query options")
    try:
        RedisAddress.from_url(value)
    except RedisURLError as exc:
        raise ValueError(f"{exc} (a / # or @ in the password must be %-escaped)") from None
    return value


class StateConfig(Strict):
    redis_url: Annotated[str | None, AfterValidator(_redis_url)] = Field(None, repr=False)
    on_error: Literal["fail_closed", "fail_open"] = "fail_closed"


def _postgres_url(value: str | None) -> str | None:
    """The value is never echoed: it may hold a password. A password with an unescaped / ? or # ends the URL's
    address early, and the rest, `@` and all, is read as its path, query or fragment: the driver refuses such a DSN
    (every event only spooled) and whatever names the store shows the password as part of the database's path."""
    if value is None:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL")
    invalid = "must be a valid postgresql:// URL (a / ? # or @ in the password must be %-escaped)"
    parts = _split_url(value, invalid)
    names = [segment.partition("=")[0] for segment in parts.query.split("&")]
    if "@" in parts.path or "@" in parts.fragment or any("@" in name for name in names):
        raise ValueError(invalid)
    return value


class EventsConfig(Strict):
    postgres_dsn: Annotated[str | None, AfterValidator(_postgres_url)] = Field(None, repr=False)
    sqlite_path: str = "gateway-usage.sqlite"
    spool_dir: str = "spool"


class AdminConfig(Strict):
    token_sha256: Sha256Hex | None = None


def _clean_credential(value: str | None) -> str | None:
    """Surrounding whitespace is stripped (a mounted Secret often ends in a newline); any other
    control character would make an invalid HTTP header and is refused."""
    if value is None:
        return None
    value = value.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


Credential = Annotated[str, AfterValidator(_clean_credential)]


def _proxy_url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL, or empty for no proxy")  # (the value is not quoted)
    return value


def _base_url(value: str | None) -> str | None:
    """An http:// or https:// URL naming a host, without credentials ("" is an unset ${VAR}: its provider is
    disabled). The value is not echoed: it may hold credentials."""
    if not value:
        return value
    parts = _split_url(value, "must be a valid http:// or https:// URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL naming a host")
    if "@" in parts.netloc:  # aiohttp refuses them beside an Authorization header, and base_url is shown as it is
        raise ValueError("must not hold credentials (user:password@): give the key as api_key, or a header in headers")
    return value


def _ca_bundle(value: str) -> str:
    if not value:  # an unset ${VAR}: its provider is disabled
        return value
    try:
        ssl.create_default_context(cafile=value)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot be read as PEM certificates ({type(exc).__name__}: {exc.strerror or exc})") from None
    return value


class ProviderConfig(Strict):
    type: str
    base_url: Annotated[str | None, AfterValidator(_base_url)] = None
    api_key: Credential | None = Field(None, repr=False)  # repr=False: a logged config shows no secret
    api_version: str | None = None
    headers: dict[str, Credential] = Field(default_factory=dict, repr=False)
    # egress: an HTTP(S) proxy for this provider (may hold credentials); unset, HTTPS_PROXY/HTTP_PROXY/NO_PROXY
    # decide; "" for none whatever the environment says
    proxy: Annotated[Credential, AfterValidator(_proxy_url)] | None = Field(None, repr=False)
    ca_bundle: Annotated[str, AfterValidator(_ca_bundle)] | None = None  # PEM: CAs trusted besides the system's


class DeploymentConfig(Strict):
    provider: Name
    model: Name
    weight: int = Field(1, ge=0)
    # the most output tokens the upstream model may write (claude-3-haiku: 4,096): the default limit sent when a
    # request gives none is the smaller of this and the tenant's max_tokens_per_request; None: the tenant's cap
    max_output_tokens: int | None = Field(None, ge=1)


class CircuitConfig(Strict):
    failures: int = Field(5, ge=1)
    cooldown_s: float = Field(30, gt=0)


class ModelConfig(Strict):
    deployments: list[DeploymentConfig] = Field(min_length=1)
    fallbacks: list[Name] = Field(default_factory=list)
    retries: int = Field(2, ge=0, le=10)
    timeout_s: float = Field(120, gt=0)
    connect_timeout_s: float = Field(5, gt=0)
    first_byte_timeout_s: float | None = Field(None, gt=0)  # None: bounded by timeout_s only
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    @model_validator(mode="after")
    def _some_weight(self) -> ModelConfig:
        if not any(d.weight > 0 for d in self.deployments):
            raise ValueError("at least one deployment needs a weight above 0")
        return self


class PriceConfig(Strict):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)  # Anthropic's 1h cache TTL; unset: cache_write's price
    audio_input: float | None = Field(None, ge=0)  # OpenAI's audio models; unset: input's price
    audio_output: float | None = Field(None, ge=0)  # unset: output's price


class InjectionPolicy(Strict):
    action: InjectionAction = "block"
    threshold: float = Field(0.8, ge=0, le=1)


class PiiPolicy(Strict):
    action: PiiAction = "redact"
    entities: list[PiiEntity] = Field(default_factory=lambda: list(ALL_PII_ENTITIES))


class Policies(Strict):
    injection: InjectionPolicy = Field(default_factory=InjectionPolicy)
    pii: PiiPolicy = Field(default_factory=PiiPolicy)


class InjectionOverride(Strict):
    action: InjectionAction | None = None
    threshold: float | None = Field(None, ge=0, le=1)


class PiiOverride(Strict):
    action: PiiAction | None = None
    entities: list[PiiEntity] | None = None


class PolicyOverrides(Strict):
    injection: InjectionOverride = Field(default_factory=InjectionOverride)
    pii: PiiOverride = Field(default_factory=PiiOverride)


class Defaults(Strict):
    max_tokens_per_request: int = Field(4096, ge=1)
    policies: Policies = Field(default_factory=Policies)


class KeyConfig(Strict):
    id: Name
    sha256: Sha256Hex


class BudgetConfig(Strict):
    tokens: int | None = Field(None, ge=1)
    usd: float | None = Field(None, gt=0)
    per: Window

    @model_validator(mode="after")
    def _one_unit(self) -> BudgetConfig:
        if (self.tokens is None) == (self.usd is None):
            raise ValueError("a budget has exactly one of tokens or usd")
        return self


class RateLimits(Strict):
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class CredentialConfig(Strict):
    api_key: Credential = Field(repr=False)


class TenantConfig(Strict):
    keys: list[KeyConfig] = Field(default_factory=list)
    models: list[Name] = Field(default_factory=list)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    log_content: bool = False
    max_tokens_per_request: int | None = Field(None, ge=1)
    credentials: dict[Name, CredentialConfig] = Field(default_factory=dict)
    policies: PolicyOverrides = Field(default_factory=PolicyOverrides)


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    providers: dict[Name, ProviderConfig] = Field(default_factory=dict)
    models: dict[Name, ModelConfig] = Field(default_factory=dict)
    pricing: dict[Name, PriceConfig] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    tenants: dict[Name, TenantConfig] = Field(default_factory=dict)
