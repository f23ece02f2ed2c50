"""Finished login sessions and their refresh tokens are deleted a day after they expired or ended."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from qortex.core.clock import utcnow
from qortex.core.database import Database
from qortex.identity import sweeps
from qortex.identity.models import AuthSession, RefreshToken
from qortex.identity.sweeps import FINISHED_SESSION_RETENTION
from tests.api.people import add_user, bearer, cheap_argon2, login
from tests.conftest import TenantCredentials


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


def _session_id(tokens: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"])


async def _set(owner_db: Database, tenant: TenantCredentials, session_id: uuid.UUID, **values: object) -> None:
    async with owner_db.tenant_session(tenant.tenant.scope, write=True) as session:
        await session.execute(update(AuthSession).where(AuthSession.id == session_id).values(**values))


async def _stored(owner_db: Database, tenant: TenantCredentials) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The ids of the tenant's sessions, and of the sessions its refresh tokens belong to."""
    async with owner_db.tenant_session(tenant.tenant.scope) as session:
        tenant_id = tenant.tenant.id
        sessions = set(await session.scalars(select(AuthSession.id).where(AuthSession.tenant_id == tenant_id)))
        tokens = select(RefreshToken.session_id).where(RefreshToken.tenant_id == tenant_id)
        token_sessions = set(await session.scalars(tokens))
    return sessions, token_sessions


async def test_sessions_finished_over_a_day_ago_are_swept_with_their_refresh_tokens(
    app: FastAPI, client: httpx.AsyncClient, owner_db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "dave")
    await add_user(app, globex.tenant, "erin")
    logged_out_long_ago, live, expired_long_ago, logged_out_now = [
        (await login(client, "dave")).json() for _ in range(4)
    ]
    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": logged_out_long_ago["refresh_token"]})
    assert rotated.status_code == 200
    for tokens in (rotated.json(), logged_out_now):
        assert (await client.post("/v1/auth/logout", headers=bearer(tokens["access_token"]))).status_code == 204
    other_tenant = (await login(client, "erin")).json()

    long_ago = utcnow() - FINISHED_SESSION_RETENTION - timedelta(minutes=1)
    await _set(owner_db, acme, _session_id(logged_out_long_ago), ended_at=long_ago)
    await _set(owner_db, acme, _session_id(expired_long_ago), created_at=long_ago, expires_at=long_ago)
    await _set(owner_db, globex, _session_id(other_tenant), expires_at=utcnow() - timedelta(minutes=1))

    swept = await app.state.services.housekeeping.sweep()

    assert swept["auth_sessions"] == 2
    kept = {_session_id(live), _session_id(logged_out_now)}
    assert await _stored(owner_db, acme) == (kept, kept)
    # Expired, but not yet for a day: kept.
    assert (await _stored(owner_db, globex))[0] == {_session_id(other_tenant)}
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": live["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    gone = await client.post("/v1/auth/refresh", json={"refresh_token": expired_long_ago["refresh_token"]})
    assert gone.status_code == 401


async def test_a_sweep_deletes_more_finished_sessions_than_one_chunk(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    owner_db: Database,
    acme: TenantCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await add_user(app, acme.tenant, "dave")
    for _ in range(5):
        await login(client, "dave")
    long_ago = utcnow() - FINISHED_SESSION_RETENTION - timedelta(minutes=1)
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(update(AuthSession).values(ended_at=long_ago))
    monkeypatch.setattr(sweeps, "SWEEP_CHUNK", 2)
    assert await sweeps.sweep_finished_sessions(db=db, scope=acme.tenant.scope) == 5
    assert await _stored(owner_db, acme) == (set(), set())
