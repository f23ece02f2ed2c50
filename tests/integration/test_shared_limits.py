"""Two app instances on one Redis and one database enforce one limit per tenant, not one each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from qortex.api import create_app
from qortex.core.config import Settings
from qortex.core.errors import StorageUnavailable
from qortex.limits.storage import KEY_PREFIX, RedisCounters, open_storage
from tests.api.test_limits import (
    DAY_SECONDS,
    MODELS,
    assert_take_back_leaves_the_previous_window,
    batch,
    configure,
    series,
    wait_for_in_flight,
)
from tests.conftest import TenantCredentials, make_tenant

pytestmark = pytest.mark.redis


class Pair:
    """Two apps sharing Redis and the database, each with its own HTTP client."""

    def __init__(self, apps: list[FastAPI], clients: list[httpx.AsyncClient]) -> None:
        self.apps = apps
        self.clients = clients


async def _pair(settings: Settings) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        apps, clients = [], []
        for _ in range(2):
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://qortex.test"))
            )
            apps.append(app)
        assert all(app.state.services.limits.storage.kind == "redis" for app in apps)
        yield Pair(apps, clients)


@pytest.fixture
async def pair(settings: Settings, redis_url: str) -> AsyncIterator[Pair]:
    async for made in _pair(settings.model_copy(update={"redis_url": redis_url})):
        yield made


@pytest.fixture
async def slow_pair(settings: Settings, redis_url: str) -> AsyncIterator[Pair]:
    async for made in _pair(settings.model_copy(update={"redis_url": redis_url, "engine_max_wait_ms": 1000.0})):
        yield made


async def tenant_on(pair: Pair, name: str, **limits: int) -> TenantCredentials:
    who = await make_tenant(pair.apps[0].state.services.db, name)
    for app in pair.apps:
        await configure(app, who, **limits)
    return who


async def test_requests_alternating_between_two_apps_trip_one_shared_limit(pair: Pair) -> None:
    acme = await tenant_on(pair, "acme", requests_per_minute=4)
    answers = [await pair.clients[n % 2].get(MODELS, headers=acme.headers) for n in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert [int(a.headers["ratelimit-remaining"]) for a in answers] == [3, 2, 1, 0, 0]
    assert int(answers[-1].headers["retry-after"]) >= 1
    # The first app is refused too: the count is the tenant's, not the process's.
    assert (await pair.clients[0].get(MODELS, headers=acme.headers)).status_code == 429


async def test_the_daily_prediction_quota_is_shared_by_both_apps(pair: Pair) -> None:
    acme = await tenant_on(pair, "acme", predictions_per_day=3)
    assert (await pair.clients[0].post("/v1/predictions/batch", json=batch(2), headers=acme.headers)).status_code == 200
    refused = await pair.clients[1].post("/v1/predictions/batch", json=batch(2, seed=5), headers=acme.headers)
    assert refused.status_code == 429
    assert "predictions_per_day" in refused.json()["detail"]
    made = await pair.clients[1].post(
        "/v1/predictions", json={"source": "s", "values": series(9)}, headers=acme.headers
    )
    assert made.status_code == 201
    usage = (await pair.clients[0].get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["used"] == 3


async def test_retry_after_for_a_batch_over_the_shared_daily_quota_is_when_the_whole_batch_fits(pair: Pair) -> None:
    acme = await tenant_on(pair, "acme", predictions_per_day=5)
    assert (await pair.clients[0].post("/v1/predictions/batch", json=batch(4), headers=acme.headers)).status_code == 200
    refused = await pair.clients[1].post("/v1/predictions/batch", json=batch(3, seed=5), headers=acme.headers)
    assert refused.status_code == 429
    # The window that began with the first 4 ends in a day; they then fade, and leave room for 3 once they
    # weigh less than 3 of 4, a quarter of a day later (not at the window's end, when 1 fits).
    assert int(refused.headers["retry-after"]) in range(86_400 + 21_600 - 30, 86_400 + 21_600 + 2)


async def test_copies_of_one_keyed_request_on_both_apps_are_charged_once(slow_pair: Pair) -> None:
    acme = await tenant_on(slow_pair, "acme")
    keyed = {**acme.headers, "Idempotency-Key": "sent-to-both"}
    body = {"source": "s", "values": series(1)}
    first, copy = await asyncio.gather(
        *(client.post("/v1/predictions", json=body, headers=keyed) for client in slow_pair.clients)
    )
    assert sorted([first.status_code, copy.status_code]) == [201, 409]
    refused = first if first.status_code == 409 else copy
    assert refused.json()["type"].endswith("/idempotency-key-in-use") and refused.headers["retry-after"] == "1"
    usage = (await slow_pair.clients[0].get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["used"] == 1
    for client in slow_pair.clients:
        again = await client.post("/v1/predictions", json=body, headers=keyed)
        assert again.headers["idempotent-replayed"] == "true"


async def test_a_keyed_request_refused_on_one_app_is_retried_at_once_on_the_other(pair: Pair) -> None:
    acme = await tenant_on(pair, "acme", predictions_per_day=1)
    keyed = {**acme.headers, "Idempotency-Key": "refused-then-retried"}
    too_many = {"items": [{"source": "s", "values": series(seed)} for seed in range(2)]}
    assert (await pair.clients[0].post("/v1/predictions/batch", json=too_many, headers=keyed)).status_code == 422
    retried = await pair.clients[1].post("/v1/predictions/batch", json=batch(1), headers=keyed)
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers


async def test_a_keyed_request_whose_claim_release_failed_once_is_retried_on_the_other_app(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis blip while giving the key back must not refuse every retry 409 until the claim's lease ends."""
    acme = await tenant_on(pair, "acme", predictions_per_day=1)
    claims = pair.apps[0].state.services.limits.storage.claims
    release, failures = claims.release, [RedisTimeoutError("Timeout reading from socket")]

    async def blip(key: str, token: str) -> None:
        if failures:
            raise failures.pop()
        await release(key, token)

    monkeypatch.setattr(claims, "release", blip)
    keyed = {**acme.headers, "Idempotency-Key": "released-late"}
    too_many = {"items": [{"source": "s", "values": series(seed)} for seed in range(2)]}
    assert (await pair.clients[0].post("/v1/predictions/batch", json=too_many, headers=keyed)).status_code == 422
    assert not failures
    statuses = []
    for _ in range(6):  # the 409 asks for a retry after 1 s
        retried = await pair.clients[1].post("/v1/predictions/batch", json=batch(1), headers=keyed)
        statuses.append(retried.status_code)
        if retried.status_code != 409:
            break
        await asyncio.sleep(float(retried.headers["retry-after"]))
    assert statuses[-1] == 200, statuses


