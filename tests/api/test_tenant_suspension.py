"""A suspended tenant: every key and session refused with one clear problem, data kept, all of it undone by resume."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from qortex.audit.models import AuditEvent
from qortex.core.database import Database
from qortex.security.rbac import Role
from qortex.tenants import service as tenant_service
from tests.api.people import add_user, bearer, cheap_argon2, login
from tests.conftest import TenantCredentials

MODELS = "/v1/models"


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


async def set_active(app: FastAPI, who: TenantCredentials, active: bool) -> bool:
    changed = await tenant_service.set_active(db=app.state.services.db, scope=who.tenant.scope, active=active)
    # As every running server does within QORTEX_TENANT_POLICY_CACHE_SECONDS.
    app.state.services.request_policy.policies.forget(who.tenant.id)
    return changed


async def test_a_suspended_tenant_is_refused_everywhere_and_resumed_whole(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials, db: Database
) -> None:
    await add_user(app, acme.tenant, "sam", Role.ADMIN)
    session = (await login(client, "sam")).json()
    made = await client.post(
        "/v1/predictions", json={"source": "s", "values": [1.0, 2, 3, 4, 5, 6, 7, 8]}, headers=acme.headers
    )
    assert made.status_code == 201

    assert await set_active(app, acme, active=False)
    for headers in (acme.headers, bearer(session["access_token"])):
        refused = await client.get(MODELS, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["type"] == "https://qortex.dev/problems/tenant-suspended"
    # Logging in is refused like a wrong password: a distinct answer would confirm the password.
    assert (await login(client, "sam")).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})).status_code == 403
    assert (await client.get(MODELS, headers=globex.headers)).status_code == 200

    assert not await set_active(app, acme, active=False)
    assert await set_active(app, acme, active=True)
    assert (await client.get(f"/v1/predictions/{made.json()['id']}", headers=acme.headers)).status_code == 200
    assert (await client.get(MODELS, headers=bearer(session["access_token"]))).status_code == 200
    # The refresh token refused while suspended was not used up.
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})).status_code == 200

    await app.state.services.audit.settled()
    async with db.tenant_session(acme.tenant.scope) as session_db:
        events = list(
            await session_db.scalars(
                select(AuditEvent)
                .where(AuditEvent.tenant_id == acme.tenant.id, AuditEvent.action.like("tenant.%"))
                .order_by(AuditEvent.seq)
            )
        )
        refusals = list(
            await session_db.scalars(
                select(AuditEvent).where(AuditEvent.tenant_id == acme.tenant.id, AuditEvent.action == "auth.login")
            )
        )
    assert [(e.action, e.actor_kind) for e in events][-2:] == [
        ("tenant.suspend", "operator"),
        ("tenant.resume", "operator"),
    ]
    assert [e.details.get("reason") for e in refusals if e.outcome == "failure"] == ["tenant_suspended"]


async def test_a_dead_refresh_token_learns_nothing_of_the_suspension(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "tess", Role.ANALYST)
    first = (await login(client, "tess")).json()
    rotated = (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert (await client.post("/v1/auth/logout", headers=bearer(rotated["access_token"]))).status_code == 204
    await set_active(app, acme, active=False)
    for token in (first["refresh_token"], rotated["refresh_token"]):  # used, and of an ended session
        answer = await client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert answer.status_code == 401, answer.text
