"""Step 1 of a request: the caller's key ─► sha256 ─► tenant. No I/O, no database."""

from __future__ import annotations

import hashlib

from gateway.errors import AuthError, InvalidRequest
from gateway.http import Scope, header_values
from gateway.runtime import KeyIdentity, Runtime


def presented_key(scope: Scope) -> bytes:
    """The key from `Authorization: Bearer KEY` or Azure-style `api-key: KEY`. Every line of either header must carry
    the same key: which one the request is billed to must not depend on which line a server reads."""
    keys = [_bearer_key(value) for value in header_values(scope, b"authorization")]
    keys += [value.strip() for value in header_values(scope, b"api-key")]
    if any(key != keys[0] for key in keys[1:]):
        raise InvalidRequest(
            "The Authorization and api-key headers carry different keys; send one key.",
            code="conflicting_credentials",
        )
    if not keys or not keys[0]:
        raise AuthError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or an 'api-key' header).",
            code="missing_api_key",
        )
    return keys[0]


def bearer_token(value: bytes) -> bytes | None:
    """The token of an Authorization line `Bearer <token>` (the scheme in any case); None when it is not one."""
    scheme, _, token = value.strip().partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


def _bearer_key(value: bytes) -> bytes:
    key = bearer_token(value)
    if key is None:
        raise AuthError("The Authorization header must be 'Bearer <key>'.")
    return key


def key_digest(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def authenticate(scope: Scope, runtime: Runtime) -> KeyIdentity:
    identity = runtime.keys.get(key_digest(presented_key(scope)))
    if identity is None:
        raise AuthError("Incorrect API key provided.")  # never echo any part of the key
    return identity