async def test_a_request_in_flight_on_one_app_counts_on_the_other(slow_pair: Pair) -> None:
    acme = await tenant_on(slow_pair, "acme", concurrent_requests=1)
    held = asyncio.create_task(
        slow_pair.clients[0].post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    )
    await wait_for_in_flight(slow_pair.apps[1], acme, 1)
    refused = await slow_pair.clients[1].get(MODELS, headers=acme.headers)
    assert refused.status_code == 429
    assert "in flight" in refused.json()["detail"]
    assert (await held).status_code == 201
    # The slot is given back just after the response, on a background task.
    await wait_for_in_flight(slow_pair.apps[1], acme, 0)
    assert (await slow_pair.clients[1].get(MODELS, headers=acme.headers)).status_code == 200


async def test_an_unreachable_redis_serves_requests_unlimited_instead_of_failing(settings: Settings) -> None:
    # Port 1 on loopback refuses connections at once.
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    async with app.router.lifespan_context(app):
        acme = await make_tenant(app.state.services.db, "acme")
        await configure(app, acme, requests_per_minute=1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as client:
            answers = [await client.get(MODELS, headers=acme.headers) for _ in range(3)]
            usage = await client.get("/v1/tenant/usage", headers=acme.headers)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("ratelimit-limit" not in a.headers for a in answers)
    # Usage cannot be counted without the counters: a retryable 503, not a 500 or made-up numbers.
    assert usage.status_code == 503
    assert usage.json()["type"].endswith("/overloaded") and int(usage.headers["retry-after"]) >= 1


async def test_a_slot_taken_while_the_rate_count_fails_is_released_at_once(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await tenant_on(pair, "acme")
    limits = pair.apps[0].state.services.limits

    async def store_fails(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("redis went away mid-request")

    monkeypatch.setattr(limits._moving, "hit", store_fails)
    answer = await pair.clients[0].get(MODELS, headers=acme.headers)
    assert answer.status_code == 200, "a store failure serves the request unlimited"
    # The slot is released just after the response; without the fix it stayed held for its 300 s lease.
    for _ in range(40):
        if await limits.storage.concurrency.current(str(acme.tenant.id)) == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the concurrency slot is still held 2 s after the response")


async def test_a_slot_whose_acquire_reply_is_lost_is_released(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis ran the script (the slot is taken) but its reply timed out: nobody else could release it."""
    acme = await tenant_on(pair, "acme")
    concurrency = pair.apps[0].state.services.limits.storage.concurrency
    run_script = concurrency._acquire

    async def reply_lost(*args: object, **kwargs: object) -> object:
        await run_script(*args, **kwargs)
        raise TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(concurrency, "_acquire", reply_lost)
    answer = await pair.clients[0].get(MODELS, headers=acme.headers)
    assert answer.status_code == 200, "a store failure serves the request unlimited"
    for _ in range(40):
        if await concurrency.current(str(acme.tenant.id)) == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the slot taken by the timed-out script is still held 2 s later")


async def test_a_request_cancelled_after_taking_its_slot_releases_it(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot's script answered, the rate count had not when the request was cancelled (a server's shutdown
    grace ending): the slot must not stay held for its lease, which would lock a tenant with one slot out."""
    acme = await tenant_on(pair, "acme", concurrent_requests=1)
    limits = pair.apps[0].state.services.limits
    count_request = limits._moving.hit
    counted = asyncio.Event()

    async def slow_count(*args: object, **kwargs: object) -> bool:
        await counted.wait()
        return bool(await count_request(*args, **kwargs))

    monkeypatch.setattr(limits._moving, "hit", slow_count)
    request = asyncio.create_task(pair.clients[0].get(MODELS, headers=acme.headers))
    await wait_for_in_flight(pair.apps[0], acme, 1)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    monkeypatch.setattr(limits._moving, "hit", count_request)
    for _ in range(40):
        if await limits.storage.concurrency.current(str(acme.tenant.id)) == 0:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the slot of the cancelled request is still held 2 s later")
    assert (await pair.clients[1].get(MODELS, headers=acme.headers)).status_code == 200


async def test_a_slot_whose_release_fails_once_is_released_by_a_retry(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis blip just as a response ends must not hold the slot for its whole lease (300 s by default)."""
    acme = await tenant_on(pair, "acme", concurrent_requests=1)
    concurrency = pair.apps[0].state.services.limits.storage.concurrency
    release = concurrency.release
    failures = [ConnectionError("Connection reset by peer")]

    async def flaky_release(key: str, token: str) -> None:
        if failures:
            raise failures.pop()
        await release(key, token)

    monkeypatch.setattr(concurrency, "release", flaky_release)
    assert (await pair.clients[0].get(MODELS, headers=acme.headers)).status_code == 200
    await wait_for_in_flight(pair.apps[1], acme, 0)
    assert not failures, "the release was attempted"
    assert (await pair.clients[1].get(MODELS, headers=acme.headers)).status_code == 200


async def test_a_charge_given_back_by_one_app_is_room_on_the_other(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = await tenant_on(pair, "acme", predictions_per_day=3)

    async def database_locked(**kwargs: object) -> object:
        raise StorageUnavailable()

    monkeypatch.setattr(pair.apps[0].state.services.committer, "commit", database_locked)
    refused = await pair.clients[0].post("/v1/predictions/batch", json=batch(3), headers=acme.headers)
    assert refused.status_code == 503
    made = await pair.clients[1].post("/v1/predictions/batch", json=batch(3, seed=5), headers=acme.headers)
    assert made.status_code == 200 and made.json()["succeeded"] == 3
    usage = (await pair.clients[0].get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["used"] == 3


async def test_a_charge_that_cannot_be_given_back_stays_and_the_answer_is_unchanged(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await tenant_on(pair, "acme")
    services = pair.apps[0].state.services

    async def database_locked(**kwargs: object) -> object:
        raise StorageUnavailable()

    async def redis_gone(*args: object) -> None:
        raise RedisConnectionError("redis went away")

    monkeypatch.setattr(services.committer, "commit", database_locked)
    monkeypatch.setattr(services.limits.storage.counters, "take_back", redis_gone)
    refused = await pair.clients[0].post(
        "/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers
    )
    assert refused.status_code == 503 and refused.json()["type"].endswith("/storage-unavailable")
    usage = (await pair.clients[1].get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["used"] == 1


async def test_taking_back_from_redis_counters_spares_the_previous_window(settings: Settings, redis_url: str) -> None:
    storage = open_storage(settings.model_copy(update={"redis_url": redis_url}))
    counters = storage.counters
    assert isinstance(counters, RedisCounters)
    redis = Redis.from_url(redis_url)
    key = f"take-back-{uuid.uuid4().hex}"
    current_window = f"{KEY_PREFIX}:{{{key}}}"
    try:
        await redis.set(f"{current_window}/-1", 4, px=DAY_SECONDS * 1000)
        await assert_take_back_leaves_the_previous_window(counters, key)
        # A window that has ended keeps its count under the current window's key until the next hit or read
        # shifts it aside: it is the previous window's count, and stays.
        ended = f"ended-{key}"
        await redis.set(f"{KEY_PREFIX}:{{{ended}}}", 3, px=(DAY_SECONDS - 10) * 1000)
        await counters.take_back(ended, DAY_SECONDS, 2)
        previous, _, current, _ = await counters.get_sliding_window(ended, DAY_SECONDS)
        assert (previous, current) == (3, 0)
        await counters.take_back(f"never-{key}", DAY_SECONDS, 2)
        assert await redis.exists(f"{KEY_PREFIX}:{{never-{key}}}") == 0
    finally:
        await redis.delete(*await redis.keys(f"{KEY_PREFIX}:{{*{key}}}*"))
        await redis.aclose()
        await storage.close()
