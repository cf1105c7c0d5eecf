"""Secrets at rest in config.yaml: `enc:v1:<base64url(nonce | AES-256-GCM ciphertext)>`.

The AES key is derived from GATEWAY_MASTER_KEY (any string of 16+ characters) with HKDF-SHA256, so
operators may use a passphrase or `openssl rand -base64 32` output alike.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:"
_VERSION = "v1:"
_INFO = b"llm-gateway config secret v1"
MASTER_KEY_ENV = "GATEWAY_MASTER_KEY"
MIN_MASTER_KEY_LENGTH = 16


class SecretError(ValueError):
    pass


def _aes_key(master_key: str) -> bytes:
    if len(master_key) < MIN_MASTER_KEY_LENGTH:
        raise SecretError(f"{MASTER_KEY_ENV} must be at least {MIN_MASTER_KEY_LENGTH} characters")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master_key.encode())


def master_key_from_env() -> str:
    value = os.environ.get(MASTER_KEY_ENV)
    if not value:
        raise SecretError(f"{MASTER_KEY_ENV} is not set, so enc: values cannot be decrypted")
    return value


def encrypt(plaintext: str, master_key: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_aes_key(master_key)).encrypt(nonce, plaintext.encode(), None)
    return PREFIX + _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def decrypt(value: str, master_key: str) -> str:
    if not master_key:
        raise SecretError(f"{MASTER_KEY_ENV} is not set, so enc: values cannot be decrypted")
    if not value.startswith(PREFIX + _VERSION):
        raise SecretError("not an enc:v1: value")
    encoded = value[len(PREFIX + _VERSION) :]
    aes = AESGCM(_aes_key(master_key))
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return aes.decrypt(raw[:12], raw[12:], None).decode()
    except (InvalidTag, ValueError) as exc:
        raise SecretError(f"cannot be decrypted with {MASTER_KEY_ENV} (wrong key or damaged value)") from exc
