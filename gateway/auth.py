"""Step 1 of a request: the caller's key ─► sha256 ─► tenant. No I/O, no database."""

from __future__ import annotations

import hashlib

from gateway.errors import AuthError, InvalidRequest
from gateway.http import Scope, header
from gateway.runtime import KeyIdentity, Runtime


def presented_key(scope: Scope) -> bytes:
    """The key from `Authorization: Bearer KEY` or Azure-style `api-key: KEY`."""
    bearer = header(scope, b"authorization")
    api_key = header(scope, b"api-key")
    key: bytes | None = None
    if bearer is not None:
        scheme, _, value = bearer.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not value.strip():
            raise AuthError("The Authorization header must be 'Bearer <key>'.")
        key = value.strip()
    if api_key is not None:
        api_key = api_key.strip()
        if key is not None and api_key != key:
            raise InvalidRequest(
                "The Authorization and api-key headers carry different keys; send one key.",
                code="conflicting_credentials",
            )
        key = api_key
    if not key:
        raise AuthError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or an 'api-key' header).",
            code="missing_api_key",
        )
    return key


def key_digest(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def authenticate(scope: Scope, runtime: Runtime) -> KeyIdentity:
    identity = runtime.keys.get(key_digest(presented_key(scope)))
    if identity is None:
        raise AuthError("Incorrect API key provided.")  # never echo any part of the key
    return identity
