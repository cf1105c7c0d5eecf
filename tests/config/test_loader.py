"""config.yaml loading, validation messages, interpolation, secrets, and the compiled runtime."""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.config import secrets
from gateway.config.loader import ConfigError, LoadedConfig, load_file, load_text
from gateway.config.schema import InjectionPolicy, PiiPolicy, Policies
from gateway.runtime import ModelRoute, build_runtime

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
MASTER = "test-master-key-0123456789"
ALL_ENTITIES = ["email", "phone", "credit_card", "ssn", "iban", "ip_address", "secret"]
PROVIDER_VARS = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "AZURE_OPENAI_API_KEY": "az"}


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, environ or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# ---------------------------------------------------------------- config.example.yaml


def test_example_loads_with_unset_provider_vars_disabled_not_fatal() -> None:
    loaded = load_file(EXAMPLE, {})
    assert dict(loaded.disabled_providers) == {
        "openai": "OPENAI_API_KEY is not set",
        "anthropic": "ANTHROPIC_API_KEY is not set",
        "azure": "AZURE_OPENAI_API_KEY is not set",
    }
    assert list(loaded.config.providers) == ["openai", "anthropic", "azure", "demo"]
    assert list(loaded.config.models) == [
        "demo",
        "gpt-4o-mini",
        "claude-haiku",
        "text-embedding-3-small",
        "demo-embedding",
    ]
    assert list(loaded.config.tenants) == ["acme"]
    # the demo key documented in the file's header really belongs to acme
    runtime = build_runtime(loaded)
    identity = runtime.keys[hashlib.sha256(b"sk-gw-demo-key-for-acme").hexdigest()]
    assert (identity.tenant.name, identity.key_id) == ("acme", "acme-demo")
    assert loaded.config.admin.token_sha256 == hashlib.sha256(b"admin-demo-token").hexdigest()


def test_example_with_provider_vars_set_enables_every_provider() -> None:
    loaded = load_file(EXAMPLE, PROVIDER_VARS)
    assert dict(loaded.disabled_providers) == {}
    assert loaded.config.providers["openai"].api_key == "sk-o"
    assert loaded.config.providers["anthropic"].api_key == "sk-a"
    assert loaded.config.providers["azure"].api_key == "az"
    routes = build_runtime(loaded).tenants["acme"].routes
    assert all(route.unavailable_reason is None for route in routes.values())
    assert [d.label for d in routes["gpt-4o-mini"].deployments] == [
        "openai/gpt-4o-mini",
        "azure/my-gpt-4o-mini-deployment",
    ]


def test_example_with_one_provider_var_set_disables_only_the_others() -> None:
    loaded = load_file(EXAMPLE, {"OPENAI_API_KEY": "sk-o"})
    assert sorted(loaded.disabled_providers) == ["anthropic", "azure"]
    routes = build_runtime(loaded).tenants["acme"].routes
    assert [d.label for d in routes["gpt-4o-mini"].deployments] == ["openai/gpt-4o-mini"]
    assert routes["gpt-4o-mini"].unavailable_reason is None
    assert routes["claude-haiku"].deployments == ()
    assert (
        routes["claude-haiku"].unavailable_reason == "provider 'anthropic' is disabled (ANTHROPIC_API_KEY is not set)"
    )


def test_load_file_that_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_file(missing, {})
    assert info.value.problems == [f"{missing}: cannot be read (No such file or directory)"]


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("", encoding="utf-8")
    loaded = load_file(path, {})
    assert loaded.config.server.port == 8080
    assert loaded.config.server.workers == 1
    assert loaded.config.defaults.policies.pii.entities == ALL_ENTITIES
    assert dict(loaded.disabled_providers) == {}


# ---------------------------------------------------------------- bad configs: one exact problem each

H1 = "a" * 64
MOCK = "providers: {d: {type: mock}}\n"

