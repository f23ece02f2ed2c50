"""HMAC request signing: the canonical string, verification, and the nonce cache that refuses replays.

A signed request carries `X-Qortex-Timestamp` (unix seconds) and `X-Qortex-Signature`
(`v1=` + hex HMAC-SHA256, keyed by the tenant's signing secret as UTF-8 bytes) over

    METHOD \\n PATH[?QUERY] \\n TIMESTAMP \\n hex(SHA-256(body))

where PATH and QUERY are exactly as sent on the wire (percent-encoding included) and `?QUERY` is
left out when the query string is empty. A timestamp more than `WINDOW_SECONDS` away from the
server's clock is stale. Each signature is accepted once: it is its own nonce, remembered until its
timestamp leaves the window, in Redis when one is configured, else in the database (either way shared
by every process and replica, and kept across restarts).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from qortex.core.database import TenantScope
from qortex.core.errors import QortexError

TIMESTAMP_HEADER = "X-Qortex-Timestamp"
SIGNATURE_HEADER = "X-Qortex-Signature"
VERSION = "v1"
WINDOW_SECONDS = 300
_SECRET_BYTES = 32
_SECRET_PREFIX = "qxs_"  # noqa: S105 - a marker that makes leaked secrets greppable, not a secret


class SignatureRejected(QortexError):
    """A request of a tenant that requires signatures failed the check; the slug says how."""

    status, slug, title = 401, "signature-invalid", "Request signature invalid"


class SignatureMissing(SignatureRejected):
    slug, title = "signature-missing", "Request signature missing"


class TimestampStale(SignatureRejected):
    slug, title = "signature-timestamp-stale", "Request timestamp outside the allowed window"


class SignatureMismatch(SignatureRejected):
    slug, title = "signature-mismatch", "Request signature does not match"


class SignatureReplayed(SignatureRejected):
    slug, title = "signature-replayed", "Request already received"


class ReplayCheckUnavailable(QortexError):
    """The shared nonce store cannot be reached: signed requests are refused rather than let replays through."""

    status, slug, title = 503, "replay-check-unavailable", "Replay protection unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


def generate_secret() -> str:
    return _SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def canonical_request(*, method: str, target: str, timestamp: str, body: bytes) -> bytes:
    """What is signed: method, path with query, timestamp and the body's SHA-256, one per line."""
    return "\n".join((method.upper(), target, timestamp, hashlib.sha256(body).hexdigest())).encode()


def request_target(raw_path: bytes | str, query_string: bytes | str) -> str:
    """`path?query` as sent on the wire, or just the path when there is no query."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return f"{path}?{query}" if query else path


def sign(*, secret: str, method: str, target: str, timestamp: str, body: bytes) -> str:
    """The `X-Qortex-Signature` value for a request."""
    message = canonical_request(method=method, target=target, timestamp=timestamp, body=body)
    return f"{VERSION}=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A signature that matched; `nonce_ttl_seconds` is how long it stays acceptable, hence remembered."""

    signature: str
    nonce_ttl_seconds: int


def verify(
    *,
    secret: str,
    method: str,
    target: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float,
) -> VerifiedSignature:
    """Checks headers, freshness and the HMAC (in constant time); raises a `SignatureRejected` naming the fault."""
    if not timestamp or not signature:
        missing = [name for name, value in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)) if not value]
        raise SignatureMissing(f"this tenant requires signed requests; missing {' and '.join(missing)}")
    ts = timestamp.strip()
    if not (ts.isascii() and ts.isdigit()) or len(ts) > 12:
        raise TimestampStale(f"{TIMESTAMP_HEADER} must be unix time in whole seconds")
    skew = int(ts) - now
    if abs(skew) > WINDOW_SECONDS:
        raise TimestampStale(
            f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the server's clock;"
            f" the allowed window is {WINDOW_SECONDS} s"
        )
    presented = signature.strip()
    expected = sign(secret=secret, method=method, target=target, timestamp=ts, body=body)
    if not hmac.compare_digest(presented.encode("latin-1", "replace"), expected.encode()):
        if not presented.startswith(f"{VERSION}="):
            raise SignatureMismatch(f"{SIGNATURE_HEADER} must be '{VERSION}=' followed by a hex HMAC-SHA256")
        raise SignatureMismatch("the signature does not match the request (method, path, query, timestamp or body)")
    # Remembered until the timestamp leaves the window: a future-dated request stays valid longer than 5 min.
    return VerifiedSignature(signature=expected, nonce_ttl_seconds=int(int(ts) + WINDOW_SECONDS - now) + 1)


class NonceStore(Protocol):
    async def claim(self, scope: TenantScope, signature_sha256: str, ttl_seconds: int) -> bool:
        """Records the tenant's signature for `ttl_seconds`; False when it is already recorded (a replay)."""
        ...

    async def close(self) -> None: ...


class RedisNonceStore:
    """Nonces shared by every replica: `SET key 1 NX EX ttl` succeeds only for the first request."""

    def __init__(self, url: str, *, prefix: str = "qortex:nonce:", timeout_seconds: float = 1.0) -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)
        self._prefix = prefix

    async def claim(self, scope: TenantScope, signature_sha256: str, ttl_seconds: int) -> bool:
        key = f"{self._prefix}{scope.tenant_id.hex}:{signature_sha256}"
        try:
            stored = await self._redis.set(key, b"1", nx=True, ex=max(1, ttl_seconds))
        except (RedisError, OSError) as error:  # fail closed: an unchecked signature could be a replay
            raise ReplayCheckUnavailable(f"the nonce store cannot be reached ({type(error).__name__})") from error
        return bool(stored)

    async def close(self) -> None:
        await self._redis.aclose()
