"""API key format: `qx_<key id, 32 hex>_<secret>`; only the secret's SHA-256 is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

PREFIX = "qx_"
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class ParsedApiKey:
    key_id: uuid.UUID
    secret: str


def generate_secret() -> str:
    return secrets.token_urlsafe(_SECRET_BYTES)


def format_key(key_id: uuid.UUID, secret: str) -> str:
    return f"{PREFIX}{key_id.hex}_{secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def parse_key(token: str) -> ParsedApiKey | None:
    """Returns the key id and secret, or None when the token does not have the API key shape."""
    if not token.startswith(PREFIX):
        return None
    key_hex, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(key_hex) != 32 or not secret:
        return None
    try:
        return ParsedApiKey(key_id=uuid.UUID(hex=key_hex), secret=secret)
    except ValueError:
        return None