BAD_CONFIGS = [
    pytest.param(
        "tenants: {acme: {budgets: [{tokens: 5, per: week}]}}",
        "tenants.acme.budgets[0].per: must be one of minute, hour, day, month",
        id="budget-window",
    ),
    pytest.param("serverr: {port: 1}", "serverr: unknown field", id="unknown-top-level-field"),
    pytest.param(
        "providers: {openai: {type: openai, apikey: x}}",
        "providers.openai.apikey: unknown field",
        id="unknown-nested-field",
    ),
    pytest.param(
        MOCK + "models: {m: {deployments: [{model: x}]}}",
        "models.m.deployments[0].provider: is required",
        id="missing-required",
    ),
    pytest.param("providers: {x: {base_url: 'http://h'}}", "providers.x.type: is required", id="provider-without-type"),
    pytest.param(
        "tenants: {a: {keys: [{id: k, sha256: abc}]}}",
        "tenants.a.keys[0].sha256: must be 64 lowercase hex characters (a sha256)",
        id="bad-key-sha256",
    ),
    pytest.param(
        f"admin: {{token_sha256: '{'g' * 64}'}}",
        "admin.token_sha256: must be 64 lowercase hex characters (a sha256)",
        id="bad-admin-sha256",
    ),
    pytest.param(
        "providers: {x: {type: foo}}",
        "providers.x.type: must be one of anthropic, azure, mock, openai",
        id="unknown-provider-type",
    ),
    pytest.param(
        "providers: {az: {type: azure, api_key: k}}",
        "providers.az.base_url: is required for type azure",
        id="azure-without-base-url",
    ),
    pytest.param(
        MOCK + "models: {m: {deployments: [{provider: nope, model: x}]}}",
        "models.m.deployments[0].provider: unknown provider 'nope'",
        id="deployment-unknown-provider",
    ),
    pytest.param(
        MOCK + "models: {m: {deployments: [{provider: d, model: x}], fallbacks: [zz]}}",
        "models.m.fallbacks[0]: unknown model 'zz'",
        id="fallback-unknown-model",
    ),
    pytest.param(
        MOCK + "models: {m: {deployments: [{provider: d, model: x}], fallbacks: [m]}}",
        "models.m.fallbacks[0]: a model cannot fall back to itself",
        id="fallback-to-itself",
    ),
    pytest.param(
        MOCK + "models: {m: {deployments: [{provider: d, model: x, weight: 0}]}}",
        "models.m: at least one deployment needs a weight above 0",
        id="all-weights-zero",
    ),
    pytest.param(
        MOCK + "models: {m: {deployments: [{provider: d, model: x}]}}\ntenants: {a: {models: [m, zz]}}",
        "tenants.a.models[1]: unknown model 'zz'",
        id="tenant-model-unknown",
    ),
    pytest.param(
        f"tenants:\n  a: {{keys: [{{id: k1, sha256: '{H1}'}}]}}\n  b: {{keys: [{{id: k2, sha256: '{H1}'}}]}}",
        "tenants.b.keys[0].sha256: the same key is already listed at tenants.a.keys[0]",
        id="duplicate-hash-across-tenants",
    ),
    pytest.param(
        f"tenants: {{a: {{keys: [{{id: k, sha256: '{H1}'}}, {{id: k, sha256: '{'b' * 64}'}}]}}}}",
        "tenants.a.keys[1].id: duplicate key id 'k'",
        id="duplicate-key-id",
    ),
    pytest.param(
        "tenants: {a: {credentials: {nope: {api_key: x}}}}",
        "tenants.a.credentials.nope: unknown provider",
        id="credentials-unknown-provider",
    ),
    pytest.param(
        "tenants: {acme: {budgets: [{tokens: 5, usd: 3, per: day}]}}",
        "tenants.acme.budgets[0]: a budget has exactly one of tokens or usd",
        id="budget-tokens-and-usd",
    ),
    pytest.param(
        "tenants: {acme: {budgets: [{per: day}]}}",
        "tenants.acme.budgets[0]: a budget has exactly one of tokens or usd",
        id="budget-neither",
    ),
    pytest.param(
        "server: {workers: 2}",
        "server.workers: more than 1 worker needs state.redis_url (in-process counters would multiply "
        "every budget and rate limit by the number of workers)",
        id="workers-without-redis",
    ),
    pytest.param(
        "events: {postgres_dsn: '${PG_DSN}'}",
        "events.postgres_dsn: environment variable PG_DSN is not set",
        id="var-unset-outside-providers",
    ),
    pytest.param(
        "tenants: {a: {log_content: false, rate_limits: {rpm: '${RPM:-10}'}}}\nstate: {redis_url: '${REDIS}'}",
        "state.redis_url: environment variable REDIS is not set",
        id="var-unset-in-state",
    ),
    pytest.param(
        "events: {sqlite_path: '${A}/${B}.sqlite'}",
        "events.sqlite_path: environment variable A, B is not set",
        id="two-vars-unset-in-one-value",
    ),
    pytest.param(
        "server:\n  port: 8080\n  host: a: b\n",
        "not valid YAML at line 3, column 10: mapping values are not allowed here",
        id="invalid-yaml",
    ),
    pytest.param("- a\n- b\n", "(top level): must be a mapping", id="top-level-list"),
    pytest.param("just a string", "(top level): must be a mapping", id="top-level-scalar"),
    pytest.param(
        "state: {on_error: explode}",
        "state.on_error: must be one of fail_closed, fail_open",
        id="on-error-literal",
    ),
    pytest.param(
        "defaults: {policies: {pii: {entities: [email, passport]}}}",
        "defaults.policies.pii.entities[1]: must be one of email, phone, credit_card, ssn, iban, ip_address, secret",
        id="unknown-pii-entity",
    ),
    pytest.param(
        "server: {port: 70000}",
        "server.port: input should be less than or equal to 65535",
        id="port-range",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_reports_exact_problem(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_several_problems_are_all_listed() -> None:
    text = """
server: {port: 0, colour: red}
events: {postgres_dsn: "${PG_DSN}"}
providers:
  sealed: {type: openai, api_key: "enc:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
tenants:
  acme:
    budgets: [{tokens: 10, per: week}, {usd: 1, tokens: 2, per: day}]
    log_content: maybe
"""
    assert problems_of(text, {secrets.MASTER_KEY_ENV: MASTER}) == [
        "events.postgres_dsn: environment variable PG_DSN is not set",
        "providers.sealed.api_key: cannot be decrypted with GATEWAY_MASTER_KEY (wrong key or damaged value)",
        "server.port: input should be greater than or equal to 1",
        "server.colour: unknown field",
        "tenants.acme.budgets[0].per: must be one of minute, hour, day, month",
        "tenants.acme.budgets[1]: a budget has exactly one of tokens or usd",
        "tenants.acme.log_content: input should be a valid boolean, unable to interpret input",
    ]


def test_several_cross_reference_problems_are_all_listed() -> None:
    text = f"""
server: {{workers: 4}}
providers: {{d: {{type: mock}}, x: {{type: nope}}}}
models:
  m: {{deployments: [{{provider: d, model: a}}, {{provider: ghost, model: b}}], fallbacks: [zz]}}
tenants:
  a: {{models: [m, yy], keys: [{{id: k, sha256: "{H1}"}}]}}
  b: {{keys: [{{id: k, sha256: "{H1}"}}], credentials: {{ghost: {{api_key: x}}}}}}
"""
    assert problems_of(text) == [
        "providers.x.type: must be one of anthropic, azure, mock, openai",
        "models.m.deployments[1].provider: unknown provider 'ghost'",
        "models.m.fallbacks[0]: unknown model 'zz'",
        "tenants.a.models[1]: unknown model 'yy'",
        "tenants.b.keys[0].sha256: the same key is already listed at tenants.a.keys[0]",
        "tenants.b.credentials.ghost: unknown provider",
        "server.workers: more than 1 worker needs state.redis_url (in-process counters would multiply "
        "every budget and rate limit by the number of workers)",
    ]


def test_schema_and_cross_reference_problems_are_listed_together() -> None:
    text = "server: {port: 0}\ntenants: {a: {models: [nope]}}"
    assert problems_of(text) == [
        "server.port: input should be greater than or equal to 1",
        "tenants.a.models[0]: unknown model 'nope'",
    ]


def test_duplicate_yaml_key_is_a_problem() -> None:
    text = f"tenants:\n  acme: {{keys: [{{id: k1, sha256: '{H1}'}}]}}\n  acme: {{models: []}}\n"
    problems = problems_of(text)
    assert len(problems) == 1
    assert "acme" in problems[0]


# ---------------------------------------------------------------- ${VAR} interpolation


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "x", "B": "y"}, "xy"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-/var/lib/gw.sqlite}", {}, "/var/lib/gw.sqlite"),
        ("$A", {"A": "x"}, "$A"),
        ("plain", {"A": "x"}, "plain"),
    ],
)
def test_interpolation(value: str, environ: dict[str, str], expected: str) -> None:
    loaded = load_text(f"events: {{sqlite_path: '{value}'}}", environ)
    assert loaded.config.events.sqlite_path == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "tenants: {a: {rate_limits: {rpm: '${RPM}'}}}",
            "tenants.a.rate_limits.rpm: environment variable RPM is not set",
            id="int-field",
        ),
        pytest.param(
            "admin: {token_sha256: 'enc:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'}",
            "admin.token_sha256: GATEWAY_MASTER_KEY is not set, so enc: values cannot be decrypted",
            id="sha256-field",
        ),
    ],
)
def test_one_unresolvable_value_is_one_problem(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_empty_variable_counts_as_unset() -> None:
    assert problems_of("events: {postgres_dsn: '${PG_DSN}'}", {"PG_DSN": ""}) == [
        "events.postgres_dsn: environment variable PG_DSN is not set"
    ]


def test_interpolated_number_is_validated_as_number() -> None:
    loaded = load_text(
        "server: {port: '${PORT:-9090}', workers: '${W}'}\nstate: {redis_url: '${R}'}", {"W": "3", "R": "redis://r"}
    )
    assert (loaded.config.server.port, loaded.config.server.workers) == (9090, 3)


def test_unset_var_in_any_provider_field_disables_that_provider_only() -> None:
    text = """
providers:
  a: {type: openai, api_key: "${KEY_A}"}
  b: {type: openai, api_key: "k", headers: {X-Org: "${ORG_B}"}}
  c: {type: anthropic, api_key: "${KEY_C:-default-key}"}
"""
    loaded = load_text(text, {})
    assert dict(loaded.disabled_providers) == {"a": "KEY_A is not set", "b": "ORG_B is not set"}
    assert loaded.config.providers["c"].api_key == "default-key"


def test_unset_base_url_var_disables_provider_instead_of_failing() -> None:
    text = 'providers:\n  az: {type: azure, base_url: "${AZ_URL}", api_key: "${AZ_KEY}", api_version: "2024-10-21"}\n'
    loaded = load_text(text, {})
    assert dict(loaded.disabled_providers) == {"az": "AZ_URL, AZ_KEY is not set"}


# ---------------------------------------------------------------- enc: values in config


def test_enc_values_decrypt_with_master_key_from_environ_mapping() -> None:
    provider_secret = secrets.encrypt("sk-provider-plain", MASTER)
    tenant_secret = secrets.encrypt("sk-tenant-plain", MASTER)
    text = f"""
providers: {{openai: {{type: openai, api_key: "{provider_secret}"}}}}
tenants: {{acme: {{credentials: {{openai: {{api_key: "{tenant_secret}"}}}}}}}}
"""
    loaded = load_text(text, {secrets.MASTER_KEY_ENV: MASTER})
    assert loaded.config.providers["openai"].api_key == "sk-provider-plain"
    assert loaded.config.tenants["acme"].credentials["openai"].api_key == "sk-tenant-plain"


def test_var_holding_an_enc_value_is_decrypted() -> None:
    sealed = secrets.encrypt("sk-from-env", MASTER)
    loaded = load_text(
        'providers: {o: {type: openai, api_key: "${O_KEY}"}}', {"O_KEY": sealed, secrets.MASTER_KEY_ENV: MASTER}
    )
    assert loaded.config.providers["o"].api_key == "sk-from-env"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {secrets.MASTER_KEY_ENV: "another-master-key-000"},
            "{path}: cannot be decrypted with GATEWAY_MASTER_KEY (wrong key or damaged value)",
            id="wrong-key",
        ),
        pytest.param({}, "{path}: GATEWAY_MASTER_KEY is not set, so enc: values cannot be decrypted", id="no-key"),
        pytest.param(
            {secrets.MASTER_KEY_ENV: ""},
            "{path}: GATEWAY_MASTER_KEY is not set, so enc: values cannot be decrypted",
            id="empty-key",
        ),
    ],
)
@pytest.mark.parametrize(
    ("template", "path"),
    [
        ('providers: {{openai: {{type: openai, api_key: "{v}"}}}}', "providers.openai.api_key"),
        (
            'providers: {{openai: {{type: openai}}}}\ntenants: {{t: {{credentials: {{openai: {{api_key: "{v}"}}}}}}}}',
            "tenants.t.credentials.openai.api_key",
        ),
    ],
)
def test_enc_value_that_cannot_be_decrypted(environ: dict[str, str], expected: str, template: str, path: str) -> None:
    plaintext = "sk-very-secret-plaintext-42"
    text = template.format(v=secrets.encrypt(plaintext, MASTER))
    with pytest.raises(ConfigError) as info:
        load_text(text, environ)
    assert info.value.problems == [expected.format(path=path)]
    assert plaintext not in str(info.value)
    assert plaintext not in repr(info.value)


