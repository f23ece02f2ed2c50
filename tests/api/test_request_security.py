"""Request security: headers, CORS, client addresses, IP allow-lists and signed requests, on both backends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import event, select, update

from qortex.api import create_app
from qortex.audit.models import AuditEvent
from qortex.core.clock import utcnow
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.limits.service import set_tenant_limits
from qortex.models import service as models_service
from qortex.security.api_keys import parse_key
from qortex.security.rbac import Role
from qortex.security.seen_signatures import SeenSignature
from qortex.tenants.models import Tenant
from qortex.tenants.policy import TenantPolicyCache
from tests.api.people import add_user, bearer, login
from tests.conftest import TenantCredentials, client_at, key_for

CONSOLE = "https://console.example.com"
PROXIES = "10.0.0.0/8"
PROBLEMS = "https://qortex.dev/problems/"
MAX_BODY = 4096


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"cors_origins": [CONSOLE], "trusted_proxies": [PROXIES], "max_body_bytes": MAX_BODY}
    )


def signed(request: httpx.Request, secret: str, *, timestamp: int | None = None) -> httpx.Request:
    """The documented recipe, written out independently of the server's code."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    path, _, query = request.url.raw_path.decode().partition("?")
    target = f"{path}?{query}" if query else path
    body_hash = hashlib.sha256(request.content).hexdigest()
    message = f"{request.method}\n{target}\n{ts}\n{body_hash}".encode()
    request.headers["X-Qortex-Timestamp"] = ts
    request.headers["X-Qortex-Signature"] = "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return request


async def configure(client: httpx.AsyncClient, who: TenantCredentials, **changes: object) -> httpx.Response:
    response = await client.patch("/v1/tenant", json=changes, headers=who.headers)
    assert response.status_code == 200, response.text
    return response


async def enable_signing(client: httpx.AsyncClient, who: TenantCredentials) -> str:
    rotated = await client.post("/v1/tenant/signing-secret", headers=who.headers)
    assert rotated.status_code == 201, rotated.text
    await configure(client, who, require_signed_requests=True)
    return str(rotated.json()["signing_secret"])


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


# --- security headers


