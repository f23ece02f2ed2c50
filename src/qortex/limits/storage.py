"""Where limit counters live: in this process (embedded default) or in Redis when `QORTEX_REDIS_URL` is set.

With Redis, every replica shares one count per tenant; without it, each process counts alone (so N
worker processes would each allow the full limit; production runs with Redis).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Any

from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import ConnectionPool, Redis

from qortex.core.config import Settings
from qortex.limits.claims import KeyClaims, MemoryClaims, RedisClaims
from qortex.limits.concurrency import ConcurrencyCounter, MemoryConcurrency, RedisConcurrency

KEY_PREFIX = "qortex:limits"


@dataclass(slots=True)
class LimitStorage:
    """The counters of the `limits` strategies, the concurrency counter, the Idempotency-Key claims, and the
    Redis pool they share."""

    counters: Storage
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
    counters = RedisStorage(
        _limits_uri(settings.redis_url),
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        **client_options,
    )
    redis = Redis(connection_pool=pool)
    lease = settings.limits_concurrency_lease_seconds
    concurrency = RedisConcurrency(redis, lease_seconds=lease)
    claims = RedisClaims(redis, lease_seconds=lease)
    return LimitStorage(counters=counters, concurrency=concurrency, claims=claims, pool=pool)