def test_decrypted_secret_never_appears_in_other_problems() -> None:
    plaintext = "sk-decrypted-ok-plaintext"
    sealed = secrets.encrypt(plaintext, MASTER)
    text = f'providers: {{o: {{type: openai, api_key: "{sealed}"}}}}\nserver: {{port: "{sealed}"}}\n'
    with pytest.raises(ConfigError) as info:
        load_text(text, {secrets.MASTER_KEY_ENV: MASTER})
    assert info.value.problems == ["server.port: input should be a valid integer, unable to parse string as an integer"]
    assert plaintext not in str(info.value)


# ---------------------------------------------------------------- secrets module


@pytest.mark.parametrize("plaintext", ["sk-abc", "x", "ünïcødé 🔑 secret", "a" * 5000])
def test_encrypt_decrypt_round_trip(plaintext: str) -> None:
    sealed = secrets.encrypt(plaintext, MASTER)
    assert sealed.startswith("enc:v1:")
    assert "=" not in sealed
    assert secrets.decrypt(sealed, MASTER) == plaintext


def test_ciphertext_does_not_contain_plaintext() -> None:
    assert "sk-long-recognisable-secret" not in secrets.encrypt("sk-long-recognisable-secret", MASTER)


def test_two_encryptions_of_the_same_value_differ() -> None:
    first, second = secrets.encrypt("same", MASTER), secrets.encrypt("same", MASTER)
    assert first != second
    assert secrets.decrypt(first, MASTER) == secrets.decrypt(second, MASTER) == "same"


