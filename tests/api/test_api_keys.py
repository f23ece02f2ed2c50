"""API keys: shown once, stored hashed, role-scoped, revocable."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog.testing
from fastapi import FastAPI
from sqlalchemy import select

from qortex.audit.models import AuditEvent
from qortex.core.database import Database
from qortex.identity import service as identity_service
from qortex.identity.models import ApiKey
from qortex.security.rbac import Role
from tests.conftest import TenantCredentials, key_for

VALUES = [float(v) for v in range(1, 33)]


async def test_a_created_key_is_shown_once_and_only_its_hash_is_stored(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    created = await client.post("/v1/api-keys", json={"name": "ci", "role": "analyst"}, headers=acme.headers)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("qx_")
    listed = await client.get("/v1/api-keys", headers=acme.headers)
    assert key not in listed.text
    assert "ci" in [item["name"] for item in listed.json()["items"]]
    async with db.tenant_session(acme.tenant.scope) as session:
        stored = (await session.scalars(select(ApiKey).where(ApiKey.name == "ci"))).one()
    secret = key.split("_", 2)[2]
    assert stored.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored.__dict__)

    works = await client.post(
        "/v1/predictions", json={"source": "s", "values": VALUES}, headers={"Authorization": f"Bearer {key}"}
    )
    assert works.status_code == 201


async def test_a_replayed_key_creation_does_not_show_the_secret_again(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Idempotency-Key": "key-1"}
    first = await client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    again = await client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=headers)
    assert first.json()["key"] and again.json()["key"] is None
    assert again.json()["id"] == first.json()["id"]


async def test_a_key_name_nobody_can_read_is_refused(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    for name in ("", "   ", "\u200b", "\ufeff\u00ad", "ci\x00"):
        refused = await client.post("/v1/api-keys", json={"name": name, "role": "viewer"}, headers=acme.headers)
        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["errors"][0]["loc"] == ["body", "name"]


async def test_a_revoked_key_is_refused(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    created = (await client.post("/v1/api-keys", json={"name": "tmp", "role": "analyst"}, headers=acme.headers)).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/v1/predictions", headers=headers)).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=acme.headers)).status_code == 204
    refused = await client.get("/v1/predictions", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    revoked = await client.get("/v1/api-keys", params={"include_revoked": "true"}, headers=acme.headers)
    assert any(item["revoked_at"] for item in revoked.json()["items"])


async def test_a_key_revoked_while_this_process_was_reading_it_is_not_cached(
    client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that read the key's row just before the revocation committed must not put it back in the
    cache that the revocation has just cleared: this process refuses a revoked key at once."""
    created = (await client.post("/v1/api-keys", json={"name": "tmp", "role": "analyst"}, headers=acme.headers)).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    read, resume = asyncio.Event(), asyncio.Event()
    find = identity_service.repository.find_for_authentication

    async def pause_after_reading(**kwargs: Any) -> Any:
        key = await find(**kwargs)
        if kwargs["key_id"] == uuid.UUID(created["id"]):
            read.set()
            await resume.wait()
        return key

    monkeypatch.setattr(identity_service.repository, "find_for_authentication", pause_after_reading)
    in_flight = asyncio.create_task(client.get("/v1/predictions", headers=headers))
    await read.wait()
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=acme.headers)).status_code == 204
    resume.set()
    assert (await in_flight).status_code == 200  # it was authenticated before the revocation
    assert (await client.get("/v1/predictions", headers=headers)).status_code == 401


async def test_revoking_a_revoked_key_again_is_204_and_records_nothing(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    created = (await client.post("/v1/api-keys", json={"name": "tmp", "role": "analyst"}, headers=acme.headers)).json()
    statuses = [(await client.delete(f"/v1/api-keys/{created['id']}", headers=acme.headers)).status_code for _ in "12"]
    assert statuses == [204, 204]
    async with db.tenant_session(acme.tenant.scope) as session:
        revocations = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "api_key.revoke", AuditEvent.target_id == created["id"])
            )
        ).all()
    assert len(revocations) == 1


