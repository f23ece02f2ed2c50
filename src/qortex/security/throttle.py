"""Login throttling: exponential backoff per account name and per client address.

After `free_failures` failed logins in a row, each further attempt must wait 1 s, then 2 s, 4 s, ...
up to `max_backoff_seconds`, counted from the last failure. Both counters count an attempt when it is
admitted, so guesses sent at once see each other. A success clears the account's counter and takes its
attempt back from the address's (not more: one valid account must not reset the budget of an address
guessing others).
Account names are stored as SHA-256 digests, so the counters hold no names or emails. Counters live
in Redis when it is configured (shared by every replica), else in this process's memory.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Literal, Protocol

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


# What one step on a counter does: report its wait only; count an attempt unless it must wait; count
# a failure whatever the wait; take back one counted attempt (that succeeded, or made no guess).
Step = Literal["check", "attempt", "failure", "refund"]


class FailureStore(Protocol):
    async def step(self, key: str, *, mode: Step, free: int, cap: int) -> float:
        """Returns the seconds the counter's backoff still has to run (> 0: nothing was counted in
        "check" and "attempt" mode); reads the clock, and counts, in one atomic step."""
        ...

    async def clear(self, key: str) -> None: ...


def backoff_seconds(failures: int, *, free: int, cap: int) -> float:
    if failures < free:
        return 0.0
    return float(min(2 ** (failures - free), cap))


class MemoryFailureStore:
    """One process's counters; each method runs without yielding to the event loop, so it is atomic."""

    def __init__(self) -> None:
        self._entries: dict[str, Failures] = {}

    async def step(self, key: str, *, mode: Step, free: int, cap: int) -> float:
        now = time.time()
        previous = self._entries.get(key)
        if previous is not None and now - previous.last_at > COUNTER_TTL_SECONDS:
            del self._entries[key]
            previous = None
        if mode == "refund":
            if previous is not None and previous.count > 0:
                self._entries[key] = Failures(count=previous.count - 1, last_at=previous.last_at)
            return 0.0
        if previous is not None and mode != "failure":
            wait = previous.last_at + backoff_seconds(previous.count, free=free, cap=cap) - now
            if wait > 0:
                return wait
        if mode != "check":
            if previous is None and len(self._entries) >= MAX_MEMORY_ENTRIES:
                # Drop the stalest entry rather than grow without bound under a spray of names.
                del self._entries[min(self._entries, key=lambda k: self._entries[k].last_at)]
            self._entries[key] = Failures(count=(previous.count if previous else 0) + 1, last_at=now)
        return 0.0

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)


# MemoryFailureStore.step as one script, so parallel attempts on any replica cannot all read the count
# before one of them adds to it, and every replica's times come from one clock, Redis's own.
_STEP = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
local last_at = tonumber(redis.call('HGET', KEYS[1], 'last_at') or '0')
local mode, free, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if mode == 'refund' then
  if count > 0 then redis.call('HINCRBY', KEYS[1], 'count', -1) end
  return '0'
end
if mode ~= 'failure' and count >= free then
  local wait = last_at + math.min(2 ^ (count - free), cap) - now
  if wait > 0 then return tostring(wait) end
end
if mode ~= 'check' then
  redis.call('HINCRBY', KEYS[1], 'count', 1)
  redis.call('HSET', KEYS[1], 'last_at', string.format('%.6f', now))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return '0'
"""


class RedisFailureStore:
    def __init__(self, redis: Redis, *, prefix: str = "qortex:login-failures:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._step = redis.register_script(_STEP)

    async def step(self, key: str, *, mode: Step, free: int, cap: int) -> float:
        wait = await self._step(keys=[self._prefix + key], args=[mode, free, cap, COUNTER_TTL_SECONDS])
        return float(wait)

    async def clear(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


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
        if not client_ip:
            return None
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return f"ip:{client_ip}"
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return f"ip:{address.ipv4_mapped}"
            # One IPv6 subscriber usually holds a whole /64: counting per address would give them 2**64 budgets.
            return f"ip:{ipaddress.ip_network(f'{address}/64', strict=False)}"
        return f"ip:{address}"

    async def admit(self, *, identifier: str, client_ip: str | None) -> None:
        """Raises LoginThrottled (429 with Retry-After) while either counter is in backoff; otherwise counts
        the attempt against the address and the account at once, before the slow password check and in the
        same step as each check, so concurrent guesses (at one account, or at many from one address) see
        each other. A success clears the account and takes the attempt back from the address (`succeeded`),
        so people behind one address who log in successfully never throttle each other (unless more of
        them than the address's free attempts are logging in at the same instant)."""
        ip_key = self._ip_key(client_ip)
        try:
            wait = 0.0
            if ip_key is not None:
                wait = await self._store.step(ip_key, mode="attempt", free=self._ip_free, cap=self._cap)
            if wait <= 0:
                account = self._account_key(identifier)
                wait = await self._store.step(account, mode="attempt", free=self._account_free, cap=self._cap)
                if wait > 0 and ip_key is not None:  # refused for the account: no guess was made
                    await self._store.step(ip_key, mode="refund", free=self._ip_free, cap=self._cap)
        except (RedisError, OSError) as error:
            log.warning("login_throttle_unavailable", error_type=type(error).__name__)
            return
        if wait > 0:
            raise LoginThrottled(max(1, math.ceil(wait)))

    async def count_failure(self, *, identifier: str) -> None:
        """Counts a failure against an account without admitting an attempt (a guess made elsewhere)."""
        try:
            await self._store.step(
                self._account_key(identifier), mode="failure", free=self._account_free, cap=self._cap
            )
        except (RedisError, OSError) as error:
            log.warning("login_throttle_unavailable", error_type=type(error).__name__)

    async def succeeded(self, *, identifier: str, client_ip: str | None) -> None:
        """Clears the account's counter and takes the admitted attempt back from the address's."""
        ip_key = self._ip_key(client_ip)
        try:
            await self._store.clear(self._account_key(identifier))
            if ip_key is not None:
                await self._store.step(ip_key, mode="refund", free=self._ip_free, cap=self._cap)
        except (RedisError, OSError) as error:
            log.warning("login_throttle_unavailable", error_type=type(error).__name__)