def _tamper(sealed: str, index: int) -> str:
    encoded = sealed[len("enc:v1:") :]
    raw = bytearray(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    raw[index] ^= 0x01
    return "enc:v1:" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize(
    "index", [0, 11, 12, 20, -1], ids=["nonce-start", "nonce-end", "ct-start", "ct-mid", "tag-end"]
)
def test_tampered_ciphertext_is_rejected(index: int) -> None:
    sealed = secrets.encrypt("tamper-me-please", MASTER)
    with pytest.raises(
        secrets.SecretError, match=r"^cannot be decrypted with GATEWAY_MASTER_KEY \(wrong key or damaged"
    ):
        secrets.decrypt(_tamper(sealed, index), MASTER)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("enc:v1:", r"^cannot be decrypted with GATEWAY_MASTER_KEY"),
        ("enc:v1:!!!not-base64!!!", r"^cannot be decrypted with GATEWAY_MASTER_KEY"),
        ("enc:v2:AAAA", r"^not an enc:v1: value$"),
        ("plain", r"^not an enc:v1: value$"),
    ],
)
def test_malformed_values_are_rejected(value: str, message: str) -> None:
    with pytest.raises(secrets.SecretError, match=message):
        secrets.decrypt(value, MASTER)


def test_wrong_master_key_is_rejected() -> None:
    sealed = secrets.encrypt("v", MASTER)
    with pytest.raises(secrets.SecretError, match="wrong key or damaged value"):
        secrets.decrypt(sealed, MASTER + "x")


