"""The login throttle on Redis: parallel guesses at one account, or from one address, are admitted no more than
the free ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from qortex.security.throttle import LoginThrottle, LoginThrottled, RedisFailureStore


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Callable[..., list[LoginThrottle]]]:
    """Makes two throttles, as two replicas with their own settings would, sharing keys on one Redis."""
    redis = Redis.from_url(redis_url)
    prefix = f"qortex-test:{uuid.uuid4().hex}:"

    def make(**budgets: int) -> list[LoginThrottle]:
        return [
            LoginThrottle(RedisFailureStore(redis, prefix=prefix), max_backoff_seconds=900, **budgets) for _ in range(2)
        ]

    try:
        yield make
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_parallel_guesses_at_one_account_share_one_budget_on_redis(
    replicas: Callable[..., list[LoginThrottle]],
) -> None:
    throttles = replicas(account_free=5, ip_free=1000)
    answers = await asyncio.gather(
        *(throttles[n % 2].admit(identifier="alice", client_ip=f"10.0.0.{n}") for n in range(60)),
        return_exceptions=True,
    )
    assert sum(answer is None for answer in answers) == 5
    assert all(isinstance(answer, LoginThrottled) for answer in answers if answer is not None)
    # A throttled attempt is not counted: the backoff stays at its first step.
    refused = [answer for answer in answers if isinstance(answer, LoginThrottled)]
    assert {answer.headers["Retry-After"] for answer in refused} == {"1"}


async def test_parallel_guesses_at_many_accounts_from_one_address_share_its_budget_on_redis(
    replicas: Callable[..., list[LoginThrottle]],
) -> None:
    throttles = replicas(account_free=5, ip_free=20)
    answers = await asyncio.gather(
        *(throttles[n % 2].admit(identifier=f"user{n}", client_ip="192.0.2.9") for n in range(60)),
        return_exceptions=True,
    )
    assert sum(answer is None for answer in answers) == 20
    assert all(isinstance(answer, LoginThrottled) for answer in answers if answer is not None)
    # A success takes its attempt back: the address is under its budget again, for one attempt.
    await throttles[0].succeeded(identifier="user0", client_ip="192.0.2.9")
    await throttles[1].admit(identifier="user0", client_ip="192.0.2.9")
