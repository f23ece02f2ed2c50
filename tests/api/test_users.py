"""A tenant's people: CRUD, who may grant which role, deactivation, isolation, validation, audit."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from qortex.audit.models import AuditEvent
from qortex.core.database import Database
from qortex.identity import auth_service
from qortex.identity.models import User
from qortex.security.rbac import Role
from tests.api.people import PASSWORD, add_user, bearer, cheap_argon2, login
from tests.conftest import TenantCredentials, key_for


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


def new_user(username: str, role: str = "analyst", **extra: str) -> dict[str, str]:
    return {
        "username": username,
        "email": f"{username}@example.com",
        "display_name": username.title(),
        "password": PASSWORD,
        "role": role,
        **extra,
    }


async def test_an_idempotency_key_sent_twice_makes_no_person(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    headers = [*acme.headers.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    refused = await client.post("/v1/users", json=new_user("mia"), headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert "mia" not in (await client.get("/v1/users", headers=acme.headers)).text


async def test_create_read_list_update_and_deactivate(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    headers = {**acme.headers, "Idempotency-Key": "user-1"}
    created = await client.post("/v1/users", json=new_user("Judy", email="Judy@Example.COM"), headers=headers)
    assert created.status_code == 201, created.text
    judy = created.json()
    assert judy["username"] == "judy" and judy["email"] == "judy@example.com" and judy["active"] is True
    assert "password" not in judy and "password_hash" not in created.text
    again = await client.post("/v1/users", json=new_user("Judy", email="Judy@Example.COM"), headers=headers)
    assert again.status_code == 201 and again.json()["id"] == judy["id"]
    assert again.headers["idempotent-replayed"] == "true"

    for name in ("karl", "lena"):
        assert (await client.post("/v1/users", json=new_user(name), headers=acme.headers)).status_code == 201
    page = await client.get("/v1/users", params={"limit": 2}, headers=acme.headers)
    assert page.status_code == 200
    assert [u["username"] for u in page.json()["items"]] == ["judy", "karl"]
    rest = await client.get(
        "/v1/users", params={"limit": 2, "cursor": page.json()["next_cursor"]}, headers=acme.headers
    )
    assert [u["username"] for u in rest.json()["items"]] == ["lena"] and rest.json()["next_cursor"] is None

    fetched = await client.get(f"/v1/users/{judy['id']}", headers=acme.headers)
    assert fetched.status_code == 200 and fetched.json() == judy
    patched = await client.patch(
        f"/v1/users/{judy['id']}", json={"display_name": "Judy H.", "email": "jh@example.com"}, headers=acme.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["display_name"] == "Judy H." and patched.json()["email"] == "jh@example.com"

    assert (await client.delete(f"/v1/users/{judy['id']}", headers=acme.headers)).status_code == 204
    active = await client.get("/v1/users", headers=acme.headers)
    assert judy["id"] not in [u["id"] for u in active.json()["items"]]
    everyone = await client.get("/v1/users", params={"include_inactive": "true"}, headers=acme.headers)
    assert [u["active"] for u in everyone.json()["items"] if u["id"] == judy["id"]] == [False]
    reactivated = await client.patch(f"/v1/users/{judy['id']}", json={"active": True}, headers=acme.headers)
    assert reactivated.json()["active"] is True

    async with db.tenant_session(acme.tenant.scope) as session:
        stored = (await session.scalars(select(User).where(User.username == "judy"))).one()
    assert stored.password_hash.startswith("$argon2id$") and PASSWORD not in stored.password_hash


async def test_who_may_grant_which_role(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    admin = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.ADMIN)}"}
    analyst = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.ANALYST)}"}
    assert (await client.post("/v1/users", json=new_user("mia", "owner"), headers=admin)).status_code == 403
    assert (await client.post("/v1/users", json=new_user("mia"), headers=analyst)).status_code == 403
    assert (await client.get("/v1/users", headers=analyst)).status_code == 403
    mia = (await client.post("/v1/users", json=new_user("mia", "viewer"), headers=admin)).json()
    assert (await client.patch(f"/v1/users/{mia['id']}", json={"role": "owner"}, headers=admin)).status_code == 403
    promoted = await client.patch(f"/v1/users/{mia['id']}", json={"role": "admin"}, headers=admin)
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"

    boss = (await client.post("/v1/users", json=new_user("boss", "owner"), headers=acme.headers)).json()
    for attempt in (
        client.patch(f"/v1/users/{boss['id']}", json={"role": "viewer"}, headers=admin),
        client.patch(f"/v1/users/{boss['id']}", json={"password": "a takeover password"}, headers=admin),
        client.delete(f"/v1/users/{boss['id']}", headers=admin),
    ):
        assert (await attempt).status_code == 403

    # Nobody demotes or deactivates themselves by accident.
    own = bearer((await login(client, "boss")).json()["access_token"])
    assert (await client.patch(f"/v1/users/{boss['id']}", json={"role": "admin"}, headers=own)).status_code == 403
    assert (await client.delete(f"/v1/users/{boss['id']}", headers=own)).status_code == 403
    reset_own = await client.patch(f"/v1/users/{boss['id']}", json={"password": "no current needed?"}, headers=own)
    assert reset_own.status_code == 403
    assert (await client.patch(f"/v1/users/{mia['id']}", json={"role": "owner"}, headers=own)).status_code == 200


async def test_role_change_password_reset_and_deactivation_end_the_users_sessions(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    user_id = await add_user(app, acme.tenant, "nina")
    for change in ({"role": "viewer"}, {"password": "reset by the admin"}):
        access = bearer((await login(client, "nina")).json()["access_token"])
        assert (await client.get("/v1/auth/me", headers=access)).status_code == 200
        assert (await client.patch(f"/v1/users/{user_id}", json=change, headers=acme.headers)).status_code == 200
        assert (await client.get("/v1/auth/me", headers=access)).status_code == 401, change
    assert (await login(client, "nina")).status_code == 401
    pair = (await login(client, "nina", "reset by the admin")).json()
    assert (await client.delete(f"/v1/users/{user_id}", headers=acme.headers)).status_code == 204
    assert (await client.get("/v1/auth/me", headers=bearer(pair["access_token"]))).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 401
    assert (await login(client, "nina", "reset by the admin")).status_code == 401

    async with db.tenant_session(acme.tenant.scope) as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.target_id == str(user_id)))).all()
    actions = [e.action for e in rows]
    for action in ("user.create", "user.role_change", "user.password_change", "user.deactivate"):
        assert action in actions
    change = next(e for e in rows if e.action == "user.role_change")
    assert change.details == {"old_role": "analyst", "new_role": "viewer"}
    assert all("nina" not in str(e.details) and e.actor_id != "nina" for e in rows)


async def test_keys_minted_from_a_session_cannot_do_what_the_session_may_not_to_its_own_person(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """A stolen access token must not take the account over by minting a key and resetting through it."""
    admin_id = await add_user(app, acme.tenant, "oscar", Role.ADMIN)
    session = bearer((await login(client, "oscar")).json()["access_token"])
    minted = await client.post("/v1/api-keys", json={"name": "minted", "role": "admin"}, headers=session)
    assert minted.status_code == 201, minted.text
    by_key = bearer(minted.json()["key"])
    # A key minted by that key still acts for the same person.
    again = await client.post("/v1/api-keys", json={"name": "minted again", "role": "admin"}, headers=by_key)
    for key in (by_key, bearer(again.json()["key"])):
        for change in ({"password": "taken over by a thief"}, {"role": "viewer"}, {"active": True}):
            assert (await client.patch(f"/v1/users/{admin_id}", json=change, headers=key)).status_code == 403
        assert (await client.delete(f"/v1/users/{admin_id}", headers=key)).status_code == 403
    assert (await login(client, "oscar")).status_code == 200
    # For anyone else the key is as the admin: it may reset an analyst's password.
    analyst_id = await add_user(app, acme.tenant, "pia")
    reset = await client.patch(f"/v1/users/{analyst_id}", json={"password": "reset by the admin"}, headers=by_key)
    assert reset.status_code == 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"active": False}, "deactivation"),
        ({"role": "analyst"}, "role_change"),
        ({"password": "reset by owner"}, "password_change"),
    ],
)
async def test_deactivation_a_role_change_or_a_reset_revokes_the_keys_minted_for_the_person(
    app: FastAPI,
    client: httpx.AsyncClient,
    acme: TenantCredentials,
    db: Database,
    change: dict[str, object],
    reason: str,
) -> None:
    person_id = await add_user(app, acme.tenant, "quinn", Role.ADMIN)
    session = bearer((await login(client, "quinn")).json()["access_token"])
    minted = (await client.post("/v1/api-keys", json={"name": "quinn's", "role": "admin"}, headers=session)).json()
    assert (await client.get("/v1/api-keys", headers=bearer(minted["key"]))).status_code == 200

    assert (await client.patch(f"/v1/users/{person_id}", json=change, headers=acme.headers)).status_code == 200

    assert (await client.get("/v1/api-keys", headers=bearer(minted["key"]))).status_code == 401
    assert (await client.get("/v1/api-keys", headers=acme.headers)).status_code == 200  # an operator's key stays
    async with db.tenant_session(acme.tenant.scope) as session_db:
        revoked = (
            await session_db.scalars(
                select(AuditEvent).where(AuditEvent.action == "api_key.revoke", AuditEvent.target_id == minted["id"])
            )
        ).all()
    assert [event.details for event in revoked] == [{"reason": reason}]


async def test_changing_ones_own_password_revokes_the_keys_minted_for_oneself(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """What one does on suspecting a stolen session: the thief's minted keys must stop too."""
    await add_user(app, acme.tenant, "rosa", Role.ADMIN)
    session = bearer((await login(client, "rosa")).json()["access_token"])
    minted = (await client.post("/v1/api-keys", json={"name": "thief's", "role": "admin"}, headers=session)).json()
    changed = await client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a fresh and longer secret"},
        headers=session,
    )
    assert changed.status_code == 204
    assert (await client.get("/v1/api-keys", headers=bearer(minted["key"]))).status_code == 401