@pytest.mark.parametrize("master", ["", "short", "x" * 15])
def test_master_key_shorter_than_16_chars_is_rejected_by_encrypt(master: str) -> None:
    with pytest.raises(secrets.SecretError, match=r"^GATEWAY_MASTER_KEY must be at least 16 characters$"):
        secrets.encrypt("v", master)


def test_master_key_of_exactly_16_chars_is_accepted() -> None:
    assert secrets.decrypt(secrets.encrypt("v", "x" * 16), "x" * 16) == "v"


def test_decrypt_with_short_master_key_is_rejected() -> None:
    sealed = secrets.encrypt("v", MASTER)
    with pytest.raises(secrets.SecretError):
        secrets.decrypt(sealed, "short")


def test_decrypt_with_short_master_key_says_why() -> None:
    sealed = secrets.encrypt("v", MASTER)
    with pytest.raises(secrets.SecretError, match=r"^GATEWAY_MASTER_KEY must be at least 16 characters$"):
        secrets.decrypt(sealed, "short")


# ---------------------------------------------------------------- runtime

RUNTIME_CONFIG = """
providers:
  p1: {type: openai, api_key: "k-p1"}
  p2: {type: openai, base_url: "https://p2.example/v1/", api_key: "k-p2"}
  p3: {type: mock}
  offline: {type: anthropic, api_key: "${OFF_KEY}"}
models:
  weighted:
    deployments:
      - {provider: p1, model: a, weight: 3}
      - {provider: p2, model: b, weight: 1}
      - {provider: p3, model: c, weight: 0}
  plain: {deployments: [{provider: p1, model: plain}]}
  only-off: {deployments: [{provider: offline, model: claude}]}
  half-off:
    deployments: [{provider: offline, model: claude, weight: 5}, {provider: p3, model: m}]
defaults:
  max_tokens_per_request: 1000
  policies:
    injection: {action: flag, threshold: 0.5}
    pii: {action: redact, entities: [email, phone]}
tenants:
  base:
    models: ["*"]
  strict:
    models: [plain]
    max_tokens_per_request: 50
    policies: {pii: {action: block}, injection: {threshold: 0.9}}
  custom:
    models: [plain]
    policies: {pii: {entities: [iban]}, injection: {action: "off", threshold: 0}}
  byok:
    models: [plain, weighted]
    credentials: {p1: {api_key: "byok-secret"}}
  byok-off:
    models: [only-off]
    credentials: {offline: {api_key: "own-anthropic-key"}}
"""


