"""Where limit counters live: in this process (embedded default) or in Redis when `QORTEX_REDIS_URL` is set.

With Redis, every replica shares one count per tenant; without it, each process counts alone (so N
worker processes would each allow the full limit; production runs with Redis).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Any

from limits.aio.storage import MemoryStorage, RedisStorage
from redis.asyncio import ConnectionPool, Redis

from qortex.core.config import Settings
from qortex.limits.claims import KeyClaims, MemoryClaims, RedisClaims
from qortex.limits.concurrency import ConcurrencyCounter, MemoryConcurrency, RedisConcurrency

KEY_PREFIX = "qortex:limits"

# Takes ARGV[2] back from a sliding-window counter's current window (KEYS[1]), never below zero. `limits` keeps
# the current window's count under a key made to live two windows (ARGV[1], in ms); one with less than a window
# to live holds the previous window's count, which its scripts shift aside only at the next hit or read: left alone.
_TAKE_BACK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    return 0
end
local taken = math.min(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[2]))
if taken > 0 then
    redis.call('DECRBY', KEYS[1], taken)
end
return taken
"""


@dataclass(slots=True)
class LimitStorage:
    """The counters of the `limits` strategies, the concurrency counter, the Idempotency-Key claims, and the
    Redis pool they share."""

    counters: MemoryCounters | RedisCounters
    concurrency: ConcurrencyCounter
    claims: KeyClaims
    pool: ConnectionPool | None = None

    @property
    def kind(self) -> str:
        return "redis" if self.pool is not None else "memory"

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.disconnect()


class MemoryCounters(MemoryStorage):
    """The `limits` memory storage, reading a moving window the way its Redis storage does.

    A request is admitted once the newest `limit` entries leave room, and the Redis storage reports only
    those; the memory storage counted every entry of the window, so after a lowered limit its reset time
    (hence `Retry-After` and `RateLimit-Reset`) named the oldest entry's expiry, which frees nothing.
    """

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        timestamp = time.time()
        if events := self.events.get(key, []):
            # Newest first; the entries still in the window among the newest `limit`.
            within = bisect.bisect_left(
                events, -(timestamp - expiry), hi=min(limit, len(events)), key=lambda entry: -entry.atime
            )
            return events[within - 1].atime, within
        return timestamp, 0

    async def take_back(self, key: str, expiry: int, amount: int) -> None:
        """Takes `amount` back from the current window of a sliding-window counter, never below zero; the
        previous window's count stays as it is."""
        _, current = self.sliding_window_keys(key, expiry, time.time())
        if await self.get(current):  # `decr` of a missing key would leave a counter that never expires
            await self.decr(current, amount)


class RedisCounters(RedisStorage):
    """The `limits` Redis storage, able to take back what a sliding-window counter counted."""

    def __init__(self, uri: str, *, redis: Redis, **options: Any) -> None:
        super().__init__(uri, **options)
        self._take_back = redis.register_script(_TAKE_BACK)

    async def take_back(self, key: str, expiry: int, amount: int) -> None:
        """Takes `amount` back from the current window, atomically and never below zero; the previous window's
        count stays as it is."""
        current = self.bridge.prefixed_key(self._current_window_key(key))
        await self._take_back(keys=[current], args=[expiry * 1000, amount])


def _limits_uri(redis_url: str) -> str:
    """`limits` names its async Redis storages `async+redis://`, `async+rediss://`, `async+redis+unix://`."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url[len("unix://") :]
    return "async+" + redis_url


def open_storage(settings: Settings) -> LimitStorage:
    """Redis if configured, else memory. Redis calls time out quickly: a slow Redis must not stall every request."""
    if not settings.redis_url:
        return LimitStorage(counters=MemoryCounters(), concurrency=MemoryConcurrency(), claims=MemoryClaims())
    timeout = settings.limits_redis_timeout_seconds
    pool = ConnectionPool.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    # `limits` types its client options as scalars, but hands a pool through to redis-py untouched.
    client_options: dict[str, Any] = {"connection_pool": pool}
    redis = Redis(connection_pool=pool)
    counters = RedisCounters(
        _limits_uri(settings.redis_url),
        redis=redis,
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        **client_options,
    )
    lease = settings.limits_concurrency_lease_seconds
    concurrency = RedisConcurrency(redis, lease_seconds=lease)
    claims = RedisClaims(redis, lease_seconds=lease)
    return LimitStorage(counters=counters, concurrency=concurrency, claims=claims, pool=pool)