async def test_another_tenants_user_is_not_found(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    theirs = await add_user(app, globex.tenant, "oscar")
    assert (await client.get(f"/v1/users/{theirs}", headers=acme.headers)).status_code == 404
    assert (await client.patch(f"/v1/users/{theirs}", json={"role": "viewer"}, headers=acme.headers)).status_code == 404
    assert (await client.delete(f"/v1/users/{theirs}", headers=acme.headers)).status_code == 404
    assert str(theirs) not in (await client.get("/v1/users", headers=acme.headers)).text
    assert (await client.get(f"/v1/users/{theirs}", headers=globex.headers)).status_code == 200


async def test_invalid_users_are_refused(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    for body in (
        new_user("pat", password="elevenchars"),
        new_user("pat", password="x" * 1025),
        new_user("pat", email="not-an-email"),
        new_user("p"),
        new_user("pat", role="root"),
        new_user("pat", display_name="Pat\x00"),
        new_user("pat", display_name="\u200b\u00ad"),
        {**new_user("pat"), "password_hash": "$argon2id$..."},
    ):
        response = await client.post("/v1/users", json=body, headers=acme.headers)
        assert response.status_code == 422, body
        assert "elevenchars" not in response.text
    assert (await client.post("/v1/users", json=new_user("pat"), headers=acme.headers)).status_code == 201
    # Login names no tenant, so names and emails are unique across all of them.
    taken = await client.post("/v1/users", json=new_user("pat", email="other@example.com"), headers=acme.headers)
    assert taken.status_code == 409


async def test_api_key_creation_and_revocation_are_audited(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    created = (await client.post("/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=acme.headers)).json()
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=acme.headers)).status_code == 204
    me = (await client.get("/v1/auth/me", headers=acme.headers)).json()
    async with db.tenant_session(acme.tenant.scope) as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.target_id == created["id"]))).all()
    assert [(e.action, e.actor_kind, e.actor_id) for e in rows] == [
        ("api_key.create", "api_key", me["api_key"]["id"]),
        ("api_key.revoke", "api_key", me["api_key"]["id"]),
    ]
    # Like every audited request: where it came from, and which request it was.
    assert all(e.client_ip and e.request_id for e in rows), [(e.client_ip, e.request_id) for e in rows]