@pytest.fixture(scope="module")
def loaded() -> LoadedConfig:
    return load_text(RUNTIME_CONFIG, {})


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [
        (
            "base",
            Policies(
                injection=InjectionPolicy(action="flag", threshold=0.5),
                pii=PiiPolicy(action="redact", entities=["email", "phone"]),
            ),
        ),
        (
            "strict",
            Policies(
                injection=InjectionPolicy(action="flag", threshold=0.9),
                pii=PiiPolicy(action="block", entities=["email", "phone"]),
            ),
        ),
        (
            "custom",
            Policies(
                injection=InjectionPolicy(action="off", threshold=0.0),
                pii=PiiPolicy(action="redact", entities=["iban"]),
            ),
        ),
    ],
)
def test_tenant_policies_merge_field_by_field(loaded: LoadedConfig, tenant: str, expected: Policies) -> None:
    assert build_runtime(loaded).tenants[tenant].policies == expected


def test_example_tenant_pii_block_keeps_default_entities() -> None:
    policies = build_runtime(load_file(EXAMPLE, {})).tenants["acme"].policies
    assert policies.pii == PiiPolicy(action="block", entities=ALL_ENTITIES)
    assert policies.injection == InjectionPolicy(action="block", threshold=0.8)


@pytest.mark.parametrize(("tenant", "expected"), [("base", 1000), ("strict", 50), ("byok", 1000)])
def test_max_tokens_per_request(loaded: LoadedConfig, tenant: str, expected: int) -> None:
    assert build_runtime(loaded).tenants[tenant].max_tokens_per_request == expected


@pytest.mark.parametrize(
    ("tenant", "models"),
    [
        ("base", {"weighted", "plain", "only-off", "half-off"}),
        ("strict", {"plain"}),
        ("byok", {"plain", "weighted"}),
    ],
)
def test_tenant_routes_hold_only_allowed_models(loaded: LoadedConfig, tenant: str, models: set[str]) -> None:
    assert set(build_runtime(loaded).tenants[tenant].routes) == models


def test_bring_your_own_key_replaces_provider_key_for_that_tenant_only(loaded: LoadedConfig) -> None:
    runtime = build_runtime(loaded)
    base, byok, strict = (runtime.tenants[n].routes for n in ("base", "byok", "strict"))
    assert base["plain"].deployments[0].target.api_key == "k-p1"
    assert strict["plain"].deployments[0].target.api_key == "k-p1"
    assert byok["plain"].deployments[0].target.api_key == "byok-secret"
    # only the provider the tenant has a key for changes; p2 keeps its own key
    assert [(d.label, d.target.api_key) for d in byok["weighted"].deployments] == [
        ("p1/a", "byok-secret"),
        ("p2/b", "k-p2"),
    ]
    assert [(d.label, d.target.api_key) for d in base["weighted"].deployments] == [("p1/a", "k-p1"), ("p2/b", "k-p2")]
    assert "byok-secret" not in repr(byok["plain"].deployments[0].target)


def test_bring_your_own_key_enables_a_disabled_provider_for_that_tenant(loaded: LoadedConfig) -> None:
    runtime = build_runtime(loaded)
    own = runtime.tenants["byok-off"].routes["only-off"]
    assert own.unavailable_reason is None
    assert [(d.label, d.target.api_key) for d in own.deployments] == [("offline/claude", "own-anthropic-key")]
    assert own.deployments[0].target.base_url == "https://api.anthropic.com"
    assert runtime.tenants["base"].routes["only-off"].deployments == ()


