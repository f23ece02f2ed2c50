"""Stored Idempotency-Key answers are replayed for a day, then the key is free and the answer swept away."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from qortex.core import idempotency
from qortex.core.clock import utcnow
from qortex.core.database import Database
from qortex.core.idempotency import KEY_LIFETIME, IdempotencyRecord
from tests.api.test_predictions import series
from tests.conftest import TenantCredentials


async def _age(owner_db: Database, tenant: TenantCredentials, key: str, by: timedelta) -> None:
    async with owner_db.tenant_session(tenant.tenant.scope, write=True) as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.tenant_id == tenant.tenant.id, IdempotencyRecord.key == key)
            .values(created_at=utcnow() - by)
        )


async def _stored_keys(owner_db: Database, tenant: TenantCredentials) -> set[str]:
    async with owner_db.tenant_session(tenant.tenant.scope) as session:
        keys = select(IdempotencyRecord.key).where(IdempotencyRecord.tenant_id == tenant.tenant.id)
        return set(await session.scalars(keys))


async def test_a_key_is_replayed_until_its_lifetime_ends_and_then_free(
    client: httpx.AsyncClient, owner_db: Database, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Idempotency-Key": "nightly-7"}
    first = await client.post("/v1/predictions", json={"source": "s", "values": series(seed=1)}, headers=headers)
    assert first.status_code == 201, first.text

    await _age(owner_db, acme, "nightly-7", KEY_LIFETIME - timedelta(minutes=1))
    replayed = await client.post("/v1/predictions", json={"source": "s", "values": series(seed=1)}, headers=headers)
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json()["id"] == first.json()["id"]

    await _age(owner_db, acme, "nightly-7", KEY_LIFETIME + timedelta(minutes=1))
    other_body = {"source": "s", "values": series(seed=2)}
    fresh = await client.post("/v1/predictions", json=other_body, headers=headers)
    assert fresh.status_code == 201, fresh.text
    assert "idempotent-replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    again = await client.post("/v1/predictions", json=other_body, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == fresh.json()["id"]

    listed = await client.get("/v1/predictions", headers=acme.headers)
    assert len(listed.json()["items"]) == 2


async def test_an_expired_api_key_creation_key_creates_a_new_key(
    client: httpx.AsyncClient, owner_db: Database, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Idempotency-Key": "ci-bot"}
    first = await client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    assert first.status_code == 201, first.text
    await _age(owner_db, acme, "ci-bot", KEY_LIFETIME + timedelta(seconds=1))
    second = await client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    assert second.status_code == 201, second.text
    assert second.json()["key"] is not None
    assert second.json()["id"] != first.json()["id"]


async def test_housekeeping_sweeps_every_tenants_expired_answers_and_keeps_the_rest(
    app: FastAPI, client: httpx.AsyncClient, owner_db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    for tenant in (acme, globex):
        for key in ("old", "new"):
            body = {"source": key, "values": series(seed=3)}
            made = await client.post("/v1/predictions", json=body, headers={**tenant.headers, "Idempotency-Key": key})
            assert made.status_code == 201, made.text
        await _age(owner_db, tenant, "old", KEY_LIFETIME + timedelta(hours=1))

    assert (await app.state.services.housekeeping.sweep())["idempotency_answers"] == 2

    for tenant in (acme, globex):
        assert await _stored_keys(owner_db, tenant) == {"new"}
        replay = await client.post(
            "/v1/predictions",
            json={"source": "new", "values": series(seed=3)},
            headers={**tenant.headers, "Idempotency-Key": "new"},
        )
        assert replay.headers.get("idempotent-replayed") == "true"
    assert (await app.state.services.housekeeping.sweep())["idempotency_answers"] == 0


async def test_a_sweep_deletes_more_expired_answers_than_one_chunk(
    db: Database, owner_db: Database, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = utcnow() - KEY_LIFETIME - timedelta(hours=1)
    async with db.tenant_session(acme.tenant.scope, write=True) as session:
        for n in range(7):
            idempotency.remember(
                session=session,
                scope=acme.tenant.scope,
                request=idempotency.IdempotentRequest(key=f"k{n}", request_sha256="0" * 64),
                status_code=201,
                body={"n": n},
            )
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        await session.execute(update(IdempotencyRecord).values(created_at=old))

    monkeypatch.setattr(idempotency, "SWEEP_CHUNK", 3)
    assert await idempotency.sweep_expired(db=db, scope=acme.tenant.scope) == 7
    async with owner_db.tenant_session(acme.tenant.scope) as session:
        assert await session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0
