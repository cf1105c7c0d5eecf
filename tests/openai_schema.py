"""Validates instances against OpenAI's published OpenAPI document (components.schemas.*).

The document is OpenAPI 3.1 (JSON Schema 2020-12) but still carries OpenAPI-3.0 `nullable: true`
in places; those schemas are rewritten to also accept null before the validators are built.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_ENV = "OPENAI_OPENAPI_SPEC"  # a path to the document, when it is neither beside the repository nor in /work
SPEC_NAME = Path("shared") / "specs" / "openai-openapi.json"
REPO = Path(__file__).resolve().parents[1]


def find_spec(repo: Path = REPO) -> Path:
    """The document: $OPENAI_OPENAPI_SPEC, else ../shared/specs beside the repository (the workspace's layout), else
    the workspace's own copy, so that a clone made elsewhere (a CI checkout in /tmp) finds it too."""
    candidates = [Path(os.environ[SPEC_ENV])] if os.environ.get(SPEC_ENV) else []
    candidates += [repo.parent / SPEC_NAME, Path("/work") / SPEC_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"OpenAI's OpenAPI document not found (looked at {', '.join(map(str, candidates))})")


SPEC_PATH = find_spec()
_SPEC_URI = "urn:openai:openapi"


def _accept_null(node: Any) -> Any:
    if isinstance(node, list):
        return [_accept_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _accept_null(value) for key, value in node.items()}
    if converted.get("nullable") is True:
        del converted["nullable"]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _registry() -> Registry[Any]:
    document = _accept_null(json.loads(SPEC_PATH.read_text(encoding="utf-8")))
    registry: Registry[Any] = Registry().with_resource(
        _SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return registry


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    schema = {"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=_registry())


def validate(schema_name: str, instance: object) -> None:
    """Raises `jsonschema.ValidationError` (the most relevant error) when `instance` does not conform."""
    _validator(schema_name).validate(instance)
