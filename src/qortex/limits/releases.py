"""Releasing what a Redis-backed limit holds (a concurrency slot, an Idempotency-Key claim) in the background.

A release that failed once, or that follows a call whose reply was lost, is retried on its own task, which
neither a cancelled request nor a slow Redis holds up; after the last attempt the holding's lease frees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from redis.exceptions import RedisError

log = structlog.get_logger("qortex.limits.releases")

# Seconds between attempts to release; after the last, the lease frees what is held.
RELEASE_RETRY_DELAYS = (0.5, 2.0, 5.0)


class Releasable(Protocol):
    """What holds something under a token until it is given back: concurrency slots, Idempotency-Key claims."""

    async def release(self, key: str, token: str) -> None: ...

    def release_later(self, key: str, token: str) -> None:
        """Retries a release that failed, in the background; after the last attempt the lease frees it."""
        ...


class BackgroundReleases:
    def __init__(self, *, not_released_event: str, lease_seconds: float) -> None:
        self._not_released_event = not_released_event
        self._lease_seconds = lease_seconds
        self._running: set[asyncio.Task[None]] = set()

    def start(self, release: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.get_running_loop().create_task(self._retry(release))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _retry(self, release: Callable[[], Awaitable[None]]) -> None:
        for delay in RELEASE_RETRY_DELAYS:
            try:
                await release()
                return
            except (RedisError, OSError):
                await asyncio.sleep(delay)
        log.warning(self._not_released_event, lease_seconds=self._lease_seconds)
