"""Ended sessions, known to every process, so an access token of an ended session is refused everywhere.

Checking a token is a set lookup in memory; nothing reaches the database or Redis per request. How
the set learns of sessions ended by other processes depends on the deployment:

- With Redis (`QORTEX_REDIS_URL`): ending a session adds its id to a sorted set (score: when it may
  be forgotten, i.e. when the last access token of that session has expired) and publishes it on a
  channel. Every process subscribes, and on each (re)subscription first loads the set, so a process
  that starts or reconnects late still knows every session ended within the access token lifetime.
  Refusal is effective everywhere within the pub/sub delay (milliseconds; promised: 1 second). The
  database poll below also runs, every 15 s, as a backstop for a publish that failed while this
  process's subscription stayed up. While a process's subscription is down (Redis away), and once
  right after it is back, it polls the database every `session_poll_seconds` as without Redis.
- Without Redis: every process polls `auth_sessions` for sessions ended recently, every
  `session_poll_seconds` (2 s; promised: 5 seconds). This is the one query that reads across tenants:
  it has to, because a process serves every tenant and any of them may end a session; it selects only
  session ids and end times (no user, tenant or personal data), through the system session and the
  `ended_sessions` row-level-security lookup policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select

from qortex.core.clock import utcnow
from qortex.core.database import Database, allow_lookup
from qortex.identity.models import AuthSession

log = structlog.get_logger("qortex.security.revocation")

CHANNEL = "qortex:sessions:ended"
ENDED_SET = "qortex:sessions:ended:set"
# With Redis, the database poll is only a backstop for a lost publish.
BACKSTOP_POLL_SECONDS = 15.0
# Each poll re-reads this far back, so a session whose `ended_at` was set by a transaction that
# committed late (or on a replica whose clock runs a little behind) is still seen.
POLL_OVERLAP = timedelta(seconds=30)
RECONNECT_SECONDS = 1.0


class SessionRevocations:
    """The set of ended session ids, kept current from Redis and/or the database."""

    def __init__(
        self, *, db: Database, token_lifetime: timedelta, poll_seconds: float, redis_url: str | None = None
    ) -> None:
        self._db = db
        self._lifetime = token_lifetime
        self._poll_seconds = poll_seconds
        self._redis: Redis | None = Redis.from_url(redis_url, health_check_interval=30) if redis_url else None
        # Session id -> monotonic time after which no access token of it can still be valid.
        self._ended: dict[uuid.UUID, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        # When the current Redis subscription went live; None while there is none.
        self._subscribed_since: datetime | None = None

    @property
    def uses_redis(self) -> bool:
        return self._redis is not None

    def is_ended(self, session_id: uuid.UUID) -> bool:
        return session_id in self._ended

    async def start(self) -> None:
        """Loads what has already ended and starts following new endings."""
        started = utcnow()
        await self._poll(since=started - self._lifetime - POLL_OVERLAP)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll_forever(started), name="qortex-session-poll"))
        if self._redis is not None:
            self._tasks.append(loop.create_task(self._follow_redis(), name="qortex-session-subscribe"))
            # Bounded wait: a Redis that is down must not keep the process from starting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout=5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()

    async def end(self, session_ids: list[uuid.UUID]) -> None:
        """Called after the database commit that ended these sessions: refuse here now, elsewhere soon."""
        if not session_ids:
            return
        self._remember(session_ids)
        if self._redis is None:
            return
        forget_at = time.time() + self._lifetime.total_seconds() + 60
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(ENDED_SET, {str(sid): forget_at for sid in session_ids})
                pipe.zremrangebyscore(ENDED_SET, "-inf", time.time())
                for sid in session_ids:
                    pipe.publish(CHANNEL, str(sid))
                await pipe.execute()
        except (RedisError, OSError) as error:
            # The database already holds the ending; the backstop poll spreads it within its interval.
            log.warning("session_revocation_publish_failed", error_type=type(error).__name__)

    def _remember(self, session_ids: list[uuid.UUID]) -> None:
        now = time.monotonic()
        # Kept a little past the token lifetime; after that no token of the session verifies anyway.
        until = now + self._lifetime.total_seconds() + POLL_OVERLAP.total_seconds()
        for sid in session_ids:
            self._ended[sid] = until
        expired = [sid for sid, t in self._ended.items() if t < now]
        for sid in expired:
            del self._ended[sid]

    async def _poll(self, *, since: datetime) -> None:
        async with self._db.system_session() as session:
            await allow_lookup(session, "ended_sessions", "on")
            rows = await session.execute(
                select(AuthSession.id, AuthSession.ended_at).where(AuthSession.ended_at > since)
            )
            self._remember([row.id for row in rows])

    async def _poll_forever(self, last_started: datetime) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            started = utcnow()
            if self._redis_covers(last_started, started):
                continue
            try:
                await self._poll(since=last_started - POLL_OVERLAP)
                last_started = started
            except Exception as error:  # a database hiccup must not end the poll for good
                log.warning("session_poll_failed", error_type=type(error).__name__)

    def _redis_covers(self, last_started: datetime, now: datetime) -> bool:
        """True while the subscription has carried every ending since the last poll, up to the backstop."""
        since = self._subscribed_since
        # Polls fall on ticks, so poll on the last tick before the backstop interval would be exceeded.
        next_tick = now + timedelta(seconds=self._poll_seconds)
        backstop_due = next_tick - last_started > timedelta(seconds=BACKSTOP_POLL_SECONDS)
        return since is not None and since <= last_started and not backstop_due

    async def _follow_redis(self) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # Subscribed first, then loaded: an ending published in between is in one or the other.
                    members = await self._redis.zrangebyscore(ENDED_SET, time.time(), "+inf")
                    self._remember([sid for sid in map(_session_id, members) if sid is not None])
                    self._subscribed_since = utcnow()
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        sid = _session_id(message.get("data"))
                        if sid is not None:
                            self._remember([sid])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._subscribed_since = None
                log.warning("session_subscription_lost", error_type=type(error).__name__)
                await asyncio.sleep(RECONNECT_SECONDS)


def _session_id(raw: object) -> uuid.UUID | None:
    """A session id from a Redis reply; None for anything that is not one."""
    try:
        return uuid.UUID(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
