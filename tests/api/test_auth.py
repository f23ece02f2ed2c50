"""People's sessions: login, refresh rotation and reuse detection, logout, tampered tokens, throttling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import structlog.testing
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from qortex.api import create_app
from qortex.audit.models import AuditEvent
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.identity import users
from qortex.identity.models import User
from qortex.security.passwords import Passwords
from qortex.security.rbac import Role
from qortex.tenants.models import Tenant
from tests.api.people import PASSWORD, add_user, bearer, cheap_argon2, login
from tests.conftest import TenantCredentials, client_at


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


def without_instance(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "instance"}


async def events(db: Database, tenant: Tenant, action: str, app: FastAPI | None = None) -> list[AuditEvent]:
    if app is not None:  # refusals are recorded in the background
        await app.state.services.audit.settled()
    async with db.tenant_session(tenant.scope) as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.tenant_id == tenant.id, AuditEvent.action == action)
        )
        return list(rows)


async def test_login_by_username_or_email_answers_tokens_that_work_and_upgrades_old_hashes(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    user_id = await add_user(app, acme.tenant, "alice")
    by_name = await login(client, "alice")
    assert by_name.status_code == 200, by_name.text
    assert by_name.headers["cache-control"] == "no-store"
    pair = by_name.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 15 * 60
    by_email = await login(client, "  ALICE@Example.com ")
    assert by_email.status_code == 200, by_email.text

    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user_id) and claims["tenant"] == str(acme.tenant.id)
    assert claims["roles"] == ["analyst"] and claims["exp"] - claims["iat"] == 15 * 60
    assert jwt.get_unverified_header(pair["access_token"])["alg"] == "HS256"

    me = await client.get("/v1/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["kind"] == "user" and body["role"] == "analyst"
    assert body["user"]["username"] == "alice" and body["tenant"]["name"] == "acme"
    assert "predictions:create" in body["permissions"] and "users:manage" not in body["permissions"]
    assert "password_hash" not in me.text and "$argon2" not in me.text
    assert (await client.get("/v1/predictions", headers=bearer(pair["access_token"]))).status_code == 200
    assert (await client.get("/v1/users", headers=bearer(pair["access_token"]))).status_code == 403

    key_me = (await client.get("/v1/auth/me", headers=acme.headers)).json()
    assert key_me["kind"] == "api_key" and key_me["role"] == "owner" and key_me["user"] is None

    [denied] = await events(db, acme.tenant, "permission_denied")
    assert (denied.actor_kind, denied.actor_id) == ("user", str(user_id))
    logins = await events(db, acme.tenant, "auth.login", app)
    assert len(logins) == 2 and all(e.actor_id == str(user_id) and e.outcome == "success" for e in logins)

    # A hash made with other argon2 parameters is replaced at the next successful login.
    async with db.tenant_session(acme.tenant.scope, write=True) as session:
        user = await session.get(User, user_id)
        assert user is not None
        user.password_hash = Passwords(time_cost=2, memory_kib=128, parallelism=1).hash(PASSWORD)
    assert (await login(client, "alice")).status_code == 200
    async with db.tenant_session(acme.tenant.scope) as session:
        stored = (await session.scalars(select(User.password_hash).where(User.id == user_id))).one()
    assert stored.startswith("$argon2id$") and "m=64,t=1,p=1" in stored
    assert app.state.services.auth.passwords.verify(stored, PASSWORD)


async def test_wrong_password_unknown_user_and_inactive_user_get_the_same_401(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    user_id = await add_user(app, acme.tenant, "bob")
    gone_id = await add_user(app, acme.tenant, "gone")
    await users.update_user(
        db=db,
        revocations=None,
        passwords=app.state.services.auth.passwords,
        scope=acme.tenant.scope,
        user_id=gone_id,
        changes=users.UserChanges(active=False),
    )
    wrong = await login(client, "bob", "not the password at all")
    with structlog.testing.capture_logs() as logged:
        unknown = await login(client, "nobody-here", "not the password at all")
    [failed] = [entry for entry in logged if entry["event"] == "login_failed"]
    assert failed["reason"] == "unknown_account" and "nobody-here" not in str(logged)
    inactive = await login(client, "gone")
    assert wrong.status_code == unknown.status_code == inactive.status_code == 401
    assert without_instance(wrong.json()) == without_instance(unknown.json()) == without_instance(inactive.json())
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]
    assert (await login(client, "bob\x00", "not the password at all")).status_code == 422

    # A wrong password shows nothing of who tried: the person is its target, not its actor, so filtering the
    # trail by a person's id does not attribute password guessing to them. A deactivated person who gave the
    # right password is the actor of their own refused login.
    failures = await events(db, acme.tenant, "auth.login", app)
    assert {(e.actor_kind, e.actor_id, e.target_id, e.outcome, e.details["reason"]) for e in failures} == {
        ("anonymous", None, str(user_id), "failure", "wrong_password"),
        ("user", str(gone_id), str(gone_id), "failure", "inactive_account"),
    }
    assert all("bob" not in json.dumps(e.details) and "example.com" not in json.dumps(e.details) for e in failures)


async def test_refresh_rotates_and_reusing_a_used_token_ends_the_whole_session(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    await add_user(app, acme.tenant, "carol")
    first = (await login(client, "carol")).json()
    second = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert (await client.get("/v1/auth/me", headers=bearer(rotated["access_token"]))).status_code == 200

    # The first token was used: presenting it again means someone copied it.
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    newest = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert newest.status_code == 401
    for access in (first["access_token"], rotated["access_token"]):
        assert (await client.get("/v1/auth/me", headers=bearer(access))).status_code == 401
    [reuse_event] = await events(db, acme.tenant, "auth.refresh_reuse")
    assert reuse_event.outcome == "failure"
    assert len(await events(db, acme.tenant, "auth.refresh")) == 1

    unknown = await client.post("/v1/auth/refresh", json={"refresh_token": "qxr_not-a-token"})
    assert unknown.status_code == 401


async def test_a_refused_login_answers_401_for_real_and_unknown_accounts_while_stopping(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "erin")
    await app.state.services.audit.stop()  # as during shutdown: the refusal can no longer be recorded
    for name in ("erin", "nobody-here"):
        assert (await login(client, name, "wrong password guess")).status_code == 401


async def test_a_refused_login_answers_401_for_real_and_unknown_accounts_when_the_audit_writer_has_died(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """A dead writer refuses new events with 503; a real account's refusal answered so would tell it exists."""
    await add_user(app, acme.tenant, "frank")
    writer = next(task for task in asyncio.all_tasks() if task.get_name() == "qortex-audit-writer")
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    with structlog.testing.capture_logs() as logged:
        answers = [await login(client, name, "wrong password guess") for name in ("frank", "nobody-here")]
    assert [answer.status_code for answer in answers] == [401, 401]
    assert without_instance(answers[0].json()) == without_instance(answers[1].json())
    [lost] = [entry for entry in logged if entry["event"] == "audit_refusal_not_stored"]
    assert lost["error_type"] == "StorageUnavailable"