async def test_missing_malformed_and_wrong_credentials_are_401(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    tampered = acme.key[:-2] + ("AA" if not acme.key.endswith("AA") else "BB")
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer qx_nothex_secret"},
        {"Authorization": f"Bearer {tampered}"},
        {"Authorization": "Bearer qx_" + "0" * 32 + "_secret"},
    ):
        response = await client.get("/v1/predictions", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"


async def test_two_authorization_headers_are_refused_even_when_one_is_valid(
    client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    """Which copy counts depends on who reads it: a proxy that checks or logs the last one would see another
    credential, even another tenant's, than the one the API acted as."""
    for second in (globex.key, "anything"):
        both = [("Authorization", f"Bearer {acme.key}"), ("Authorization", f"Bearer {second}")]
        response = await client.get("/v1/predictions", headers=both)
        assert response.status_code == 401, response.text
        assert "more than once" in response.json()["detail"]


async def test_a_real_key_id_with_a_wrong_secret_is_logged_without_either_secret(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    prefix, key_id, secret = acme.key.split("_", 2)
    guessed = f"{prefix}_{key_id}_{'x' * len(secret)}"
    with structlog.testing.capture_logs() as logged:
        for _ in range(5):  # one line, not one per guess: guessing must not flood the log
            answer = await client.get("/v1/predictions", headers={"Authorization": f"Bearer {guessed}"})
            assert answer.status_code == 401
    [mismatch] = [entry for entry in logged if entry["event"] == "api_key_secret_mismatch"]
    assert mismatch["key_id"] == str(uuid.UUID(key_id)) and mismatch["tenant_id"] == str(acme.tenant.id)
    assert secret not in str(logged) and "x" * len(secret) not in str(logged)


async def test_a_role_without_the_permission_is_403(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    viewer = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.VIEWER)}"}
    assert (await client.get("/v1/predictions", headers=viewer)).status_code == 200
    refused = await client.post("/v1/predictions", json={"source": "s", "values": VALUES}, headers=viewer)
    assert refused.status_code == 403
    assert (await client.get("/v1/api-keys", headers=viewer)).status_code == 403


async def test_a_key_cannot_create_a_key_more_powerful_than_itself(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    admin = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.ADMIN)}"}
    refused = await client.post("/v1/api-keys", json={"name": "x", "role": "owner"}, headers=admin)
    assert refused.status_code == 403
    allowed = await client.post("/v1/api-keys", json={"name": "x", "role": "analyst"}, headers=admin)
    assert allowed.status_code == 201


async def test_a_key_cannot_create_a_key_that_outlives_it(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    """A key given for a while must not leave behind one that works for ever."""
    expiring = await client.post(
        "/v1/api-keys",
        json={"name": "a week", "role": "admin", "expires_at": "2100-01-01T00:00:00Z"},
        headers=acme.headers,
    )
    headers = {"Authorization": f"Bearer {expiring.json()['key']}"}
    for expires_at in (None, "2100-01-01T00:00:01Z"):
        refused = await client.post(
            "/v1/api-keys", json={"name": "x", "role": "viewer", "expires_at": expires_at}, headers=headers
        )
        assert refused.status_code == 403, refused.text
        assert "2100-01-01T00:00:00+00:00" in refused.json()["detail"]
    for expires_at in ("2100-01-01T00:00:00Z", "2099-12-31T23:00:00-01:00", "2099-01-01T00:00:00Z"):
        made = await client.post(
            "/v1/api-keys", json={"name": "x", "role": "viewer", "expires_at": expires_at}, headers=headers
        )
        assert made.status_code == 201, made.text
    keys = (await client.get("/v1/api-keys", params={"limit": 500}, headers=acme.headers)).json()["items"]
    assert [k["expires_at"] for k in keys if k["name"] == "x"].count(None) == 0


async def test_an_expired_key_is_refused(client: httpx.AsyncClient, acme: TenantCredentials, db: Database) -> None:
    # The API refuses to create a key that is already dead, so this one is made as an operator would.
    created = await identity_service.create_key(
        db=db, scope=acme.tenant.scope, name="old", role=Role.VIEWER, expires_at=datetime(2020, 1, 1, tzinfo=UTC)
    )
    response = await client.get("/v1/predictions", headers={"Authorization": f"Bearer {created.body['key']}"})
    assert response.status_code == 401
    # The same answer as an unknown key's: a refusal does not say which.
    unknown = await client.get("/v1/predictions", headers={"Authorization": f"Bearer qx_{'0' * 32}_{'A' * 43}"})
    assert response.json()["detail"] == unknown.json()["detail"]


async def test_an_admin_cannot_revoke_an_owners_key(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    admin = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.ADMIN)}"}
    owner_key = (await client.post("/v1/api-keys", json={"name": "o", "role": "owner"}, headers=acme.headers)).json()
    refused = await client.delete(f"/v1/api-keys/{owner_key['id']}", headers=admin)
    assert refused.status_code == 403
    assert (await client.get("/v1/models", headers={"Authorization": f"Bearer {owner_key['key']}"})).status_code == 200
    analyst_key = (await client.post("/v1/api-keys", json={"name": "a", "role": "analyst"}, headers=admin)).json()
    assert (await client.delete(f"/v1/api-keys/{analyst_key['id']}", headers=admin)).status_code == 204


async def test_a_refusal_stands_when_its_audit_record_cannot_be_stored(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def audit_store_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("audit store unreachable")

    monkeypatch.setattr(app.state.services.audit, "write", audit_store_down)
    viewer = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.VIEWER)}"}
    refused = await client.post("/v1/predictions", json={"source": "s", "values": VALUES}, headers=viewer)
    assert refused.status_code == 403


def test_wrong_secrets_are_logged_once_per_interval_with_the_count_in_between(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = identity_service.ApiKeyCache(ttl_seconds=5, max_entries=10)
    key_id = uuid.uuid4()
    now = [1000.0]
    monkeypatch.setattr(identity_service.time, "monotonic", lambda: now[0])
    assert cache.mismatch_to_log(key_id) == 0
    assert [cache.mismatch_to_log(key_id) for _ in range(3)] == [None, None, None]
    now[0] += identity_service.MISMATCH_LOG_SECONDS
    assert cache.mismatch_to_log(key_id) == 3
