"""Counting a tenant's requests in flight: in process, or shared by every replica through Redis.

Each admitted request holds a slot, identified by a random token, until `release` (called from a
`finally`). In Redis a slot is a member of a sorted set scored by its lease's end, so the slots of a
process that died mid-request free themselves when their lease runs out instead of leaking forever.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from redis.asyncio import Redis

from qortex.limits.releases import BackgroundReleases, Releasable

_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    return 0
end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""

_CURRENT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
return redis.call('ZCARD', KEYS[1])
"""


class ConcurrencyCounter(Releasable, Protocol):
    async def acquire(self, key: str, limit: int) -> str | None:
        """Takes a slot if fewer than `limit` are held; returns its token, or None when all are taken."""
        ...

    async def current(self, key: str) -> int: ...


class MemoryConcurrency:
    """Slots of this process only (the embedded mode): one event loop, so no lock is needed."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def acquire(self, key: str, limit: int) -> str | None:
        held = self._held.setdefault(key, set())
        if len(held) >= limit:
            return None
        token = secrets.token_hex(8)
        held.add(token)
        return token

    async def release(self, key: str, token: str) -> None:
        self.release_later(key, token)

    def release_later(self, key: str, token: str) -> None:
        """In process a release cannot fail: done at once."""
        held = self._held.get(key)
        if held is not None:
            held.discard(token)
            if not held:
                del self._held[key]

    async def current(self, key: str) -> int:
        return len(self._held.get(key, ()))


class RedisConcurrency:
    """Slots shared by every process using the same Redis; each slot's lease bounds how long it can leak."""

    def __init__(self, redis: Redis, *, lease_seconds: float, prefix: str = "qortex:concurrency:") -> None:
        self._redis = redis
        self._lease_seconds = lease_seconds
        self._prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._current = redis.register_script(_CURRENT)
        self._background = BackgroundReleases(
            not_released_event="concurrency_slot_not_released", lease_seconds=lease_seconds
        )

    async def acquire(self, key: str, limit: int) -> str | None:
        token = f"{time.time():.6f}:{secrets.token_hex(8)}"
        try:
            taken = await self._acquire(keys=[self._prefix + key], args=[limit, self._lease_seconds, token])
        except BaseException:
            # A reply that timed out, or a request cancelled while waiting for it, may follow a script that
            # did take the slot; nobody would release it before its lease ends, locking the tenant out.
            self.release_later(key, token)
            raise
        return token if int(taken) == 1 else None

    def release_later(self, key: str, token: str) -> None:
        """Releases a slot from a background task, which neither a cancellation nor a slow Redis holds up."""
        self._background.start(lambda: self.release(key, token))

    async def release(self, key: str, token: str) -> None:
        await self._redis.zrem(self._prefix + key, token)

    async def current(self, key: str) -> int:
        return int(await self._current(keys=[self._prefix + key]))
