"""Login throttling: exponential backoff per account name and per client address.

After `free_failures` failed logins in a row, each further attempt must wait 1 s, then 2 s, 4 s, ...
up to `max_backoff_seconds`, counted from the last failure. A success clears the account's counter
(not the address's: one valid account must not reset the budget of an address guessing others).
Account names are stored as SHA-256 digests, so the counters hold no names or emails. Counters live
in Redis when it is configured (shared by every replica), else in this process's memory.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from qortex.core.errors import QortexError

log = structlog.get_logger("qortex.security.throttle")

# A counter with no failure for this long is forgotten.
COUNTER_TTL_SECONDS = 24 * 3600
MAX_MEMORY_ENTRIES = 100_000


class LoginThrottled(QortexError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"too many failed logins; retry in {retry_after_seconds} s",
            headers={"Retry-After": str(retry_after_seconds)},
        )


@dataclass(frozen=True, slots=True)
class Failures:
    count: int
    last_at: float


class FailureStore(Protocol):
    async def get(self, key: str) -> Failures | None: ...
    async def add(self, key: str, at: float) -> None: ...
    async def clear(self, key: str) -> None: ...


class MemoryFailureStore:
    def __init__(self) -> None:
        self._entries: dict[str, Failures] = {}

    async def get(self, key: str) -> Failures | None:
        entry = self._entries.get(key)
        if entry is not None and time.time() - entry.last_at > COUNTER_TTL_SECONDS:
            del self._entries[key]
            return None
        return entry

    async def add(self, key: str, at: float) -> None:
        previous = await self.get(key)
        if previous is None and len(self._entries) >= MAX_MEMORY_ENTRIES:
            # Drop the stalest entry rather than grow without bound under a spray of names.
            del self._entries[min(self._entries, key=lambda k: self._entries[k].last_at)]
        self._entries[key] = Failures(count=(previous.count if previous else 0) + 1, last_at=at)

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)


class RedisFailureStore:
    def __init__(self, redis: Redis, *, prefix: str = "qortex:login-failures:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> Failures | None:
        count, last_at = await self._redis.hmget(self._prefix + key, ["count", "last_at"])
        if count is None or last_at is None:
            return None
        return Failures(count=int(count), last_at=float(last_at))

    async def add(self, key: str, at: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self._prefix + key, "count", 1)
            pipe.hset(self._prefix + key, "last_at", repr(at))
            pipe.expire(self._prefix + key, COUNTER_TTL_SECONDS)
            await pipe.execute()

    async def clear(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


def backoff_seconds(failures: int, *, free: int, cap: int) -> float:
    if failures < free:
        return 0.0
    return float(min(2 ** (failures - free), cap))


class LoginThrottle:
    """Backoff per account and per address. A store that fails (Redis away) throttles nothing: the
    argon2 cost still bounds guessing, and logins keep working."""

    def __init__(self, store: FailureStore, *, account_free: int, ip_free: int, max_backoff_seconds: int) -> None:
        self._store = store
        self._account_free = account_free
        self._ip_free = ip_free
        self._cap = max_backoff_seconds

    @staticmethod
    def _account_key(identifier: str) -> str:
        return "account:" + hashlib.sha256(identifier.strip().lower().encode()).hexdigest()

    @staticmethod
    def _ip_key(client_ip: str | None) -> str | None:
        return f"ip:{client_ip}" if client_ip else None

    async def admit(self, *, identifier: str, client_ip: str | None) -> None:
        """Raises LoginThrottled (429 with Retry-After) while either counter is in backoff; otherwise counts
        the attempt against the account at once, before the slow password check, so concurrent guesses
        see each other. A success clears it (`succeeded`); the address counts failures only (`failed`),
        so people behind one address who log in successfully never throttle each other."""
        await self._check(identifier=identifier, client_ip=client_ip)
        try:
            await self._store.add(self._account_key(identifier), time.time())
        except (RedisError, OSError) as error:
            log.warning("login_throttle_unavailable", error_type=type(error).__name__)

    async def _check(self, *, identifier: str, client_ip: str | None) -> None:
        now = time.time()
        wait = 0.0
        checks = [(self._account_key(identifier), self._account_free)]
        ip_key = self._ip_key(client_ip)
        if ip_key is not None:
            checks.append((ip_key, self._ip_free))
        for key, free in checks:
            try:
                failures = await self._store.get(key)
            except (RedisError, OSError) as error:
                log.warning("login_throttle_unavailable", error_type=type(error).__name__)
                return
            if failures is not None:
                delay = backoff_seconds(failures.count, free=free, cap=self._cap)
                wait = max(wait, failures.last_at + delay - now)
        if wait > 0:
            raise LoginThrottled(max(1, math.ceil(wait)))

    async def failed(self, *, client_ip: str | None) -> None:
        """Counts a failed attempt against the address (the account counted it on admission)."""
        key = self._ip_key(client_ip)
        if key is None:
            return
        try:
            await self._store.add(key, time.time())
        except (RedisError, OSError) as error:
            log.warning("login_throttle_unavailable", error_type=type(error).__name__)

    async def succeeded(self, *, identifier: str) -> None:
        try:
            await self._store.clear(self._account_key(identifier))
        except (RedisError, OSError) as error:
            log.warning("login_throttle_unavailable", error_type=type(error).__name__)
