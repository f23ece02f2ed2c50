"""Grants (keys, users, user changes) against the revocations that race them, on SQLite and PostgreSQL.

A grant by a credential that dies at the same moment must either be revoked with it or refused, and no
pair of these flows may deadlock (PostgreSQL would answer 40P01, which the API turns into a 503).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from qortex.core.clock import utcnow
from qortex.core.database import Database
from qortex.identity import actors
from qortex.identity import users as users_module
from qortex.identity.models import AuthSession
from qortex.security.rbac import Role
from tests.api.people import PASSWORD, add_user, bearer, cheap_argon2, login
from tests.conftest import TenantCredentials


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


def new_user(username: str, **extra: str) -> dict[str, str]:
    fields = {"username": username, "email": f"{username}@example.com", "display_name": username.title()}
    return {**fields, "password": PASSWORD, "role": "analyst", **extra}


async def test_a_key_minted_while_a_reused_refresh_token_ends_the_session_does_not_survive(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_user(app, acme.tenant, "rita", Role.ADMIN)
    tokens = (await login(client, "rita")).json()
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 200
    confirmed, resume = asyncio.Event(), asyncio.Event()
    confirm_actor = actors.confirm_actor

    async def pause_after_confirming(**kwargs: Any) -> None:
        await confirm_actor(**kwargs)
        confirmed.set()
        await resume.wait()

    monkeypatch.setattr(actors, "confirm_actor", pause_after_confirming)
    session = bearer(tokens["access_token"])
    mint = asyncio.create_task(client.post("/v1/api-keys", json={"name": "t", "role": "admin"}, headers=session))
    await confirmed.wait()
    reuse = asyncio.create_task(client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))
    await asyncio.sleep(0.5)  # without the person's lock, PostgreSQL committed the reuse here
    resume.set()
    minted, reused = await asyncio.gather(mint, reuse)
    assert reused.status_code == 401
    assert minted.status_code in (201, 401), minted.text
    if minted.status_code == 201:
        assert (await client.get("/v1/auth/me", headers=bearer(minted.json()["key"]))).status_code == 401


async def test_no_key_minted_around_a_refresh_token_reuse_survives_it(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """Unpaused: the mint and the reuse start a few hundred microseconds apart, either first."""
    for attempt in range(24):
        await add_user(app, acme.tenant, f"sr{attempt}", Role.ADMIN)
        tokens = (await login(client, f"sr{attempt}")).json()
        first = {"refresh_token": tokens["refresh_token"]}
        assert (await client.post("/v1/auth/refresh", json=first)).status_code == 200
        offset = (attempt - 12) * 0.0004

        async def reuse(offset: float = offset, body: dict[str, str] = first) -> httpx.Response:
            await asyncio.sleep(max(offset, 0))
            return await client.post("/v1/auth/refresh", json=body)

        async def mint(offset: float = offset, access: str = tokens["access_token"]) -> httpx.Response:
            await asyncio.sleep(max(-offset, 0))
            return await client.post("/v1/api-keys", json={"name": "t", "role": "admin"}, headers=bearer(access))

        minted, _ = await asyncio.gather(mint(), reuse())
        if minted.status_code == 201:
            assert (await client.get("/v1/auth/me", headers=bearer(minted.json()["key"]))).status_code == 401


async def test_revoking_a_key_while_its_person_is_deactivated_does_not_deadlock(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = await add_user(app, acme.tenant, "kim", Role.ADMIN)
    session = bearer((await login(client, "kim")).json()["access_token"])
    made = (await client.post("/v1/api-keys", json={"name": "k", "role": "analyst"}, headers=session)).json()
    paused, resume = asyncio.Event(), asyncio.Event()
    revoke_keys_minted_for = users_module.revoke_keys_minted_for

    async def pause_before_revoking(**kwargs: Any) -> Any:
        paused.set()
        await resume.wait()
        return await revoke_keys_minted_for(**kwargs)

    monkeypatch.setattr(users_module, "revoke_keys_minted_for", pause_before_revoking)
    deactivate = asyncio.create_task(client.delete(f"/v1/users/{person}", headers=acme.headers))
    await paused.wait()
    revoke = asyncio.create_task(client.delete(f"/v1/api-keys/{made['id']}", headers=acme.headers))
    await asyncio.sleep(0.5)
    resume.set()
    deactivated, revoked = await asyncio.gather(deactivate, revoke)
    assert (deactivated.status_code, revoked.status_code) == (204, 204), (deactivated.text, revoked.text)


async def test_creating_a_user_while_an_email_is_changed_to_the_same_address_does_not_deadlock(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_user(app, acme.tenant, "ann", Role.ADMIN)
    bob = await add_user(app, acme.tenant, "bob", Role.ANALYST)
    session = bearer((await login(client, "ann")).json()["access_token"])
    confirmed, resume = asyncio.Event(), asyncio.Event()
    confirm_actor = actors.confirm_actor

    async def pause_creation_before_confirming(**kwargs: Any) -> None:
        confirmed.set()  # only grants check through here; update_user calls its own import
        await resume.wait()
        await confirm_actor(**kwargs)

    # Checked after inserting the new row, the creation held its email while waiting for ann's row, which
    # the update held while waiting for that email.
    monkeypatch.setattr(actors, "confirm_actor", pause_creation_before_confirming)
    create = asyncio.create_task(
        client.post("/v1/users", json=new_user("carl", email="same@example.com"), headers=session)
    )
    await confirmed.wait()
    update = asyncio.create_task(client.patch(f"/v1/users/{bob}", json={"email": "same@example.com"}, headers=session))
    await asyncio.sleep(0.5)
    resume.set()
    created, updated = await asyncio.gather(create, update)
    assert sorted([created.status_code, updated.status_code]) in ([200, 409], [201, 409]), (created.text, updated.text)


async def test_every_flow_on_one_person_at_once_finishes_without_a_deadlock(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    rng = random.Random(7)
    failed: list[str] = []
    for round_ in range(8):
        first = await add_user(app, acme.tenant, f"mo{round_}", Role.OWNER)
        second = await add_user(app, acme.tenant, f"mp{round_}", Role.OWNER)
        t1, t2, t1b = [(await login(client, name)).json() for name in (f"mo{round_}", f"mp{round_}", f"mo{round_}")]
        h1, h2 = bearer(t1["access_token"]), bearer(t2["access_token"])
        minted = (await client.post("/v1/api-keys", json={"name": "k", "role": "admin"}, headers=h1)).json()
        k1 = bearer(minted["key"])
        spare = (await client.post("/v1/api-keys", json={"name": "s", "role": "analyst"}, headers=h1)).json()
        assert (await client.post("/v1/auth/refresh", json={"refresh_token": t1b["refresh_token"]})).status_code == 200
        jobs = [
            client.post("/v1/api-keys", json={"name": "a", "role": "admin"}, headers=h1),
            client.post("/v1/api-keys", json={"name": "b", "role": "admin"}, headers=k1),
            client.post("/v1/users", json=new_user(f"mq{round_}"), headers=h1),
            client.patch(f"/v1/users/{first}", json={"role": "admin"}, headers=h2),
            client.patch(f"/v1/users/{second}", json={"role": "admin"}, headers=h1),
            client.patch(f"/v1/users/{second}", json={"display_name": "x"}, headers=k1),
            client.post(
                "/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": "another long passphrase"},
                headers=h1,
            ),
            client.post("/v1/auth/refresh", json={"refresh_token": t1b["refresh_token"]}),  # a reuse
            client.post("/v1/auth/refresh", json={"refresh_token": t2["refresh_token"]}),
            client.post("/v1/auth/logout", headers=h2),
            login(client, f"mp{round_}"),
            client.patch("/v1/tenant", json={"require_signed_requests": False}, headers=acme.headers),
            client.delete(f"/v1/api-keys/{spare['id']}", headers=acme.headers),
            client.delete(f"/v1/users/{first}", headers=acme.headers),
        ]

        async def later(job: Any, delay: float) -> httpx.Response:
            await asyncio.sleep(delay)
            answer: httpx.Response = await job
            return answer

        answers = await asyncio.gather(*(later(job, rng.random() * 0.01) for job in jobs))
        failed += [f"round {round_} job {i}: {a.text[:120]}" for i, a in enumerate(answers) if a.status_code >= 500]
    assert failed == []


async def test_live_credentials_keep_their_grants(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """The check refuses only dead credentials: refreshed sessions, minted keys, expiring keys, operator keys."""
    await add_user(app, acme.tenant, "lena", Role.ADMIN)
    tokens = (await login(client, "lena")).json()
    session = bearer(tokens["access_token"])
    refreshed = (await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
    for headers in (session, bearer(refreshed["access_token"])):
        assert (
            await client.post("/v1/api-keys", json={"name": "s", "role": "analyst"}, headers=headers)
        ).status_code == 201
    later = (utcnow() + timedelta(days=1)).isoformat()
    expiring = await client.post(
        "/v1/api-keys", json={"name": "e", "role": "admin", "expires_at": later}, headers=session
    )
    minted = bearer(expiring.json()["key"])
    # No later than itself: a key cannot outlive the key that creates it.
    assert (
        await client.post("/v1/api-keys", json={"name": "ee", "role": "analyst", "expires_at": later}, headers=minted)
    ).status_code == 201
    assert (await client.post("/v1/users", json=new_user("made1"), headers=minted)).status_code == 201
    me = (await client.get("/v1/auth/me", headers=session)).json()
    own = await client.patch(f"/v1/users/{me['user']['id']}", json={"display_name": "L"}, headers=session)
    assert own.status_code == 200, own.text
    # Logging out leaves the keys minted from the session working, and granting.
    assert (await client.post("/v1/auth/logout", headers=session)).status_code == 204
    assert (await client.post("/v1/users", json=new_user("made2"), headers=minted)).status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PATCH", "/v1/tenant", {"require_signed_requests": False}), ("POST", "/v1/tenant/signing-secret", None)],
)
async def test_a_session_ended_after_authentication_cannot_change_the_tenants_security(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner_db: Database,
    acme: TenantCredentials,
    method: str,
    path: str,
    body: dict[str, bool] | None,
) -> None:
    """The session ends in the database; this process learns of it only at its next poll, after the request."""
    await add_user(app, acme.tenant, "olga", Role.OWNER)
    tokens = (await login(client, "olga")).json()
    sid = uuid.UUID(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"])
    before = (await client.get("/v1/tenant", headers=acme.headers)).json()
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(update(AuthSession).where(AuthSession.id == sid).values(ended_at=utcnow()))

    refused = await client.request(method, path, json=body, headers=bearer(tokens["access_token"]))

    assert refused.status_code == 401, refused.text
    assert "signing_secret" not in refused.text
    assert (await client.get("/v1/tenant", headers=acme.headers)).json() == before
    rotations = {"action": "tenant.signing_secret_rotated"}
    assert (await client.get("/v1/audit/events", params=rotations, headers=acme.headers)).json()["items"] == []