@pytest.mark.parametrize("active", ["no", "off", "0", 0, "yes", 1, 1.0])
async def test_active_takes_a_json_boolean_only(
    client: httpx.AsyncClient, acme: TenantCredentials, active: object
) -> None:
    created = await client.post("/v1/users", json=new_user("ivan"), headers=acme.headers)
    ivan = created.json()
    refused = await client.patch(f"/v1/users/{ivan['id']}", json={"active": active}, headers=acme.headers)
    assert refused.status_code == 422, refused.text
    assert (await client.get(f"/v1/users/{ivan['id']}", headers=acme.headers)).json()["active"] is True


async def test_refused_attempts_to_gain_or_grant_a_stronger_role_are_audited(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    owner_id = await add_user(app, acme.tenant, "olga", Role.OWNER)
    admin_id = await add_user(app, acme.tenant, "adam", Role.ADMIN)
    admin = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.ADMIN)}"}
    session = bearer((await login(client, "adam")).json()["access_token"])
    owner_key = (await client.post("/v1/api-keys", json={"name": "o", "role": "owner"}, headers=acme.headers)).json()
    attempts = [
        ("POST", "/v1/api-keys", {"name": "mine", "role": "owner"}, admin),
        ("PATCH", f"/v1/users/{owner_id}", {"password": "taken over by a thief"}, admin),
        ("POST", "/v1/users", new_user("usurper", role="owner"), admin),
        ("DELETE", f"/v1/api-keys/{owner_key['id']}", None, admin),
        ("PATCH", f"/v1/users/{admin_id}", {"role": "owner"}, session),
    ]
    for method, path, body, headers in attempts:
        answer = await client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 403, (path, answer.text)
    async with db.tenant_session(acme.tenant.scope) as session_db:
        denied = list(
            await session_db.scalars(
                select(AuditEvent).where(AuditEvent.action == "permission_denied").order_by(AuditEvent.seq)
            )
        )
    assert [(e.details["method"], e.details["path"]) for e in denied] == [(m, p) for m, p, _, _ in attempts]
    assert all(e.outcome == "denied" and e.details["reason"] for e in denied)
    assert denied[-1].actor_kind == "user" and denied[-1].actor_id == str(admin_id)