def test_model_whose_only_provider_is_disabled_is_unavailable(loaded: LoadedConfig) -> None:
    assert dict(loaded.disabled_providers) == {"offline": "OFF_KEY is not set"}
    route = build_runtime(loaded).tenants["base"].routes["only-off"]
    assert route.deployments == ()
    assert route.unavailable_reason == "provider 'offline' is disabled (OFF_KEY is not set)"


def test_disabled_deployment_is_skipped_when_another_is_enabled(loaded: LoadedConfig) -> None:
    route = build_runtime(loaded).tenants["base"].routes["half-off"]
    assert route.unavailable_reason is None
    assert [d.label for d in route.deployments] == ["p3/m"]
    assert route.pick(random.Random(0)).label == "p3/m"


def test_targets_use_default_or_configured_base_url_without_trailing_slash(loaded: LoadedConfig) -> None:
    route = build_runtime(loaded).tenants["base"].routes["weighted"]
    assert [d.target.base_url for d in route.deployments] == ["https://api.openai.com/v1", "https://p2.example/v1"]


def test_models_body_lists_only_available_models(loaded: LoadedConfig) -> None:
    body = orjson.loads(build_runtime(loaded).tenants["base"].models_body)
    assert [(m["id"], m["owned_by"]) for m in body["data"]] == [("half-off", "p3"), ("plain", "p1"), ("weighted", "p1")]


def test_weighted_pick_follows_weights_and_never_picks_weight_zero(loaded: LoadedConfig) -> None:
    route = build_runtime(loaded).tenants["base"].routes["weighted"]
    assert [d.label for d in route.deployments] == ["p1/a", "p2/b"]
    assert route.cumulative_weights == (3, 4)
    rng = random.Random(20240601)
    n = 4000
    counts = Counter(route.pick(rng).label for _ in range(n))
    assert set(counts) == {"p1/a", "p2/b"}
    assert abs(counts["p1/a"] - 3000) <= 150
    assert abs(counts["p2/b"] - 1000) <= 50


class _FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("draw", "label"),
    [(0.0, "p1/a"), (0.5, "p1/a"), (0.7499, "p1/a"), (0.75, "p2/b"), (0.9999999, "p2/b")],
)
def test_weighted_pick_boundaries(loaded: LoadedConfig, draw: float, label: str) -> None:
    route: ModelRoute = build_runtime(loaded).tenants["base"].routes["weighted"]
    assert route.pick(_FixedRandom(draw)).label == label


def test_keys_map_to_tenant_and_key_id() -> None:
    key_a, key_b = hashlib.sha256(b"key-a").hexdigest(), hashlib.sha256(b"key-b").hexdigest()
    text = (
        f"tenants:\n  a: {{keys: [{{id: a-1, sha256: '{key_a}'}}]}}\n  b: {{keys: [{{id: b-1, sha256: '{key_b}'}}]}}\n"
    )
    runtime = build_runtime(load_text(text, {}))
    assert {h: (k.tenant.name, k.key_id) for h, k in runtime.keys.items()} == {key_a: ("a", "a-1"), key_b: ("b", "b-1")}


def test_config_repr_shows_no_credentials() -> None:
    text = """
providers: {o: {type: openai, api_key: "sk-secret-provider", headers: {X-Key: "hdr-secret"}}}
tenants: {t: {credentials: {o: {api_key: "sk-secret-tenant"}}}}
"""
    shown = repr(load_text(text, {}).config)
    for secret in ("sk-secret-provider", "hdr-secret", "sk-secret-tenant"):
        assert secret not in shown


def test_a_postgres_dsn_that_is_not_a_url_is_refused_without_echoing_it() -> None:
    problems = problems_of("events: {postgres_dsn: 'host=db user=u password=hunter2'}")
    assert problems == ["events.postgres_dsn: must be a postgresql:// URL"]
    assert (
        load_text("events: {postgres_dsn: 'postgres://u:p@db/x'}").config.events.postgres_dsn == "postgres://u:p@db/x"
    )


