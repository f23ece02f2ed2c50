"""Claims on Idempotency-Keys: while one request with a key runs, copies of it do not run too.

A claim is held from before the daily quota is checked until the request's answer is committed, so copies
of one request sent at once run the engine and are charged once. In process (embedded mode), or in Redis,
shared by every replica; a claim in Redis has a lease, so one held by a process that died frees itself.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from redis.asyncio import Redis

from qortex.limits.releases import BackgroundReleases, Releasable

# Deletes the claim only if this request still holds it: after its lease ran out, another request may.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class KeyClaims(Releasable, Protocol):
    """`release` gives a claim back only if its token still holds it."""

    async def claim(self, key: str) -> str | None:
        """Claims `key`; returns the token that releases it, or None while another request holds it."""
        ...


class MemoryClaims:
    """Claims of this process only (the embedded mode): one event loop, so no lock is needed."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}

    async def claim(self, key: str) -> str | None:
        if key in self._held:
            return None
        token = self._held[key] = secrets.token_hex(8)
        return token

    async def release(self, key: str, token: str) -> None:
        self.release_later(key, token)

    def release_later(self, key: str, token: str) -> None:
        """In process a release cannot fail: done at once."""
        if self._held.get(key) == token:
            del self._held[key]


class RedisClaims:
    """Claims shared by every process using the same Redis; each claim's lease bounds how long it can leak."""

    def __init__(self, redis: Redis, *, lease_seconds: float, prefix: str = "qortex:idempotency:") -> None:
        self._redis = redis
        self._lease_ms = int(lease_seconds * 1000)
        self._prefix = prefix
        self._release = redis.register_script(_RELEASE)
        self._background = BackgroundReleases(
            not_released_event="idempotency_claim_not_released", lease_seconds=lease_seconds
        )

    async def claim(self, key: str) -> str | None:
        token = secrets.token_hex(8)
        try:
            taken = await self._redis.set(self._prefix + key, token, nx=True, px=self._lease_ms)
        except BaseException:
            # A reply that timed out, or a request cancelled while waiting for it, may follow a SET that did
            # take the claim: every retry of the request would be refused until its lease ends.
            self.release_later(key, token)
            raise
        return token if taken else None

    async def release(self, key: str, token: str) -> None:
        await self._release(keys=[self._prefix + key], args=[token])

    def release_later(self, key: str, token: str) -> None:
        """Releases a claim from a background task, which neither a cancellation nor a slow Redis holds up."""
        self._background.start(lambda: self.release(key, token))