async def test_a_missing_permission_is_recorded_once(
    client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    viewer = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.VIEWER)}"}
    assert (await client.get("/v1/users", headers=viewer)).status_code == 403
    async with db.tenant_session(acme.tenant.scope) as session_db:
        denied = list(await session_db.scalars(select(AuditEvent).where(AuditEvent.action == "permission_denied")))
    assert [(e.target_type, e.target_id) for e in denied] == [("permission", "users:manage")]


async def test_the_last_active_owner_person_can_be_neither_demoted_nor_deactivated(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    only = await add_user(app, acme.tenant, "olive", Role.OWNER)
    for change in ({"role": "admin"}, {"active": False}):
        refused = await client.patch(f"/v1/users/{only}", json=change, headers=acme.headers)
        assert refused.status_code == 409, refused.text
        assert "last active owner" in refused.json()["detail"]
    assert (await client.delete(f"/v1/users/{only}", headers=acme.headers)).status_code == 409
    second = await add_user(app, acme.tenant, "otto", Role.OWNER)
    assert (await client.patch(f"/v1/users/{only}", json={"role": "admin"}, headers=acme.headers)).status_code == 200
    assert (await client.delete(f"/v1/users/{second}", headers=acme.headers)).status_code == 409
    assert (await client.get(f"/v1/users/{second}", headers=acme.headers)).json()["active"] is True


async def test_two_owners_removing_each_other_at_once_leave_one(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    first = await add_user(app, acme.tenant, "ada", Role.OWNER)
    second = await add_user(app, acme.tenant, "bob", Role.OWNER)
    answers = await asyncio.gather(
        client.delete(f"/v1/users/{first}", headers=acme.headers),
        client.delete(f"/v1/users/{second}", headers=acme.headers),
    )
    assert sorted(answer.status_code for answer in answers) == [204, 409]
    listed = (await client.get("/v1/users", headers=acme.headers)).json()["items"]
    assert [u["username"] for u in listed if u["role"] == "owner" and u["active"]] in (["ada"], ["bob"])


async def test_demoting_an_owner_while_their_session_refreshes_does_not_deadlock(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner guard's tenant lock must not block the key-share lock a refresh's inserts take on the tenant
    while the refresh holds the session the demotion then waits for (PostgreSQL answered 40P01 -> 503)."""
    ada = await add_user(app, acme.tenant, "ada", Role.OWNER)
    await add_user(app, acme.tenant, "bob", Role.OWNER)
    tokens = (await login(client, "ada")).json()
    locked, resume = asyncio.Event(), asyncio.Event()
    get_session = auth_service.repo.get_session

    async def pause_after_locking_the_session(**kwargs: Any) -> Any:
        found = await get_session(**kwargs)
        if kwargs.get("for_update"):
            locked.set()
            await resume.wait()
        return found

    monkeypatch.setattr(auth_service.repo, "get_session", pause_after_locking_the_session)
    refresh = asyncio.create_task(client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))
    await locked.wait()
    monkeypatch.setattr(auth_service.repo, "get_session", get_session)  # the demotion reads sessions unpaused
    demote = asyncio.create_task(client.patch(f"/v1/users/{ada}", json={"role": "admin"}, headers=acme.headers))
    await asyncio.sleep(0.5)
    resume.set()
    refreshed, demoted = await asyncio.gather(refresh, demote)
    assert (refreshed.status_code, demoted.status_code) == (200, 200), (refreshed.text, demoted.text)


async def test_a_key_minted_while_its_person_is_deactivated_does_not_survive(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """The deactivation and the mint race; whichever commits first, no key minted for the person works after."""
    for attempt in range(5):
        person = await add_user(app, acme.tenant, f"racer{attempt}", Role.ADMIN)
        session = bearer((await login(client, f"racer{attempt}")).json()["access_token"])
        deactivated, minted = await asyncio.gather(
            client.patch(f"/v1/users/{person}", json={"active": False}, headers=acme.headers),
            client.post("/v1/api-keys", json={"name": "racing", "role": "admin"}, headers=session),
        )
        assert deactivated.status_code == 200
        assert minted.status_code in (201, 401), minted.text
        if minted.status_code == 201:
            assert (await client.get("/v1/auth/me", headers=bearer(minted.json()["key"]))).status_code == 401
