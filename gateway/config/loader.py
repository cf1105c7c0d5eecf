"""config.yaml ─► validated `LoadedConfig`, or a `ConfigError` listing every problem by path.

Order: YAML ─► `${VAR}` interpolation ─► `enc:` decryption ─► pydantic schema ─► cross-references.
A provider whose `${VAR}` is unset is disabled (reported, not fatal); an unset variable anywhere
else is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adapters.registry import DEFAULT_BASE_URLS, provider_types
from gateway.config import secrets
from gateway.config.schema import Config
from gateway.paths import format_path

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A repeated key is an error: plain YAML keeps the last one, silently dropping a whole tenant."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    disabled_providers: Mapping[str, str] = field(default_factory=dict)  # name ─► why


def load_file(path: str | Path, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: is not UTF-8 text (byte {exc.start})"]) from exc
    return load_text(text, environ)


def load_text(text: str, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    env = os.environ if environ is None else environ
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from exc
    except (TypeError, RecursionError) as exc:  # a list used as a key; absurdly deep nesting
        raise ConfigError([f"not a usable YAML document ({type(exc).__name__})"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping"])
    problems: list[str] = []
    disabled: dict[str, str] = {}
    unresolved: set[tuple[int | str, ...]] = set()  # already reported; their stand-in '' is no news
    resolved = _resolve(raw, (), env, problems, disabled, unresolved)
    config: Config | None = None
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        errors = exc.errors()
        news = [_describe(err) for err in errors if tuple(err["loc"]) not in unresolved]
        if not news and not problems:  # only a disabled provider's stand-in, which its field cannot take
            news = [_describe(err) for err in errors]
        problems.extend(news)
    problems.extend(_cross_check(resolved, disabled))
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return LoadedConfig(config, disabled)


def _resolve(
    node: Any,
    loc: tuple[int | str, ...],
    env: Mapping[str, str],
    problems: list[str],
    disabled: dict[str, str],
    unresolved: set[tuple[int | str, ...]],
) -> Any:
    if isinstance(node, dict):
        return {k: _resolve(v, (*loc, str(k)), env, problems, disabled, unresolved) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, (*loc, i), env, problems, disabled, unresolved) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or value == "":
            if default is not None:
                return default
            missing.append(name)
            return ""
        return value

    value = _VAR.sub(substitute, node) if "${" in node else node
    if missing:
        unresolved.add(loc)
        names = ", ".join(missing)
        if len(loc) >= 2 and loc[0] == "providers":
            provider = str(loc[1])
            earlier = disabled[provider].removesuffix(" is not set") + ", " if provider in disabled else ""
            disabled[provider] = f"{earlier}{names} is not set"
        else:
            problems.append(f"{format_path(loc)}: environment variable {names} is not set")
        return ""  # the stand-in, whole: what is left around the variable (":3128", "/ca.pem") is no value of its field
    if value.startswith(secrets.PREFIX):
        try:
            return secrets.decrypt(value, env.get(secrets.MASTER_KEY_ENV, ""))
        except secrets.SecretError as exc:
            unresolved.add(loc)
            problems.append(f"{format_path(loc)}: {exc}")
            return ""
    return value


def _describe(err: Any) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        options = [o.strip().strip("'") for o in re.split(r",| or ", expected) if o.strip()]
        return f"{format_path(loc)}: must be one of {', '.join(options)}"
    if kind == "extra_forbidden":
        return f"{format_path(loc)}: unknown field"
    if kind == "missing":
        return f"{format_path(loc)}: is required"
    if kind == "string_pattern_mismatch" and loc and loc[-1] in ("sha256", "token_sha256"):
        return f"{format_path(loc)}: must be 64 lowercase hex characters (a sha256)"
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{format_path(loc)}: {message[:1].lower()}{message[1:]}"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _entries(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def _cross_check(raw: dict[str, Any], disabled: Mapping[str, str]) -> list[str]:
    """References between sections. Works on the resolved document itself (defensively), so that it
    runs, and reports, even when the schema found problems elsewhere."""
    problems: list[str] = []
    types = provider_types()
    providers = _mapping(raw.get("providers"))
    models = _mapping(raw.get("models"))
    for name, provider in providers.items():
        kind = _mapping(provider).get("type")
        if not isinstance(kind, str):
            continue  # the schema reports it
        if kind not in types:
            problems.append(f"providers.{name}.type: must be one of {', '.join(types)}")
        elif not _mapping(provider).get("base_url") and kind not in DEFAULT_BASE_URLS and name not in disabled:
            problems.append(f"providers.{name}.base_url: is required for type {kind}")
    for alias, model in models.items():
        for i, deployment in _entries(_mapping(model).get("deployments")):
            provider_name = _mapping(deployment).get("provider")
            if isinstance(provider_name, str) and provider_name not in providers:
                problems.append(f"models.{alias}.deployments[{i}].provider: unknown provider '{provider_name}'")
        for i, fallback in _entries(_mapping(model).get("fallbacks")):
            if not isinstance(fallback, str):
                continue
            if fallback not in models:
                problems.append(f"models.{alias}.fallbacks[{i}]: unknown model '{fallback}'")
            elif fallback == alias:
                problems.append(f"models.{alias}.fallbacks[{i}]: a model cannot fall back to itself")
    seen_hashes: dict[str, str] = {}
    for tenant_name, tenant in _mapping(raw.get("tenants")).items():
        tenant = _mapping(tenant)
        for i, model_name in _entries(tenant.get("models")):
            if isinstance(model_name, str) and model_name != "*" and model_name not in models:
                problems.append(f"tenants.{tenant_name}.models[{i}]: unknown model '{model_name}'")
        key_ids: set[str] = set()
        for i, key in _entries(tenant.get("keys")):
            where = f"tenants.{tenant_name}.keys[{i}]"
            key_id, digest = _mapping(key).get("id"), _mapping(key).get("sha256")
            if isinstance(key_id, str):
                if key_id in key_ids:
                    problems.append(f"{where}.id: duplicate key id '{key_id}'")
                key_ids.add(key_id)
            if isinstance(digest, str):
                digest = digest.lower()
                if digest in seen_hashes:
                    problems.append(f"{where}.sha256: the same key is already listed at {seen_hashes[digest]}")
                else:
                    seen_hashes[digest] = where
        for provider_name in _mapping(tenant.get("credentials")):
            if provider_name not in providers:
                problems.append(f"tenants.{tenant_name}.credentials.{provider_name}: unknown provider")
    workers = _mapping(raw.get("server")).get("workers", 1)
    if isinstance(workers, int) and workers > 1 and not _mapping(raw.get("state")).get("redis_url"):
        problems.append(
            "server.workers: more than 1 worker needs state.redis_url (in-process counters would multiply "
            "every budget and rate limit by the number of workers)"
        )
    return problems