async def test_reusing_a_refresh_token_revokes_the_keys_minted_for_its_person(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    await add_user(app, acme.tenant, "dora", Role.ADMIN)
    first = (await login(client, "dora")).json()
    # The thief refreshes first, then mints a key that would outlive the session.
    stolen = (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    minted = await client.post(
        "/v1/api-keys", json={"name": "backdoor", "role": "analyst"}, headers=bearer(stolen["access_token"])
    )
    assert minted.status_code == 201
    unrelated = (await client.post("/v1/api-keys", json={"name": "ci", "role": "analyst"}, headers=acme.headers)).json()
    # The person's own client presents the used token: the copy is discovered.
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).status_code == 401
    assert (await client.get("/v1/predictions", headers=bearer(minted.json()["key"]))).status_code == 401
    assert (await client.get("/v1/predictions", headers=bearer(unrelated["key"]))).status_code == 200
    [revoked] = await events(db, acme.tenant, "api_key.revoke")
    assert (revoked.target_id, revoked.actor_kind) == (minted.json()["id"], "system")
    assert revoked.details == {"reason": "refresh_reuse"}


async def test_an_old_token_of_an_ended_session_cannot_revoke_the_persons_keys(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "fay", Role.ADMIN)
    first = (await login(client, "fay")).json()
    rotated = (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    key = (
        await client.post(
            "/v1/api-keys", json={"name": "job", "role": "analyst"}, headers=bearer(rotated["access_token"])
        )
    ).json()["key"]
    assert (await client.post("/v1/auth/logout", headers=bearer(rotated["access_token"]))).status_code == 204
    # The used token of the session that ended at logout, presented again (say, found in a log).
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).status_code == 401
    assert (await client.get("/v1/predictions", headers=bearer(key))).status_code == 200


async def test_the_tenants_allow_list_applies_to_login_and_refresh(
    app: FastAPI, acme: TenantCredentials, db: Database
) -> None:
    await add_user(app, acme.tenant, "ivan")
    async with client_at(app, "192.0.2.10") as inside:
        allow = await inside.patch("/v1/tenant", json={"ip_allowlist": ["192.0.2.0/24"]}, headers=acme.headers)
        assert allow.status_code == 200, allow.text
        pair = (await login(inside, "ivan")).json()
    async with client_at(app, "198.51.100.7") as outside:
        # The right password from outside is refused exactly like a wrong one: no password oracle.
        refused = await login(outside, "ivan")
        wrong = await login(outside, "ivan", "not the password at all")
        blocked = await outside.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refused.status_code == wrong.status_code == 401
    assert without_instance(refused.json()) == without_instance(wrong.json())
    assert blocked.status_code == 403
    assert blocked.json()["type"].endswith("/ip-not-allowed")
    async with client_at(app, "192.0.2.11") as inside:
        # The refused refresh left the token unused.
        renewed = await inside.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200, renewed.text

    logins = await events(db, acme.tenant, "auth.login", app)
    assert sorted((e.outcome, e.details.get("reason")) for e in logins) == [
        ("failure", "ip_not_allowed"),
        ("failure", "wrong_password"),
        ("success", None),
    ]
    refreshes = await events(db, acme.tenant, "auth.refresh")
    assert sorted((e.outcome, e.client_ip, e.details.get("reason")) for e in refreshes) == [
        ("failure", "198.51.100.7", "ip_not_allowed"),
        ("success", "192.0.2.11", None),
    ]


async def test_logout_ends_the_session_and_its_refresh_token(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    await add_user(app, acme.tenant, "dave")
    pair = (await login(client, "dave")).json()
    other = (await login(client, "dave")).json()
    assert (await client.post("/v1/auth/logout")).status_code == 401
    assert (await client.post("/v1/auth/logout", headers=bearer(pair["access_token"]))).status_code == 204
    assert (await client.get("/v1/auth/me", headers=bearer(pair["access_token"]))).status_code == 401
    refused = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refused.status_code == 401
    # Another login of the same person is another session, untouched.
    assert (await client.get("/v1/auth/me", headers=bearer(other["access_token"]))).status_code == 200
    assert (await client.post("/v1/auth/logout", headers=acme.headers)).status_code == 422
    assert len(await events(db, acme.tenant, "auth.logout")) == 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT assembled by hand (PyJWT refuses to write some of the headers an attacker would)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tampered_expired_and_foreign_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "erin")
    genuine = (await login(client, "erin")).json()["access_token"]
    claims = jwt.decode(genuine, options={"verify_signature": False})
    kid = jwt.get_unverified_header(genuine)["kid"]
    key = app.state.services.auth.tokens.keyring.get(kid).secret
    now = datetime.now(UTC)

    def signed(changes: dict[str, Any], *, drop: str | None = None, algorithm: str = "HS256", **kw: Any) -> str:
        body = {**claims, **changes}
        if drop:
            body.pop(drop)
        return jwt.encode(body, kw.get("secret", key), algorithm=algorithm, headers={"kid": kw.get("kid", kid)})

    assert (await client.get("/v1/auth/me", headers=bearer(signed({})))).status_code == 200
    forged = {
        "expired": signed({"exp": now - timedelta(minutes=1), "iat": now - timedelta(minutes=16)}),
        "not yet valid": signed({"nbf": now + timedelta(minutes=5)}),
        "wrongly signed": signed({}, secret=b"x" * 32),
        "unknown kid": signed({}, kid="nope"),
        "wrong audience": signed({"aud": "someone-else"}),
        "wrong issuer": signed({"iss": "https://evil.example"}),
        "HS512": signed({}, algorithm="HS512"),
        "RS256 header, HMAC signature": _hand_signed({"alg": "RS256", "typ": "JWT", "kid": kid}, claims, key),
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{_b64(json.dumps(claims).encode())}.",
        "two roles": signed({"roles": ["analyst", "owner"]}),
        "unknown role": signed({"roles": ["root"]}),
        "garbage": "not.a.jwt",
        **{f"without {claim}": signed({}, drop=claim) for claim in ("iss", "aud", "exp", "nbf", "iat", "jti")},
        **{f"without {claim}": signed({}, drop=claim) for claim in ("sub", "tenant", "roles", "sid")},
    }
    for name, token in forged.items():
        response = await client.get("/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_token_signed_with_an_old_kid_verifies_after_rotation(
    settings: Settings, acme: TenantCredentials, app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, acme.tenant, "frank")
    old, new = "old:" + "o" * 40, "new:" + "n" * 40
    tokens: dict[str, str] = {}
    for keys in (old, f"{new},{old}"):
        rotated = create_app(settings.model_copy(update={"jwt_signing_keys": SecretStr(keys)}))
        async with rotated.router.lifespan_context(rotated):
            transport = httpx.ASGITransport(app=rotated)
            async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as http:
                if keys == old:
                    tokens["old"] = (await login(http, "frank")).json()["access_token"]
                    continue
                answer = await http.get("/v1/auth/me", headers=bearer(tokens["old"]))
                assert answer.status_code == 200, answer.text
                fresh = (await login(http, "frank")).json()["access_token"]
                assert jwt.get_unverified_header(fresh)["kid"] == "new"
    # The app's own generated key is not in the rotated keyring: its tokens are foreign there, and vice versa.
    assert (await client.get("/v1/auth/me", headers=bearer(tokens["old"]))).status_code == 401


async def test_repeated_failures_are_throttled_with_429_and_retry_after(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "grace")
    for _ in range(5):
        assert (await login(client, "grace", "wrong password guess")).status_code == 401
    throttled = await login(client, "grace")  # even the right password waits out the backoff
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["status"] == 429
    # Unknown accounts are throttled the same way, so throttling reveals nothing either.
    for _ in range(5):
        await login(client, "no-such-user", "wrong password guess")
    assert (await login(client, "no-such-user", "wrong password guess")).status_code == 429
    await asyncio.sleep(1.1)
    assert (await login(client, "grace")).status_code == 200


async def test_guesses_sent_at_once_at_many_names_from_one_address_share_its_budget(
    app: FastAPI, acme: TenantCredentials
) -> None:
    """Password spraying: one password tried against many names at the same moment. The address's 20 free
    attempts must bound it, as they do for guesses sent one after another."""
    for n in range(3):
        await add_user(app, acme.tenant, f"sprayed{n}")
    names = [f"sprayed{n}" for n in range(3)] + [f"nobody{n}" for n in range(37)]
    async with client_at(app, "203.0.113.5") as sprayer:
        answers = await asyncio.gather(*(login(sprayer, name, "Summer2026!Summer") for name in names))
    codes = [answer.status_code for answer in answers]
    assert (codes.count(401), codes.count(429)) == (20, 20)
    # Successful logins take their attempt back: a busy address is not throttled by its own people.
    async with client_at(app, "198.51.100.20") as office:
        for _ in range(3):
            assert [(await login(office, f"sprayed{n}")).status_code for n in range(3)] == [200] * 3
        assert (await login(office, "sprayed0", "a wrong password guess")).status_code == 401


async def test_throttling_does_not_tell_which_email_belongs_to_which_username(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "heidi")
    answers = {}
    for username, email in (("heidi", "heidi@example.com"), ("nobody", "nobody@example.com")):
        for _ in range(5):
            assert (await login(client, username, "wrong password guess")).status_code == 401
        answers[username] = (
            (await login(client, username, "wrong password guess")).status_code,
            (await login(client, email, "wrong password guess")).status_code,
        )
    # Each name has its own budget, for a real account exactly as for an unknown one.
    assert answers == {"heidi": (429, 401), "nobody": (429, 401)}


async def test_an_email_logs_in_as_it_was_given_and_all_its_forms_share_one_budget(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """Emails are stored normalised (NFC, the domain in Unicode): the form a person was created with must log
    them in, and no other form of the address may bring a fresh throttle budget."""
    given = "jo\u0308rg@xn--bcher-kva.example"  # a decomposed umlaut and an ASCII-encoded domain
    person = {"username": "joerg", "email": given, "display_name": "J", "password": PASSWORD, "role": "viewer"}
    created = await client.post("/v1/users", json=person, headers=acme.headers)
    assert created.json()["email"] == "j\u00f6rg@b\u00fccher.example"
    assert (await login(client, given)).status_code == 200
    for _ in range(5):
        assert (await login(client, "J\u00d6RG@B\u00dcCHER.example", "wrong password guess")).status_code == 401
    assert (await login(client, given)).status_code == 429


async def test_a_wrong_current_password_counts_as_a_failed_login_by_the_username(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """Else a stolen access token would add its own guesses to those the login allows."""
    await add_user(app, acme.tenant, "ivan")
    headers = bearer((await login(client, "ivan")).json()["access_token"])
    guess = {"current_password": "a wrong guess", "new_password": "a brand new passphrase"}
    answers = [(await client.post("/v1/auth/password", json=guess, headers=headers)).status_code for _ in range(5)]
    assert answers == [422] * 5
    assert (await login(client, "ivan")).status_code == 429
    assert (await client.post("/v1/auth/password", json=guess, headers=headers)).status_code == 429


async def test_outsiders_failing_logins_cannot_stop_a_person_changing_their_password(
    app: FastAPI, acme: TenantCredentials
) -> None:
    await add_user(app, acme.tenant, "vera")
    async with client_at(app, "192.0.2.10") as person, client_at(app, "198.51.100.7") as outsider:
        session = bearer((await login(person, "vera")).json()["access_token"])
        guesses = [(await login(outsider, "vera", "a wrong guess")).status_code for _ in range(6)]
        assert guesses[-1] == 429
        changed = await person.post(
            "/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
            headers=session,
        )
        assert changed.status_code == 204, changed.text
        # Nor does the change clear what the outsider earned.
        assert (await login(outsider, "vera", "a brand new passphrase")).status_code == 429


async def test_own_password_change_needs_the_current_one_and_ends_every_session(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database
) -> None:
    await add_user(app, acme.tenant, "heidi")
    first, second = (await login(client, "heidi")).json(), (await login(client, "heidi")).json()
    headers = bearer(first["access_token"])
    new = "a brand new passphrase"
    wrong = await client.post(
        "/v1/auth/password", json={"current_password": "not it at all", "new_password": new}, headers=headers
    )
    assert wrong.status_code == 422
    short = await client.post(
        "/v1/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=headers
    )
    assert short.status_code == 422
    changed = await client.post(
        "/v1/auth/password", json={"current_password": PASSWORD, "new_password": new}, headers=headers
    )
    assert changed.status_code == 204, changed.text
    for pair in (first, second):
        assert (await client.get("/v1/auth/me", headers=bearer(pair["access_token"]))).status_code == 401
        assert (await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 401
    assert (await login(client, "heidi")).status_code == 401
    assert (await login(client, "heidi", new)).status_code == 200
    outcomes = sorted(e.outcome for e in await events(db, acme.tenant, "user.password_change"))
    assert outcomes == ["failure", "success"]


async def test_a_password_change_racing_an_administrators_reset_does_not_undo_it(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reset ends the person's sessions; a change already past its password check must not write over it."""
    person = await add_user(app, acme.tenant, "quinn")
    session = bearer((await login(client, "quinn")).json()["access_token"])
    passwords = app.state.services.auth.passwords
    hash_async = passwords.hash_async
    hashing, resume = asyncio.Event(), asyncio.Event()
    mine, reset = "the thief's own passphrase", "the administrator's reset"

    async def pause_hashing_the_change(password: str) -> str:
        if password == mine:
            hashing.set()
            await resume.wait()
        return await hash_async(password)

    monkeypatch.setattr(passwords, "hash_async", pause_hashing_the_change)
    change = asyncio.create_task(
        client.post("/v1/auth/password", json={"current_password": PASSWORD, "new_password": mine}, headers=session)
    )
    await hashing.wait()
    by_admin = await client.patch(f"/v1/users/{person}", json={"password": reset}, headers=acme.headers)
    assert by_admin.status_code == 200, by_admin.text
    resume.set()
    changed = await change
    assert changed.status_code == 401, changed.text
    assert (await login(client, "quinn", mine)).status_code == 401
    assert (await login(client, "quinn", reset)).status_code == 200


async def test_logins_at_once_that_both_upgrade_an_old_hash_both_succeed(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replacing a hash made with older parameters is not a password change: a login beside it is not refused."""
    user_id = await add_user(app, acme.tenant, "olga")
    async with db.tenant_session(acme.tenant.scope, write=True) as session:
        user = await session.get(User, user_id)
        assert user is not None
        user.password_hash = Passwords(time_cost=2, memory_kib=128, parallelism=1).hash(PASSWORD)
    passwords = app.state.services.auth.passwords
    hash_async = passwords.hash_async
    rehashing: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]

    async def rehash_together(password: str) -> str:
        # Both logins have verified the old hash before either stores its new one.
        rehashing[sum(e.is_set() for e in rehashing)].set()
        await asyncio.gather(*(e.wait() for e in rehashing))
        return await hash_async(password)

    monkeypatch.setattr(passwords, "hash_async", rehash_together)
    first, second = await asyncio.gather(login(client, "olga"), login(client, "olga"))
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    async with db.tenant_session(acme.tenant.scope) as session:
        stored = (await session.scalars(select(User.password_hash).where(User.id == user_id))).one()
    assert "m=64,t=1,p=1" in stored and passwords.verify(stored, PASSWORD)


async def test_a_login_verified_just_before_a_reset_starts_no_session(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = await add_user(app, acme.tenant, "petra")
    passwords = app.state.services.auth.passwords
    verify_async = passwords.verify_async
    verified, resume = asyncio.Event(), asyncio.Event()

    async def pause_after_verifying(stored_hash: str | None, password: str) -> bool:
        matches = await verify_async(stored_hash, password)
        if password == PASSWORD:
            verified.set()
            await resume.wait()
        return matches

    monkeypatch.setattr(passwords, "verify_async", pause_after_verifying)
    attempt = asyncio.create_task(login(client, "petra"))
    await verified.wait()
    reset = await client.patch(f"/v1/users/{person}", json={"password": "reset by the admin"}, headers=acme.headers)
    assert reset.status_code == 200, reset.text
    resume.set()
    assert (await attempt).status_code == 401