async def test_every_kind_of_response_carries_the_security_headers(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    ok = await client.get("/v1/tenant", headers=acme.headers)
    missing = await client.get("/v1/no-such-route", headers=acme.headers)
    invalid = await client.patch("/v1/tenant", json={"ip_allowlist": ["nonsense"]}, headers=acme.headers)
    too_large = await client.patch("/v1/tenant", content=b"x" * (MAX_BODY + 1), headers=acme.headers)
    unauthenticated = await client.get("/v1/tenant")
    assert [r.status_code for r in (ok, missing, invalid, too_large, unauthenticated)] == [200, 404, 422, 413, 401]
    for response in (ok, missing, invalid, too_large, unauthenticated):
        assert_security_headers(response)


async def test_a_persons_refusals_and_changes_name_the_person_and_the_resolved_address(
    app: FastAPI, db: Database, acme: TenantCredentials
) -> None:
    """Audit records name a person by user id (as every other record does), never by session id."""
    user_id = await add_user(app, acme.tenant, "olivia", Role.OWNER)
    forwarded = {"X-Forwarded-For": "192.0.2.44"}
    async with client_at(app, "10.0.0.5") as proxy:
        session = bearer((await login(proxy, "olivia")).json()["access_token"])
        assert (await proxy.post("/v1/tenant/signing-secret", headers=session | forwarded)).status_code == 201
        # The rotation above is this minute's first request.
        await set_tenant_limits(db=db, scope=acme.tenant.scope, plan=None, overrides={"requests_per_minute": 2})
        app.state.services.limits.forget(acme.tenant.id)
        statuses = [(await proxy.get("/v1/tenant", headers=session | forwarded)).status_code for _ in range(2)]
    assert statuses == [200, 429]
    async with db.tenant_session(acme.tenant.scope) as session_db:
        events = (
            await session_db.scalars(
                select(AuditEvent).where(AuditEvent.action.in_(["tenant.signing_secret_rotated", "rate_limited"]))
            )
        ).all()
    assert sorted(record.action for record in events) == ["rate_limited", "tenant.signing_secret_rotated"]
    for record in events:
        assert (record.actor_kind, record.actor_id, record.client_ip) == ("user", str(user_id), "192.0.2.44")


async def test_an_unexpected_error_is_a_500_problem_with_its_request_id_and_the_security_headers(
    client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**_: object) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr(models_service, "list_models", broken)
    answer = await client.get("/v1/models", headers={**acme.headers, "X-Request-ID": "trace-me-500"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["x-request-id"] == "trace-me-500"
    assert "trace-me-500" in answer.json()["instance"]
    assert "a defect" not in answer.text
    assert_security_headers(answer)


async def test_the_docs_page_may_load_exactly_its_cdn_assets_and_its_own_inline_script(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert csp["script-src"] == f"https://cdn.jsdelivr.net 'sha256-{digest}'"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["connect-src"] == "'self'"
    assert page.headers["x-frame-options"] == "DENY"
    redoc = await client.get("/redoc")
    assert "https://cdn.jsdelivr.net" in redoc.headers["content-security-policy"]
    assert "'unsafe-eval'" not in redoc.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_a_head_of_a_docs_page_gets_the_headers_of_its_get(client: httpx.AsyncClient, path: str) -> None:
    got, head = await client.get(path), await client.head(path)
    assert head.status_code == 200 and head.content == b""
    for header in ("content-security-policy", "content-type", "content-length"):
        assert head.headers[header] == got.headers[header], header


# --- CORS


@pytest.mark.parametrize("method", ["POST", "HEAD"])
async def test_a_preflight_from_a_configured_origin_is_allowed_with_the_signing_headers(
    client: httpx.AsyncClient, method: str
) -> None:
    """HEAD too: it is answered wherever GET is, and a browser sending it with a credential asks first."""
    preflight = await client.options(
        "/v1/predictions",
        headers={
            "Origin": CONSOLE,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, x-qortex-timestamp, x-qortex-signature",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CONSOLE
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "idempotency-key", "x-qortex-timestamp", "x-qortex-signature"):
        assert header in allowed


async def test_cors_headers_are_absent_for_other_origins(client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    preflight = await client.options(
        "/v1/predictions",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/v1/tenant", headers={**acme.headers, "Origin": "https://evil.example.net"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize(
    ("origin", "method", "headers", "refused"),
    [
        ("https://evil.example.net", "POST", None, "origin"),
        (CONSOLE, "TRACE", None, "method"),
        (CONSOLE, "POST", "authorization, x-not-allowed", "headers"),
    ],
)
async def test_a_refused_preflight_is_a_problem_naming_what_is_not_allowed(
    client: httpx.AsyncClient, origin: str, method: str, headers: str | None, refused: str
) -> None:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    preflight = await client.options("/v1/predictions", headers=asked)
    assert preflight.status_code == 400
    assert preflight.headers["content-type"] == "application/problem+json"
    problem = preflight.json()
    assert problem["type"] == PROBLEMS + "cors-not-allowed"
    assert problem["status"] == 400 and refused in problem["detail"]
    assert problem["instance"] == preflight.headers["x-request-id"]
    if refused == "origin":
        assert "access-control-allow-origin" not in preflight.headers
    assert_security_headers(preflight)


async def test_a_configured_origin_may_read_the_request_id_and_rate_limit_headers(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    response = await client.get("/v1/tenant", headers={**acme.headers, "Origin": CONSOLE})
    assert response.headers["access-control-allow-origin"] == CONSOLE
    exposed = {name.strip() for name in response.headers["access-control-expose-headers"].lower().split(",")}
    declared = {name.lower() for name in (await client.get("/openapi.json")).json()["components"]["headers"]}
    assert "x-request-id" in exposed and "ratelimit-remaining" in exposed
    assert declared <= exposed  # every header the API documents for clients, a browser client may read too


def test_configured_origins_are_read_as_browsers_send_them_and_malformed_ones_stop_the_start() -> None:
    """Browsers leave a scheme's default port out of `Origin`, so one written in the setting would never match."""
    origins = "https://Console.Example.com:443, http://localhost:80/, http://[::1]:3000, http://localhost:3000"
    assert Settings(cors_origins=origins).cors_origins == [
        "https://console.example.com",
        "http://localhost",
        "http://[::1]:3000",
        "http://localhost:3000",
    ]
    for malformed in (
        "https://console.example.com:abc",
        "https://console.example.com:99999",
        "https://:8080",
        "https://user@console.example.com",
        "https://console example.com",
        "https://[::1",
    ):
        with pytest.raises(ValidationError, match="is not an origin"):
            Settings(cors_origins=malformed)


async def test_without_configured_origins_no_cors_headers_are_sent(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": []}))
    async with app.router.lifespan_context(app), client_at(app, "127.0.0.1") as http:
        preflight = await http.options(
            "/v1/predictions", headers={"Origin": CONSOLE, "Access-Control-Request-Method": "POST"}
        )
        assert not [name for name in preflight.headers if name.startswith("access-control-")]


# --- client address and allow-lists


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(app: FastAPI, acme: TenantCredentials) -> None:
    async with client_at(app, "198.51.100.7") as http:
        await configure(http, acme, ip_allowlist=["198.51.100.0/24"])
    async with client_at(app, "203.0.113.9") as http:
        spoofed = await http.get("/v1/tenant", headers={**acme.headers, "X-Forwarded-For": "198.51.100.7"})
    assert spoofed.status_code == 403
    assert spoofed.json()["type"] == PROBLEMS + "ip-not-allowed"
    assert "203.0.113.9" in spoofed.json()["detail"]


async def test_forwarded_for_is_honoured_from_a_trusted_proxy_skipping_trusted_hops(
    app: FastAPI, acme: TenantCredentials
) -> None:
    async with client_at(app, "198.51.100.7") as http:
        await configure(http, acme, ip_allowlist=["198.51.100.0/24"])
    async with client_at(app, "10.1.2.3") as proxy:
        direct = await proxy.get("/v1/tenant", headers=acme.headers)
        one_hop = await proxy.get("/v1/tenant", headers={**acme.headers, "X-Forwarded-For": "198.51.100.7"})
        two_hops = await proxy.get("/v1/tenant", headers={**acme.headers, "X-Forwarded-For": "198.51.100.7, 10.9.9.9"})
        # The client wrote the left entry itself; the proxy appended the address it really saw.
        forged = await proxy.get("/v1/tenant", headers={**acme.headers, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert [r.status_code for r in (direct, one_hop, two_hops, forged)] == [403, 200, 200, 403]


async def test_the_resolved_address_is_what_the_audit_chain_records(
    app: FastAPI, db: Database, acme: TenantCredentials
) -> None:
    async with client_at(app, "10.0.0.5") as proxy:
        changed = await proxy.patch(
            "/v1/tenant",
            json={"ip_allowlist": ["192.0.2.0/24"]},
            headers={**acme.headers, "X-Forwarded-For": "192.0.2.44"},
        )
    assert changed.status_code == 200
    async with db.tenant_session(acme.tenant.scope) as session:
        events = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "tenant.security_changed"))).all()
    assert len(events) == 1
    parsed = parse_key(acme.key)
    assert parsed is not None
    assert events[0].client_ip == "192.0.2.44"
    assert events[0].actor_id == str(parsed.key_id)  # the key's id, not its name
    assert events[0].details["ip_allowlist"] == {"from": [], "to": ["192.0.2.0/24"]}


async def test_an_allow_list_refuses_other_addresses_and_admits_its_own(app: FastAPI, acme: TenantCredentials) -> None:
    async with client_at(app, "127.0.0.1") as http:
        await configure(http, acme, ip_allowlist=["127.0.0.0/8", "192.0.2.128/25"])
        assert (await http.get("/v1/models", headers=acme.headers)).status_code == 200
    async with client_at(app, "192.0.2.200") as inside:
        assert (await inside.get("/v1/models", headers=acme.headers)).status_code == 200
    async with client_at(app, "192.0.2.1") as outside:
        refused = await outside.get("/v1/models", headers=acme.headers)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == PROBLEMS + "ip-not-allowed"


async def test_an_ipv6_allow_list_is_enforced(app: FastAPI, acme: TenantCredentials) -> None:
    async with client_at(app, "2001:db8:abcd::1") as http:
        await configure(http, acme, ip_allowlist=["2001:db8:abcd::/48"])
    async with client_at(app, "2001:db8:abcd:12::7") as inside:
        assert (await inside.get("/v1/models", headers=acme.headers)).status_code == 200
    async with client_at(app, "2001:db8:ffff::1") as outside:
        assert (await outside.get("/v1/models", headers=acme.headers)).status_code == 403
    async with client_at(app, "192.0.2.1") as ipv4:
        assert (await ipv4.get("/v1/models", headers=acme.headers)).status_code == 403


async def test_an_ipv4_mapped_entry_admits_the_ipv4_client_it_names(app: FastAPI, acme: TenantCredentials) -> None:
    async with client_at(app, "::ffff:192.0.2.7") as http:
        changed = await http.patch("/v1/tenant", json={"ip_allowlist": ["::ffff:192.0.2.7"]}, headers=acme.headers)
        assert changed.status_code == 200 and changed.json()["ip_allowlist"] == ["192.0.2.7/32"]
        assert (await http.get("/v1/tenant", headers=acme.headers)).status_code == 200
    async with client_at(app, "192.0.2.7") as ipv4:
        assert (await ipv4.get("/v1/models", headers=acme.headers)).status_code == 200


async def test_an_allow_list_without_the_callers_address_needs_confirmation(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    refused = await client.patch("/v1/tenant", json={"ip_allowlist": ["192.0.2.0/24"]}, headers=acme.headers)
    assert refused.status_code == 422
    assert "confirm_lockout" in refused.json()["detail"] and "127.0.0.1" in refused.json()["detail"]
    assert (await client.get("/v1/tenant", headers=acme.headers)).json()["ip_allowlist"] == []
    confirmed = await client.patch(
        "/v1/tenant", json={"ip_allowlist": ["192.0.2.0/24"], "confirm_lockout": True}, headers=acme.headers
    )
    assert confirmed.status_code == 200
    # The change applies to this process at once, not after the cache delay.
    assert (await client.get("/v1/tenant", headers=acme.headers)).status_code == 403


async def test_allow_list_entries_are_validated_and_the_bad_one_is_named(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    bad = await client.patch("/v1/tenant", json={"ip_allowlist": ["127.0.0.0/8", "10.0.0.300/8"]}, headers=acme.headers)
    assert bad.status_code == 422
    assert "ip_allowlist.1" in bad.json()["detail"]
    assert "10.0.0.300/8" in bad.json()["errors"][0]["msg"]
    host_bits = await client.patch("/v1/tenant", json={"ip_allowlist": ["127.0.0.1/8"]}, headers=acme.headers)
    assert host_bits.status_code == 422 and "127.0.0.0/8" in host_bits.json()["errors"][0]["msg"]
    too_many = [f"10.0.{n}.0/24" for n in range(101)]
    long_list = await client.patch("/v1/tenant", json={"ip_allowlist": too_many}, headers=acme.headers)
    assert long_list.status_code == 422
    unknown = await client.patch("/v1/tenant", json={"plan": "enterprise"}, headers=acme.headers)
    assert unknown.status_code == 422
    canonical = await client.patch(
        "/v1/tenant", json={"ip_allowlist": ["127.0.0.1", "2001:DB8::/32", "127.0.0.1/32"]}, headers=acme.headers
    )
    assert canonical.json()["ip_allowlist"] == ["127.0.0.1/32", "2001:db8::/32"]


async def test_only_tenant_configure_may_read_or_change_security_settings(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials
) -> None:
    for role in (Role.VIEWER, Role.ADMIN, Role.ANALYST):
        headers = {"Authorization": f"Bearer {await key_for(db, acme.tenant, role)}"}
        assert (await client.get("/v1/tenant", headers=headers)).status_code == 403
        patch = await client.patch("/v1/tenant", json={"ip_allowlist": ["127.0.0.0/8"]}, headers=headers)
        assert patch.status_code == 403
        assert (await client.post("/v1/tenant/signing-secret", headers=headers)).status_code == 403
    assert (await client.get("/v1/tenant", headers=acme.headers)).json()["ip_allowlist"] == []


async def test_one_tenants_settings_never_affect_another(
    app: FastAPI, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    async with client_at(app, "127.0.0.1") as http:
        await configure(http, acme, ip_allowlist=["192.0.2.0/24"], confirm_lockout=True)
        rotated = await http.post("/v1/tenant/signing-secret", headers=globex.headers)
        await configure(http, globex, require_signed_requests=True)
        assert (await http.get("/v1/models", headers=acme.headers)).status_code == 403
        assert (await http.get("/v1/models", headers=globex.headers)).status_code == 401
    async with client_at(app, "192.0.2.9") as http:
        assert (await http.get("/v1/models", headers=acme.headers)).status_code == 200
        request = http.build_request("GET", "/v1/tenant", headers=globex.headers)
        mine = await http.send(signed(request, rotated.json()["signing_secret"]))
    assert mine.status_code == 200
    assert mine.json()["ip_allowlist"] == [] and mine.json()["name"] == "globex"


async def test_the_policy_cache_makes_no_query_while_fresh_and_reloads_after_its_delay(
    db: Database, acme: TenantCredentials
) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        cache = TenantPolicyCache(db=db, ttl_seconds=0.3)
        first = await cache.get(acme.tenant.scope)
        loaded = len(statements)
        async with db.tenant_session(acme.tenant.scope, write=True) as session:
            tenant = await session.get(Tenant, acme.tenant.id)
            assert tenant is not None
            tenant.ip_allowlist = ["192.0.2.0/24"]
        written = len(statements)
        assert (await cache.get(acme.tenant.scope)) is first  # still fresh: no query
        assert len(statements) == written
        await asyncio.sleep(0.35)
        reloaded = await cache.get(acme.tenant.scope)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert loaded > 0 and len(statements) > written
    assert first.allowed_networks == () and [str(n) for n in reloaded.allowed_networks] == ["192.0.2.0/24"]


# --- signed requests


async def test_a_validly_signed_request_is_accepted_and_its_body_still_reaches_the_route(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    secret = await enable_signing(client, acme)
    request = client.build_request("PATCH", "/v1/tenant", json={"ip_allowlist": ["127.0.0.0/8"]}, headers=acme.headers)
    response = await client.send(signed(request, secret))
    assert response.status_code == 200, response.text
    assert response.json()["ip_allowlist"] == ["127.0.0.0/8"]
    query = client.build_request("GET", "/v1/api-keys", params={"limit": 5, "include_revoked": "true"})
    query.headers.update(acme.headers)
    assert (await client.send(signed(query, secret))).status_code == 200


async def test_a_bare_question_mark_is_an_empty_query_and_signed_as_the_path_alone(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    secret = await enable_signing(client, acme)
    request = client.build_request("GET", "/v1/models?", headers=acme.headers)
    assert request.url.raw_path == b"/v1/models?"  # sent on the wire with its "?"
    assert (await client.send(signed(request, secret))).status_code == 200


async def test_unsigned_stale_forged_and_replayed_requests_are_refused(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    secret = await enable_signing(client, acme)

    def build() -> httpx.Request:
        return client.build_request("GET", "/v1/models", headers=acme.headers)

    unsigned = await client.get("/v1/models", headers=acme.headers)
    no_timestamp = build()
    no_timestamp.headers["X-Qortex-Signature"] = signed(build(), secret).headers["X-Qortex-Signature"]
    missing_timestamp = await client.send(no_timestamp)
    stale = await client.send(signed(build(), secret, timestamp=int(time.time()) - 301))
    future = await client.send(signed(build(), secret, timestamp=int(time.time()) + 301))
    wrong_key = await client.send(signed(build(), "qxs_not-the-secret"))
    good = signed(build(), secret)
    first = await client.send(good)
    replay = await client.send(client.build_request("GET", "/v1/models", headers=dict(good.headers)))
    outcomes = {
        "unsigned": (unsigned, "signature-missing"),
        "missing timestamp": (missing_timestamp, "signature-missing"),
        "stale": (stale, "signature-timestamp-stale"),
        "future": (future, "signature-timestamp-stale"),
        "wrong key": (wrong_key, "signature-mismatch"),
        "replay": (replay, "signature-replayed"),
    }
    assert first.status_code == 200
    for name, (response, slug) in outcomes.items():
        assert response.status_code == 401, name
        assert response.json()["type"] == PROBLEMS + slug, name
    assert "X-Qortex-Timestamp" in missing_timestamp.json()["detail"]


async def test_a_signature_replayed_to_another_process_or_after_a_restart_is_refused(
    settings: Settings, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """Without Redis, the signatures already accepted are in the database every process shares."""
    assert settings.redis_url is None
    secret = await enable_signing(client, acme)
    good = signed(client.build_request("GET", "/v1/models", headers=acme.headers), secret)
    assert (await client.send(good)).status_code == 200
    other_process = create_app(settings)
    async with other_process.router.lifespan_context(other_process):
        transport = httpx.ASGITransport(app=other_process)
        async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as elsewhere:
            replay = await elsewhere.get("/v1/models", headers=dict(good.headers))
            # A later timestamp: the same request signed in the same second would be the same signature.
            later = int(time.time()) + 1
            fresh = await elsewhere.send(
                signed(elsewhere.build_request("GET", "/v1/models", headers=acme.headers), secret, timestamp=later)
            )
    assert replay.status_code == 401
    assert replay.json()["type"] == PROBLEMS + "signature-replayed"
    assert fresh.status_code == 200


async def test_seen_signatures_are_swept_once_their_window_has_passed(
    app: FastAPI, client: httpx.AsyncClient, db: Database, owner_db: Database, acme: TenantCredentials
) -> None:
    secret = await enable_signing(client, acme)
    now = int(time.time())
    for seconds_ago in range(3):  # a second apart: one request signed in one second is one signature
        request = signed(
            client.build_request("GET", "/v1/models", headers=acme.headers), secret, timestamp=now - seconds_ago
        )
        assert (await client.send(request)).status_code == 200
    async with owner_db.tenant_session(acme.tenant.scope, write=True) as session:
        oldest = await session.scalar(select(SeenSignature.signature_sha256).limit(1))
        await session.execute(
            update(SeenSignature)
            .where(SeenSignature.signature_sha256 != oldest)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert (await app.state.services.housekeeping.sweep())["seen_signatures"] == 2
    async with db.tenant_session(acme.tenant.scope) as session:
        assert list(await session.scalars(select(SeenSignature.signature_sha256))) == [oldest]


async def test_a_tampered_body_or_query_breaks_the_signature(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    secret = await enable_signing(client, acme)
    original = signed(
        client.build_request("PATCH", "/v1/tenant", json={"ip_allowlist": ["127.0.0.0/8"]}, headers=acme.headers),
        secret,
    )
    tampered_body = client.build_request(
        "PATCH",
        "/v1/tenant",
        json={"ip_allowlist": ["0.0.0.0/0"]},
        headers={key: value for key, value in original.headers.items() if key != "content-length"},
    )
    body_response = await client.send(tampered_body)
    assert body_response.status_code == 401
    assert body_response.json()["type"] == PROBLEMS + "signature-mismatch"

    signed_query = signed(client.build_request("GET", "/v1/api-keys?limit=5", headers=acme.headers), secret)
    tampered_query = client.build_request("GET", "/v1/api-keys?limit=500", headers=dict(signed_query.headers))
    query_response = await client.send(tampered_query)
    assert query_response.status_code == 401
    assert query_response.json()["type"] == PROBLEMS + "signature-mismatch"
    assert (await client.get("/v1/tenant", headers=acme.headers)).status_code == 401  # nothing got through
    check = await client.send(signed(client.build_request("GET", "/v1/tenant", headers=acme.headers), secret))
    assert check.json()["ip_allowlist"] == []


async def test_signing_cannot_be_required_before_a_secret_exists(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    refused = await client.patch("/v1/tenant", json={"require_signed_requests": True}, headers=acme.headers)
    assert refused.status_code == 422
    assert "signing-secret" in refused.json()["detail"]
    assert (await client.get("/v1/models", headers=acme.headers)).status_code == 200


async def test_a_rotated_secret_is_shown_once_and_replaces_the_old_one(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials
) -> None:
    old = await enable_signing(client, acme)
    rotate = signed(client.build_request("POST", "/v1/tenant/signing-secret", headers=acme.headers), old)
    new = (await client.send(rotate)).json()["signing_secret"]
    assert new != old
    shown = await client.send(signed(client.build_request("GET", "/v1/tenant", headers=acme.headers), new))
    assert shown.status_code == 200
    assert shown.json()["has_signing_secret"] is True and new not in shown.text
    stale_key = await client.send(signed(client.build_request("GET", "/v1/tenant", headers=acme.headers), old))
    assert stale_key.status_code == 401
    async with db.tenant_session(acme.tenant.scope) as session:
        actions = list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
    assert actions.count("tenant.signing_secret_rotated") == 2
    assert "tenant.security_changed" in actions
    assert "request.signature_rejected" in actions
