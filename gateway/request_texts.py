"""Where a chat request carries text the provider reads, besides a message's own fields: a message's content
parts (text, and an assistant's refusal parts), and outside the messages a predicted output, stop sequences,
tool and function definitions (descriptions, and every string of their parameter schemas: descriptions,
enums, defaults, examples), a structured-output schema, and metadata values.

`*_texts` list them (for the PII scan); `map_*` return a copy with each mapped (redaction). Keys are never
mapped: they name properties, not values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

JSON = dict[str, Any]
PART_TEXTS = ("text", "refusal")  # the text of a text part, of a refusal part
DEFINITION_TEXTS = frozenset(("description", "parameters"))  # of a tool's or a legacy function's definition
SCHEMA_TEXTS = frozenset(("description", "schema"))  # of response_format's json_schema


def _part_key(part: Any) -> str | None:
    if isinstance(part, dict):
        for key in PART_TEXTS:
            if isinstance(part.get(key), str):
                return key
    return None


def content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            key = _part_key(part)
            if key is not None:
                yield part[key]


def map_content(content: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        mapped = []
        for part in content:
            key = _part_key(part)
            mapped.append(part if key is None else {**part, key: fn(part[key])})
        return mapped
    return content


def _strings(value: Any) -> Iterator[str]:
    """Every string value in a JSON value (a schema), not its keys. (A body nests at most 128 levels.)"""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {key: _map_strings(inner, fn) for key, inner in value.items()}
    if isinstance(value, list):
        return [_map_strings(inner, fn) for inner in value]
    return value


def _fields_texts(holder: Any, keys: frozenset[str]) -> Iterator[str]:
    if isinstance(holder, dict):
        for key in keys:
            yield from _strings(holder.get(key))


def _map_fields(holder: JSON, keys: frozenset[str], fn: Callable[[str], str]) -> JSON:
    return {key: _map_strings(value, fn) if key in keys else value for key, value in holder.items()}


def _definition_holder(item: Any) -> str | None:
    """Where a tool keeps its definition ("function", "custom"), "" for a legacy function (its own object)."""
    if not isinstance(item, dict):
        return None
    for holder in ("function", "custom"):
        if isinstance(item.get(holder), dict):
            return holder
    return ""


def _definitions_texts(items: Any) -> Iterator[str]:
    for item in items if isinstance(items, list) else ():
        holder = _definition_holder(item)
        if holder is not None:
            yield from _fields_texts(item[holder] if holder else item, DEFINITION_TEXTS)


def _map_definitions(items: Any, fn: Callable[[str], str]) -> Any:
    if not isinstance(items, list):
        return items
    mapped = []
    for item in items:
        holder = _definition_holder(item)
        if holder:
            item = {**item, holder: _map_fields(item[holder], DEFINITION_TEXTS, fn)}
        elif holder is not None:
            item = _map_fields(item, DEFINITION_TEXTS, fn)
        mapped.append(item)
    return mapped


def _json_schema(payload: JSON) -> JSON | None:
    response_format = payload.get("response_format")
    inner = response_format.get("json_schema") if isinstance(response_format, dict) else None
    return inner if isinstance(inner, dict) else None


def body_texts(payload: JSON) -> Iterator[str]:
    """The texts of a chat request outside its messages."""
    prediction = payload.get("prediction")
    if isinstance(prediction, dict):
        yield from content_texts(prediction.get("content"))
    yield from _strings(payload.get("stop"))
    yield from _definitions_texts(payload.get("tools"))
    yield from _definitions_texts(payload.get("functions"))
    yield from _fields_texts(_json_schema(payload), SCHEMA_TEXTS)
    metadata = payload.get("metadata")
    if isinstance(metadata, dict):
        yield from _strings(metadata)


def map_body_texts(payload: JSON, fn: Callable[[str], str]) -> JSON:
    """`payload` with every text `body_texts` lists mapped by `fn` (a new dict; what holds none is shared)."""
    out = dict(payload)
    prediction = payload.get("prediction")
    if isinstance(prediction, dict) and "content" in prediction:
        out["prediction"] = {**prediction, "content": map_content(prediction["content"], fn)}
    if "stop" in payload:
        out["stop"] = _map_strings(payload["stop"], fn)
    for name in ("tools", "functions"):
        if name in payload:
            out[name] = _map_definitions(payload[name], fn)
    schema = _json_schema(payload)
    if schema is not None:
        out["response_format"] = {**payload["response_format"], "json_schema": _map_fields(schema, SCHEMA_TEXTS, fn)}
    if isinstance(payload.get("metadata"), dict):
        out["metadata"] = _map_strings(payload["metadata"], fn)
    return out