@pytest.mark.parametrize("url", ["unix:///tmp/redis.sock", "redis://h:6379/0?ssl_cert_reqs=none", "h:6379"])
def test_a_redis_url_the_client_cannot_use_is_refused_at_load(url: str) -> None:
    assert problems_of(f"state: {{redis_url: '{url}'}}") == [
        "state.redis_url: must be a redis:// or rediss:// URL without query options"
    ]


@pytest.mark.parametrize(
    "setting",
    [
        "server: {drain_timeout_s: .inf}",
        "server: {body_timeout_s: .inf}",
        "models: {demo: {deployments: [{provider: demo, model: m}], timeout_s: .inf}}",
    ],
)
def test_an_infinite_duration_is_refused_at_load(setting: str) -> None:
    base = "providers: {demo: {type: mock}}\nmodels: {demo: {deployments: [{provider: demo, model: m}]}}\n"
    document = {**yaml.safe_load(base), **yaml.safe_load(setting)}
    with pytest.raises(ConfigError, match="finite number"):  # no deadline could hold it: every request a 500
        load_text(yaml.safe_dump(document))


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pass/word@127.0.0.1:6379/0",  # an unescaped / in the password
        "redis://127.0.0.1:6379/cache",
        "redis://127.0.0.1:port/0",
        "redis://:secret@/0",
    ],
)
def test_a_redis_url_the_client_would_refuse_at_start_up_is_refused_at_load_without_echoing_it(url: str) -> None:
    """check-config and a reload must say what the next start would die of (`gateway serve` exits at start-up
    on these), and never repeat the URL, which may hold a password."""
    [problem] = problems_of(f"state: {{redis_url: '{url}'}}")
    assert problem.startswith("state.redis_url: ")
    assert "pass" not in problem.partition(": ")[2].replace("password", "") and "secret" not in problem


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://[::1/v1", "must be a valid http:// or https:// URL"),  # urlsplit raises on it
        ("https://llm.internal:99999/v1", "must be a valid http:// or https:// URL"),
        ("llm.internal/v1", "must be an http:// or https:// URL naming a host"),
        ("ftp://llm.internal/v1", "must be an http:// or https:// URL naming a host"),
        ("https:///v1", "must be an http:// or https:// URL naming a host"),
    ],
)
def test_a_base_url_that_is_not_an_http_url_is_refused_at_load(base_url: str, expected: str) -> None:
    """Before, check-config said ok: one made `gateway serve` die of a ValueError at start-up and a reload answer
    500, the others made every request to the provider a 502."""
    problems = problems_of(f"providers: {{up: {{type: openai, api_key: k, base_url: '{base_url}'}}}}")
    assert problems == [f"providers.up.base_url: {expected}"]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "azure"])
@pytest.mark.parametrize(
    "base_url", ["https://me:hunter2@llm.internal/v1", "https://hunter2@llm.internal/v1", "http://:hunter2@h:8000"]
)
def test_a_base_url_with_credentials_is_refused_at_load_without_echoing_them(kind: str, base_url: str) -> None:
    """aiohttp refuses URL credentials beside an Authorization header (an OpenAI provider's key): every request
    failed. Nor is base_url kept as a secret (a Target's repr shows it). The key belongs in api_key or headers."""
    extra = ", api_version: '2024-10-21'" if kind == "azure" else ""
    [problem] = problems_of(f"providers: {{up: {{type: {kind}, api_key: k, base_url: '{base_url}'{extra}}}}}")
    assert problem.startswith("providers.up.base_url: must not hold credentials"), problem
    assert "hunter2" not in problem and "me:" not in problem


@pytest.mark.parametrize(
    "field",
    [
        'base_url: "${LLM_HOST}/v1"',
        'proxy: "${PROXY_HOST}:3128"',
        'ca_bundle: "${CERT_DIR}/ca.pem"',
        'headers: {X-Org: "${ORG}-prod"}',
    ],
)
def test_an_unset_var_within_a_checked_provider_field_disables_the_provider(field: str) -> None:
    """What is left of the value once the variable is taken out (":3128", "/ca.pem") is not what the field
    holds: the provider is disabled, as for any unset variable in a provider, not an AssertionError (before:
    check-config crashed with a traceback, and a reload answered 500)."""
    text = f"providers:\n  up: {{type: openai, api_key: k, {field}}}\n  demo: {{type: mock}}\n"
    loaded = load_text(text, {})
    assert list(loaded.disabled_providers) == ["up"]
    runtime_config = loaded.config.providers["up"]
    assert runtime_config.base_url in (None, "") and not runtime_config.proxy and not runtime_config.ca_bundle
