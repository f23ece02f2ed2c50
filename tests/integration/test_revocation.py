"""Ending a session on one instance is honoured by every other instance sharing the database (and Redis).

Promises: with Redis, another instance refuses the session's access token within 1 second; without
Redis, within 5 seconds (each instance polls the database for ended sessions every 2 seconds).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from qortex.api import create_app
from qortex.core.config import Settings
from qortex.security.rbac import Role
from tests.api.people import add_user, bearer, cheap_argon2, login
from tests.conftest import make_tenant


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


@asynccontextmanager
async def two_instances(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, object]]:
    """Two apps, each with its own services (pool, caches, ended-session set), on one database."""
    async with AsyncExitStack() as stack:
        apps = [create_app(settings), create_app(settings)]
        clients = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://qortex.test"))
            )
        yield clients[0], clients[1], apps[0]


async def seconds_until_refused(client: httpx.AsyncClient, token: str, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit + 1:
        if (await client.get("/v1/auth/me", headers=bearer(token))).status_code == 401:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return float("inf")


async def check_propagation(settings: Settings, limit: float) -> None:
    async with two_instances(settings) as (a, b, app_a):
        services = app_a.state.services  # type: ignore[attr-defined]
        tenant = (await make_tenant(services.db, f"t{uuid.uuid4().hex[:8]}")).tenant
        name = f"u{uuid.uuid4().hex[:12]}"
        await add_user(app_a, tenant, name)  # type: ignore[arg-type]

        # Logout on A; B verified the token a moment ago and must stop accepting it.
        pair = (await login(a, name)).json()
        assert (await b.get("/v1/auth/me", headers=bearer(pair["access_token"]))).status_code == 200
        assert (await a.post("/v1/auth/logout", headers=bearer(pair["access_token"]))).status_code == 204
        assert await seconds_until_refused(b, pair["access_token"], limit) < limit

        # A copied refresh token replayed on A ends the family; B refuses the newest access token too.
        first = (await login(a, name)).json()
        rotated = (await a.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        assert (await b.get("/v1/auth/me", headers=bearer(rotated["access_token"]))).status_code == 200
        assert (await a.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).status_code == 401
        assert await seconds_until_refused(b, rotated["access_token"], limit) < limit


async def test_logout_is_refused_by_another_instance_within_one_second_with_redis(
    settings: Settings, redis_url: str
) -> None:
    await check_propagation(settings.model_copy(update={"redis_url": redis_url}), limit=1.0)


async def test_logout_is_refused_by_another_instance_within_five_seconds_without_redis(settings: Settings) -> None:
    assert settings.redis_url is None
    await check_propagation(settings, limit=5.0)


async def test_a_revoked_api_key_is_refused_by_another_instance_within_five_seconds(settings: Settings) -> None:
    async with two_instances(settings) as (a, b, app_a):
        services = app_a.state.services  # type: ignore[attr-defined]
        owner = await make_tenant(services.db, f"t{uuid.uuid4().hex[:8]}")
        created = (await a.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=owner.headers)).json()
        # B verifies the key first, so it sits in B's cache when A revokes it.
        assert (await b.get("/v1/models", headers=bearer(created["key"]))).status_code == 200
        assert (await a.delete(f"/v1/api-keys/{created['id']}", headers=owner.headers)).status_code == 204
        assert (await a.get("/v1/models", headers=bearer(created["key"]))).status_code == 401
        started = time.monotonic()
        while (await b.get("/v1/models", headers=bearer(created["key"]))).status_code == 200:
            assert time.monotonic() - started < 5.0, "instance B still accepts the revoked key after 5 s"
            await asyncio.sleep(0.1)


async def test_logout_is_refused_within_five_seconds_when_redis_is_configured_but_away(settings: Settings) -> None:
    """With no subscription, each instance polls the database as often as it would without Redis."""
    await check_propagation(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}), limit=5.0)


async def test_a_credential_still_cached_elsewhere_cannot_leave_a_key_or_a_user_behind(settings: Settings) -> None:
    """Within the propagation delay another instance still accepts a demoted person's token; what it makes
    would outlive the demotion (a key, an account), so grants check the credential in their transaction."""
    async with two_instances(settings) as (a, b, app_a):
        services = app_a.state.services  # type: ignore[attr-defined]
        owner = await make_tenant(services.db, f"t{uuid.uuid4().hex[:8]}")
        name = f"u{uuid.uuid4().hex[:12]}"
        person = await add_user(app_a, owner.tenant, name, Role.ADMIN)  # type: ignore[arg-type]
        other = await add_user(app_a, owner.tenant, f"o{uuid.uuid4().hex[:12]}", Role.ADMIN)  # type: ignore[arg-type]
        session = bearer((await login(a, name)).json()["access_token"])
        minted = (await b.post("/v1/api-keys", json={"name": "before", "role": "admin"}, headers=session)).json()
        assert (await b.get("/v1/auth/me", headers=session)).status_code == 200  # B has it cached now
        assert (await b.get("/v1/auth/me", headers=bearer(minted["key"]))).status_code == 200

        assert (await a.patch(f"/v1/users/{person}", json={"role": "viewer"}, headers=owner.headers)).status_code == 200

        for credential in (session, bearer(minted["key"])):
            grants = [
                await b.post("/v1/api-keys", json={"name": "escape", "role": "admin"}, headers=credential),
                await b.post(
                    "/v1/users",
                    json={
                        "username": f"n{uuid.uuid4().hex[:12]}",
                        "email": f"{uuid.uuid4().hex[:12]}@example.com",
                        "display_name": "New",
                        "password": "a long enough password",
                        "role": "admin",
                    },
                    headers=credential,
                ),
                await b.patch(f"/v1/users/{other}", json={"password": "known to the thief"}, headers=credential),
            ]
            assert [answer.status_code for answer in grants] == [401, 401, 401], [g.text for g in grants]
        keys = (await a.get("/v1/api-keys", headers=owner.headers)).json()["items"]
        assert [key["name"] for key in keys if key["name"] == "escape"] == []
        users = (await a.get("/v1/users", headers=owner.headers)).json()["items"]
        assert len(users) == 2


async def test_a_key_revoked_on_one_instance_cannot_mint_keys_on_another(settings: Settings) -> None:
    async with two_instances(settings) as (a, b, app_a):
        services = app_a.state.services  # type: ignore[attr-defined]
        owner = await make_tenant(services.db, f"t{uuid.uuid4().hex[:8]}")
        made = (await a.post("/v1/api-keys", json={"name": "doomed", "role": "admin"}, headers=owner.headers)).json()
        doomed = bearer(made["key"])
        assert (await b.get("/v1/api-keys", headers=doomed)).status_code == 200  # cached on B
        assert (await a.delete(f"/v1/api-keys/{made['id']}", headers=owner.headers)).status_code == 204
        escape = await b.post("/v1/api-keys", json={"name": "escape", "role": "admin"}, headers=doomed)
        assert escape.status_code == 401, escape.text
