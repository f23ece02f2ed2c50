"""Per-tenant rate limits and quotas: refusals, RateLimit headers, plans and overrides, usage, audit."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from limits.aio import strategies as limits_strategies
from limits.aio.storage import memory as memory_counters
from sqlalchemy import select

from qortex.api import create_app
from qortex.audit.models import AuditEvent
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.core.errors import InvalidInput, Overloaded, StorageUnavailable
from qortex.core.idempotency import Answer
from qortex.limits import repository as limits_repository
from qortex.limits import service as limits_service
from qortex.limits import storage as limits_storage
from qortex.limits.plans import PLANS
from qortex.limits.service import set_tenant_limits
from qortex.security.rbac import Role
from qortex.tenants import repository as tenant_repository
from tests.conftest import TenantCredentials, key_for, make_tenant

MODELS = "/v1/models"


def series(seed: int = 0, n: int = 32) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in 100 + np.cumsum(rng.normal(size=n))]


def batch(count: int, seed: int = 0) -> dict[str, Any]:
    return {"items": [{"source": "s", "values": series(seed + i)} for i in range(count)]}


async def configure(app: FastAPI, who: TenantCredentials, *, plan: str | None = None, **limits: int) -> None:
    """Sets a tenant's plan and overrides, and drops this process's cached copy (others wait out their cache)."""
    await set_tenant_limits(db=app.state.services.db, scope=who.tenant.scope, plan=plan, overrides=limits)
    app.state.services.limits.forget(who.tenant.id)


async def store_raw(app: FastAPI, who: TenantCredentials, *, plan: str, limits: dict[str, Any]) -> None:
    """Writes a plan and overrides straight into the row, unvalidated, as an old or hand-edited row may hold them."""
    db: Database = app.state.services.db
    async with db.tenant_session(who.tenant.scope, write=True) as session:
        tenant = await tenant_repository.get_in_scope(session=session, scope=who.tenant.scope, for_update=True)
        assert tenant is not None
        tenant.plan, tenant.limits = plan, limits
    app.state.services.limits.forget(who.tenant.id)


async def audit_events(db: Database, who: TenantCredentials, action: str) -> list[AuditEvent]:
    async with db.tenant_session(who.tenant.scope) as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.tenant_id == who.tenant.id, AuditEvent.action == action)
            .order_by(AuditEvent.seq)
        )
        return list(rows)


def rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["ratelimit-limit"]), int(h["ratelimit-remaining"]), int(h["ratelimit-reset"])


async def test_requests_over_the_per_minute_limit_are_refused_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, requests_per_minute=3)
    remaining = []
    for _ in range(3):
        response = await client.get(MODELS, headers=acme.headers)
        assert response.status_code == 200, response.text
        remaining.append(rate_headers(response)[1])
    assert remaining == [2, 1, 0]

    refused = await client.get(MODELS, headers=acme.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"].endswith("/rate-limited")
    assert "requests_per_minute" in problem["detail"]
    assert int(refused.headers["retry-after"]) in range(1, 61)
    limit, left, reset = rate_headers(refused)
    assert (limit, left) == (3, 0)
    assert 0 <= reset <= 60
    assert refused.headers["ratelimit-policy"] == "3;w=60"


async def test_every_authenticated_response_carries_decreasing_rate_headers(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    viewer = {"Authorization": f"Bearer {await key_for(app.state.services.db, acme.tenant, Role.VIEWER)}"}
    standard = PLANS["standard"].requests_per_minute
    answers = [
        await client.get(MODELS, headers=acme.headers),
        await client.get(f"/v1/predictions/{uuid.uuid4()}", headers=acme.headers),
        await client.post("/v1/predictions", json={"source": "s", "values": [1.0]}, headers=acme.headers),
        await client.get("/v1/api-keys", headers=viewer),
        await client.get(MODELS, headers=acme.headers),
    ]
    assert [a.status_code for a in answers] == [200, 404, 422, 403, 200]
    limits = [rate_headers(a)[0] for a in answers]
    remaining = [rate_headers(a)[1] for a in answers]
    assert limits == [standard] * 5
    # The viewer key belongs to the same tenant: one count per tenant, whichever credential.
    assert remaining == [standard - n for n in range(1, 6)]
    assert all(0 <= rate_headers(a)[2] <= 60 for a in answers)

    for unauthenticated in (
        await client.get("/health/live"),
        await client.get(MODELS),
        await client.get(MODELS, headers={"Authorization": "Bearer qx_nope"}),
    ):
        assert "ratelimit-limit" not in unauthenticated.headers


async def test_the_hourly_limit_refuses_even_when_the_minute_has_room(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, requests_per_minute=100, requests_per_hour=2)
    assert [(await client.get(MODELS, headers=acme.headers)).status_code for _ in range(2)] == [200, 200]
    refused = await client.get(MODELS, headers=acme.headers)
    assert refused.status_code == 429
    assert "requests_per_hour" in refused.json()["detail"]
    assert rate_headers(refused)[:2] == (2, 0)
    assert refused.headers["ratelimit-policy"] == "2;w=3600"
    assert 60 < int(refused.headers["retry-after"]) <= 3600


async def test_the_daily_prediction_quota_counts_every_batch_item(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, predictions_per_day=5)
    first = await client.post("/v1/predictions/batch", json=batch(3), headers=acme.headers)
    assert first.status_code == 200 and first.json()["succeeded"] == 3

    too_many = await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)
    assert too_many.status_code == 429
    assert too_many.json()["type"].endswith("/rate-limited")
    assert "predictions_per_day" in too_many.json()["detail"]
    assert int(too_many.headers["retry-after"]) >= 1
    assert rate_headers(too_many)[:2] == (5, 2)

    for seed in (20, 21):
        made = await client.post("/v1/predictions", json={"source": "s", "values": series(seed)}, headers=acme.headers)
        assert made.status_code == 201
    over = await client.post("/v1/predictions", json={"source": "s", "values": series(22)}, headers=acme.headers)
    assert over.status_code == 429
    listed = await client.get("/v1/predictions", headers=acme.headers)
    assert len(listed.json()["items"]) == 5


async def test_a_changed_limit_keeps_what_was_already_used(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """Lowering a quota takes at once, and raising it grants only the difference."""
    await configure(app, acme, predictions_per_day=3, requests_per_minute=100)
    assert (await client.post("/v1/predictions/batch", json=batch(3), headers=acme.headers)).status_code == 200

    await configure(app, acme, predictions_per_day=2, requests_per_minute=90)
    usage = (await client.get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["remaining"] == 0  # used reads 2 of 2: the counter clips at the limit
    assert usage["requests_per_minute"]["used"] == 2  # the batch and this request
    refused = await client.post("/v1/predictions/batch", json=batch(2, seed=50), headers=acme.headers)
    assert refused.status_code == 429

    await configure(app, acme, predictions_per_day=5)
    assert (await client.post("/v1/predictions/batch", json=batch(2, seed=60), headers=acme.headers)).status_code == 200
    over = await client.post("/v1/predictions", json={"source": "s", "values": series(70)}, headers=acme.headers)
    assert over.status_code == 429


async def test_a_batch_larger_than_the_daily_quota_is_invalid_even_while_the_counters_are_unreachable(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    """The refusal needs only the limit, not the counters: it must not depend on their store being up."""
    await configure(app, acme, predictions_per_day=2)
    app.state.services.limits._store_down_until = time.monotonic() + 60
    refused = await client.post("/v1/predictions/batch", json=batch(3), headers=acme.headers)
    assert refused.status_code == 422 and "predictions_per_day" in refused.json()["detail"]


async def test_requests_and_items_that_make_no_prediction_are_not_charged(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, predictions_per_day=3)
    for failing in (
        {"source": "s", "values": series(1), "model": "nope"},
        {"source": "s", "values": series(1), "horizon": 2},
    ):
        assert (await client.post("/v1/predictions", json=failing, headers=acme.headers)).status_code in (404, 422)
    mixed = {"items": [None, {"source": "s", "values": [1.0]}, {"source": "s", "values": series(2)}]}
    answered = await client.post("/v1/predictions/batch", json=mixed, headers=acme.headers)
    assert answered.status_code == 200 and answered.json()["succeeded"] == 1
    usage = (await client.get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["used"] == 1
    for seed in (3, 4):
        made = await client.post("/v1/predictions", json={"source": "s", "values": series(seed)}, headers=acme.headers)
        assert made.status_code == 201
    over = await client.post("/v1/predictions", json={"source": "s", "values": series(5)}, headers=acme.headers)
    assert over.status_code == 429


async def test_bad_batch_items_take_no_room_in_the_daily_quota_check(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, predictions_per_day=2)
    body = {"items": [{"source": "s", "values": series(1)}, None, {"source": "s", "values": [1.0]}, None]}
    answered = await client.post("/v1/predictions/batch", json=body, headers=acme.headers)
    assert answered.status_code == 200, answered.text
    assert [item["status"] for item in answered.json()["items"]] == [201, 422, 422, 422]


async def test_concurrent_requests_at_the_quota_edge_store_no_more_than_the_quota(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, predictions_per_day=2)
    answers = await asyncio.gather(
        *(
            client.post("/v1/predictions", json={"source": "s", "values": series(seed)}, headers=acme.headers)
            for seed in range(6)
        )
    )
    assert sorted(answer.status_code for answer in answers) == [201, 201, 429, 429, 429, 429]
    listed = await client.get("/v1/predictions", headers=acme.headers)
    assert len(listed.json()["items"]) == 2


async def test_an_idempotent_replay_is_not_charged_again(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, predictions_per_day=1)
    keyed = {**acme.headers, "Idempotency-Key": "retry-me"}
    body = {"source": "s", "values": series(3)}
    first = await client.post("/v1/predictions", json=body, headers=keyed)
    again = await client.post("/v1/predictions", json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    fresh = await client.post("/v1/predictions", json={"source": "s", "values": series(4)}, headers=acme.headers)
    assert fresh.status_code == 429


@pytest.mark.parametrize(
    ("path", "body", "count"),
    [("/v1/predictions", {"source": "s", "values": series(3)}, 1), ("/v1/predictions/batch", batch(3), 3)],
)
async def test_copies_sent_at_once_with_one_idempotency_key_are_charged_once(
    client: httpx.AsyncClient, acme: TenantCredentials, path: str, body: dict[str, Any], count: int
) -> None:
    keyed = {**acme.headers, "Idempotency-Key": "sent-twice"}
    answers = await asyncio.gather(*(client.post(path, json=body, headers=keyed) for _ in range(5)))
    first = [a for a in answers if a.status_code in (200, 201) and "idempotent-replayed" not in a.headers]
    assert len(first) == 1, [a.status_code for a in answers]
    for copy in answers:
        if copy is first[0]:
            continue
        if copy.status_code == 409:
            assert copy.json()["type"].endswith("/idempotency-key-in-use") and copy.headers["retry-after"] == "1"
        else:  # it arrived once the first answer was stored
            assert copy.headers["idempotent-replayed"] == "true" and copy.json() == first[0].json()
    usage = (await client.get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["predictions_per_day"]["used"] == count
    again = await client.post(path, json=body, headers=keyed)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first[0].json()


async def test_a_keyed_request_refused_by_the_quota_is_retried_with_its_key(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, predictions_per_day=1)
    await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    keyed = {**acme.headers, "Idempotency-Key": "after-midnight"}
    body = {"source": "s", "values": series(2)}
    assert (await client.post("/v1/predictions", json=body, headers=keyed)).status_code == 429
    await configure(app, acme, predictions_per_day=2)
    retried = await client.post("/v1/predictions", json=body, headers=keyed)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers


@pytest.mark.parametrize(
    ("limit", "fragment"),
    [
        ("max_batch_items", "at most 2 items"),
        ("predictions_per_day", "more than the tenant's whole quota of 2 per day"),
    ],
)
async def test_a_batch_beyond_a_limit_no_wait_lifts_is_invalid_and_names_the_limit(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, limit: str, fragment: str
) -> None:
    """A 429 would have the client retry for ever."""
    await configure(app, acme, **{limit: 2})
    refused = await client.post("/v1/predictions/batch", json=batch(3), headers=acme.headers)
    assert refused.status_code == 422 and "retry-after" not in refused.headers
    assert limit in refused.json()["detail"] and fragment in refused.json()["detail"]
    accepted = await client.post("/v1/predictions/batch", json=batch(2), headers=acme.headers)
    assert accepted.status_code == 200
    usage = (await client.get("/v1/tenant/usage", headers=acme.headers)).json()
    # The refused batch was not charged to the daily quota.
    assert usage["predictions_per_day"]["used"] == 2
    assert usage["max_batch_items"] == (2 if limit == "max_batch_items" else 1000)


async def test_a_tenant_over_its_stored_bytes_quota_cannot_add_predictions(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, stored_bytes=1)
    first = await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    assert first.status_code == 201
    app.state.services.limits.forget(acme.tenant.id)  # as if the cached total had expired
    refused = await client.post("/v1/predictions", json={"source": "s", "values": series(2)}, headers=acme.headers)
    assert refused.status_code == 507
    assert refused.json()["type"].endswith("/storage-quota-exceeded")
    assert "stored_bytes" in refused.json()["detail"]
    assert (await client.get(f"/v1/predictions/{first.json()['id']}", headers=acme.headers)).status_code == 200


async def test_a_plan_picks_the_limits_and_an_unknown_plan_gets_the_smallest(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, plan="enterprise")
    assert rate_headers(await client.get(MODELS, headers=acme.headers))[0] == PLANS["enterprise"].requests_per_minute
    await store_raw(app, acme, plan="platinum-typo", limits={})
    assert rate_headers(await client.get(MODELS, headers=acme.headers))[0] == PLANS["free"].requests_per_minute
    await store_raw(app, acme, plan="free", limits={"requests_per_minute": 7, "concurrent_requests": 0, "x": 1})
    usage = (await client.get("/v1/tenant/usage", headers=acme.headers)).json()
    assert usage["plan"] == "free"
    assert usage["requests_per_minute"]["limit"] == 7
    # An invalid stored override is ignored, not applied.
    assert usage["concurrent_requests"]["limit"] == PLANS["free"].concurrent_requests


async def test_setting_limits_refuses_unknown_plans_names_and_values(app: FastAPI, acme: TenantCredentials) -> None:
    db: Database = app.state.services.db
    with pytest.raises(InvalidInput, match="unknown plan"):
        await set_tenant_limits(db=db, scope=acme.tenant.scope, plan="gold")
    with pytest.raises(InvalidInput) as refused:
        await set_tenant_limits(
            db=db, scope=acme.tenant.scope, overrides={"requests_per_minute": 0, "requests_per_fortnight": 5}
        )
    assert {e["loc"][-1] for e in refused.value.errors or []} == {"requests_per_minute", "requests_per_fortnight"}
    limits = await set_tenant_limits(db=db, scope=acme.tenant.scope, plan="free", overrides={"max_batch_items": 7})
    assert limits == dataclasses.replace(PLANS["free"], max_batch_items=7)


async def test_changes_and_unsets_of_different_limits_at_once_all_take(
    app: FastAPI, settings: Settings, acme: TenantCredentials
) -> None:
    db: Database = app.state.services.db
    scope = acme.tenant.scope
    await set_tenant_limits(db=db, scope=scope, overrides={"max_batch_items": 7, "stored_bytes": 1_000})
    operators = [Database(settings.resolved_database_url, schema=settings.database_schema) for _ in range(3)]
    try:
        await asyncio.gather(
            set_tenant_limits(db=operators[0], scope=scope, changes={"requests_per_minute": 60}),
            set_tenant_limits(db=operators[1], scope=scope, changes={"requests_per_hour": 5_000}),
            set_tenant_limits(db=operators[2], scope=scope, unset=["stored_bytes"]),
        )
    finally:
        await asyncio.gather(*(operator.dispose() for operator in operators))
    async with db.tenant_session(scope) as session:
        tenant = await tenant_repository.get_in_scope(session=session, scope=scope)
    assert tenant is not None
    assert tenant.limits == {"max_batch_items": 7, "requests_per_minute": 60, "requests_per_hour": 5_000}


async def test_a_change_of_limits_is_audited_and_a_refused_or_empty_one_is_not(
    app: FastAPI, acme: TenantCredentials
) -> None:
    db: Database = app.state.services.db
    await set_tenant_limits(db=db, scope=acme.tenant.scope, plan="free", overrides={"max_batch_items": 7})
    with pytest.raises(InvalidInput):
        await set_tenant_limits(db=db, scope=acme.tenant.scope, overrides={"max_batch_items": 0})
    await set_tenant_limits(db=db, scope=acme.tenant.scope, plan="free", overrides={"max_batch_items": 7})
    async with db.tenant_session(acme.tenant.scope) as session:
        events = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "tenant.limits_changed"))).all()
    assert len(events) == 1
    assert events[0].actor_kind == "operator"
    assert events[0].target_id == str(acme.tenant.id)
    assert events[0].details == {
        "plan": {"from": acme.tenant.plan, "to": "free"},
        "overrides": {"from": {}, "to": {"max_batch_items": 7}},
    }


async def test_one_tenants_usage_never_affects_another(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    await configure(app, acme, requests_per_minute=2, predictions_per_day=1)
    await configure(app, globex, requests_per_minute=2, predictions_per_day=1)
    assert (
        await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    ).status_code == 201
    assert (await client.get(MODELS, headers=acme.headers)).status_code == 200
    assert (await client.get(MODELS, headers=acme.headers)).status_code == 429

    made = await client.post("/v1/predictions", json={"source": "s", "values": series(2)}, headers=globex.headers)
    assert made.status_code == 201
    assert rate_headers(made)[:2] == (2, 1)
    assert (await client.get(MODELS, headers=globex.headers)).status_code == 200


async def test_usage_reports_every_limit_with_its_use_and_reset(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await client.get(MODELS, headers=acme.headers)
    made = await client.post("/v1/predictions/batch", json=batch(3), headers=acme.headers)
    assert made.status_code == 200
    before = time.time()
    response = await client.get("/v1/tenant/usage", headers=acme.headers)
    assert response.status_code == 200
    usage = response.json()
    standard = PLANS["standard"]
    assert usage["plan"] == "standard"
    assert usage["requests_per_minute"]["limit"] == standard.requests_per_minute
    assert usage["requests_per_minute"]["used"] == 3  # this request included
    assert usage["requests_per_minute"]["remaining"] == standard.requests_per_minute - 3
    assert usage["requests_per_minute"]["window_seconds"] == 60
    assert usage["requests_per_hour"]["used"] == 3
    assert usage["predictions_per_day"] == {
        "limit": standard.predictions_per_day,
        "used": 3,
        "remaining": standard.predictions_per_day - 3,
        "window_seconds": 86_400,
        "resets_at": usage["predictions_per_day"]["resets_at"],
    }
    assert usage["concurrent_requests"]["used"] == 1  # this request holds a slot
    resets = np.datetime64(usage["requests_per_minute"]["resets_at"].replace("Z", "")).astype("datetime64[ms]")
    assert before < resets.astype(float) / 1000 <= before + 60

    db: Database = app.state.services.db
    async with db.tenant_session(acme.tenant.scope) as session:
        stored = await limits_repository.stored_bytes(session=session, scope=acme.tenant.scope)
    assert stored > 0
    assert usage["stored_bytes"] == {
        "limit": standard.stored_bytes,
        "used": stored,
        "remaining": standard.stored_bytes - stored,
        "window_seconds": None,
        "resets_at": None,
    }


@pytest.mark.parametrize(("role", "status"), [(Role.ADMIN, 200), (Role.AUDITOR, 200), (Role.ANALYST, 403)])
async def test_usage_is_visible_to_owners_admins_and_auditors(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, role: Role, status: int
) -> None:
    key = await key_for(app.state.services.db, acme.tenant, role)
    response = await client.get("/v1/tenant/usage", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == status


async def test_refusals_are_audited_once_per_interval_with_the_rest_counted(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, requests_per_minute=1)
    statuses = [(await client.get(MODELS, headers=acme.headers)).status_code for _ in range(6)]
    assert statuses == [200] + [429] * 5
    events = await audit_events(app.state.services.db, acme, "rate_limited")
    assert len(events) == 1
    event = events[0]
    assert event.outcome == "denied"
    assert event.target_id == "requests_per_minute"
    # The actor is the credential's id (pseudonymous), never its secret.
    assert event.actor_kind == "api_key"
    assert event.actor_id is not None and uuid.UUID(event.actor_id).hex == acme.key.split("_")[1]
    assert acme.key.split("_", 2)[2] not in str(event.details)
    assert event.details["limit"] == 1 and event.details["path"] == MODELS


async def test_a_denied_permission_is_audited(app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials) -> None:
    db: Database = app.state.services.db
    viewer = {"Authorization": f"Bearer {await key_for(db, acme.tenant, Role.VIEWER)}"}
    assert (await client.get("/v1/api-keys", headers=viewer)).status_code == 403
    events = await audit_events(db, acme, "permission_denied")
    assert len(events) == 1
    assert events[0].target_id == "keys:manage" and events[0].details["role"] == "viewer"


@pytest.fixture
async def slow_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app whose engine batcher waits a full second before running, so requests stay in flight."""
    application = create_app(settings.model_copy(update={"engine_max_wait_ms": 1000.0}))
    async with application.router.lifespan_context(application):
        yield application


async def wait_for_in_flight(app: FastAPI, who: TenantCredentials, count: int) -> None:
    """Waits until exactly `count` of the tenant's requests hold a concurrency slot (10 s at most)."""
    concurrency = app.state.services.limits.storage.concurrency
    for _ in range(1000):
        if await concurrency.current(str(who.tenant.id)) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the tenant never had exactly {count} requests in flight")


async def test_requests_beyond_the_concurrency_limit_are_refused_while_others_are_in_flight(
    slow_app: FastAPI,
) -> None:
    acme = await make_tenant(slow_app.state.services.db, "acme")
    globex = await make_tenant(slow_app.state.services.db, "globex")
    await configure(slow_app, acme, concurrent_requests=2)
    transport = httpx.ASGITransport(app=slow_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as client:
        held = [
            asyncio.create_task(
                client.post("/v1/predictions", json={"source": "s", "values": series(i)}, headers=acme.headers)
            )
            for i in range(2)
        ]
        await wait_for_in_flight(slow_app, acme, 2)
        refused = await client.get(MODELS, headers=acme.headers)
        assert refused.status_code == 429
        assert "at most 2 requests" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1"
        # No RateLimit-* headers: the minute's, with room left, would invite an immediate retry.
        assert not [name for name in refused.headers if name.startswith("ratelimit-")]
        assert (await client.get(MODELS, headers=globex.headers)).status_code == 200

        assert [r.status_code for r in await asyncio.gather(*held)] == [201, 201]
        # Every slot was given back when its response was sent.
        assert await slow_app.state.services.limits.storage.concurrency.current(str(acme.tenant.id)) == 0
        assert (await client.get(MODELS, headers=acme.headers)).status_code == 200


async def test_a_head_request_refused_by_a_limit_is_recorded_as_head(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, requests_per_minute=1)
    assert [(await client.head(MODELS, headers=acme.headers)).status_code for _ in range(2)] == [200, 429]
    [refused] = await audit_events(app.state.services.db, acme, "rate_limited")
    assert refused.details["method"] == "HEAD"


async def test_writes_count_against_the_storage_quota_at_once_not_after_the_cache_expires(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    await configure(app, acme, stored_bytes=1)
    first = await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    assert first.status_code == 201
    limits = app.state.services.limits
    counted = await limits.stored_bytes(acme.tenant.scope)  # the cached total, with what was just stored
    assert counted == await limits.stored_bytes(acme.tenant.scope, fresh=True) > 1  # the database's own sum
    # No forget(): the cached total already holds what the first request stored.
    refused = await client.post("/v1/predictions/batch", json=batch(2), headers=acme.headers)
    assert refused.status_code == 507


async def test_after_a_lowered_limit_retry_after_waits_until_a_request_fits(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the newest `limit` requests of the window decide when the next one fits, in memory as in Redis."""
    ago = [30.0]
    clock = SimpleNamespace(time=lambda: time.time() - ago[0])
    monkeypatch.setattr(memory_counters, "time", clock)
    monkeypatch.setattr(limits_storage, "time", clock)
    await configure(app, acme, requests_per_minute=100)
    assert (await client.get(MODELS, headers=acme.headers)).status_code == 200  # 30 s ago
    ago[0] = 10.0
    assert [(await client.get(MODELS, headers=acme.headers)).status_code for _ in range(2)] == [200, 200]  # 10 s ago
    ago[0] = 0.0

    await configure(app, acme, requests_per_minute=2)
    refused = await client.get(MODELS, headers=acme.headers)
    assert refused.status_code == 429
    # The two of 10 s ago hold the window until they are a minute old; the one of 30 s ago leaving frees nothing.
    assert int(refused.headers["retry-after"]) in range(49, 52)
    assert int(refused.headers["ratelimit-reset"]) in range(49, 52)
    ago[0] = -31.0  # when the request of 30 s ago has left the window: still no room
    assert (await client.get(MODELS, headers=acme.headers)).status_code == 429


def _wall_clock_at(monkeypatch: pytest.MonkeyPatch, start: float) -> list[float]:
    """The in-memory counters' wall clock, starting at `start`; the test moves it by changing the list's item."""
    now = [start]
    clock = SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic)
    for module in (memory_counters, limits_strategies, limits_storage, limits_service):
        monkeypatch.setattr(module, "time", clock)
    return now


async def test_retry_after_for_a_batch_over_the_daily_quota_is_when_the_whole_batch_fits(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not when the first prediction frees up: a client that honours Retry-After must not be refused again."""
    midnight = float(int(time.time()) // 86_400 * 86_400)
    now = _wall_clock_at(monkeypatch, midnight - 3_600)  # 23:00 yesterday
    await configure(app, acme, predictions_per_day=5)
    assert (await client.post("/v1/predictions/batch", json=batch(5), headers=acme.headers)).status_code == 200

    now[0] = midnight + 3_600  # 01:00: yesterday's 5 still weigh 23/24 of 5, so 1 prediction fits
    refused = await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)
    assert refused.status_code == 429
    # 3 fit once yesterday's weigh at most 2: at 14.4 h before the day ends, 8.6 h (30,960 s) from now.
    retry_after = int(refused.headers["retry-after"])
    assert retry_after in range(30_960, 30_963)
    now[0] += retry_after - 2
    assert (await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)).status_code == 429
    now[0] += 2
    assert (await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)).status_code == 200


async def test_retry_after_for_a_batch_that_fits_only_tomorrow_counts_todays_predictions_fading(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    midnight = float(int(time.time()) // 86_400 * 86_400)
    now = _wall_clock_at(monkeypatch, midnight + 3_600)  # 01:00 today
    await configure(app, acme, predictions_per_day=5)
    assert (await client.post("/v1/predictions/batch", json=batch(4), headers=acme.headers)).status_code == 200
    refused = await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)
    assert refused.status_code == 429
    # Today's 4 become yesterday's at midnight (23 h from now) and leave room for 3 once they weigh less than 3:
    # a quarter of a day later, 23 h + 6 h = 104,400 s.
    retry_after = int(refused.headers["retry-after"])
    assert retry_after in range(104_400, 104_403)
    now[0] += retry_after - 2
    assert (await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)).status_code == 429
    now[0] += 2
    last = await client.post("/v1/predictions/batch", json=batch(3, seed=10), headers=acme.headers)
    assert last.status_code == 200, (last.text, dict(last.headers))


async def used_today(client: httpx.AsyncClient, who: TenantCredentials) -> int:
    usage = (await client.get("/v1/tenant/usage", headers=who.headers)).json()
    return int(usage["predictions_per_day"]["used"])


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        pytest.param(StorageUnavailable(), 503, id="database-unavailable"),
        pytest.param(Overloaded("the server is shutting down", retry_after_seconds=1), 503, id="shutting-down"),
        pytest.param(RuntimeError("a bug in the commit"), 500, id="unexpected-error"),
    ],
)
async def test_a_request_whose_commit_stored_nothing_gives_its_charge_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    acme: TenantCredentials,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    status: int,
) -> None:
    committer = app.state.services.committer
    commit = committer.commit

    async def failing(**kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(committer, "commit", failing)
    single = await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    assert single.status_code == status
    assert (await client.post("/v1/predictions/batch", json=batch(4), headers=acme.headers)).status_code == status
    assert await used_today(client, acme) == 0
    monkeypatch.setattr(committer, "commit", commit)
    made = await client.post("/v1/predictions/batch", json=batch(2), headers=acme.headers)
    assert made.status_code == 200 and made.json()["succeeded"] == 2
    assert await used_today(client, acme) == 2


async def test_a_request_whose_commit_may_have_stored_it_keeps_its_charge(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL connection lost during COMMIT: the server may have committed, so the charge stays."""

    async def lost_during_commit(**kwargs: Any) -> Any:
        raise StorageUnavailable(outcome_unknown=True)

    monkeypatch.setattr(app.state.services.committer, "commit", lost_during_commit)
    refused = await client.post("/v1/predictions/batch", json=batch(3), headers=acme.headers)
    assert refused.status_code == 503 and "may have been stored" in refused.json()["detail"]
    assert await used_today(client, acme) == 3


async def test_a_request_cancelled_while_its_rows_wait_for_the_commit_keeps_its_charge(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows handed to the group commit are committed even when their request is gone, so they stay charged."""
    committer = app.state.services.committer
    handle, queued = committer.handle, asyncio.Event()
    go_on = asyncio.Event()

    async def held(group: Any) -> None:
        queued.set()
        await go_on.wait()
        await handle(group)

    monkeypatch.setattr(committer, "handle", held)
    request = asyncio.create_task(client.post("/v1/predictions/batch", json=batch(2), headers=acme.headers))
    await asyncio.wait_for(queued.wait(), timeout=10)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    go_on.set()
    await committer.settled()
    listed = await client.get("/v1/predictions", headers=acme.headers)
    assert len(listed.json()["items"]) == 2
    assert await used_today(client, acme) == 2


async def test_a_request_whose_copy_stored_its_answer_first_gives_its_own_charge_back(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy with the same Idempotency-Key was charged for the rows it stored; this one stored none."""
    keyed = {**acme.headers, "Idempotency-Key": "copy-won"}
    stored = await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=keyed)
    assert await used_today(client, acme) == 1

    async def copy_stored_first(**kwargs: Any) -> Answer:
        return Answer(stored.json(), replayed=True)

    monkeypatch.setattr(app.state.services.committer, "commit", copy_stored_first)
    again = await client.post("/v1/predictions", json={"source": "s", "values": series(1)}, headers=acme.headers)
    assert again.status_code == 201 and again.json() == stored.json()
    assert await used_today(client, acme) == 1


DAY_SECONDS = 86_400


async def assert_take_back_leaves_the_previous_window(
    counters: limits_storage.MemoryCounters | limits_storage.RedisCounters, key: str
) -> None:
    """With 4 counted in the previous window (by the caller) and 5 in the current one, taking back 2 and then 10
    leaves 3 and then 0 in the current window, and the previous window's 4 as they were."""
    assert await counters.acquire_sliding_window_entry(key, 100, DAY_SECONDS, 5)
    await counters.take_back(key, DAY_SECONDS, 2)
    previous, _, current, _ = await counters.get_sliding_window(key, DAY_SECONDS)
    assert (previous, current) == (4, 3)
    await counters.take_back(key, DAY_SECONDS, 10)
    previous, _, current, _ = await counters.get_sliding_window(key, DAY_SECONDS)
    assert (previous, current) == (4, 0)
    assert await counters.acquire_sliding_window_entry(key, 100, DAY_SECONDS, 1)
    assert (await counters.get_sliding_window(key, DAY_SECONDS))[2] == 1


async def test_taking_back_from_memory_counters_spares_the_previous_window() -> None:
    counters = limits_storage.MemoryCounters()
    previous_window, _ = counters.sliding_window_keys("k", DAY_SECONDS, time.time())
    await counters.incr(previous_window, 2 * DAY_SECONDS, 4)
    await assert_take_back_leaves_the_previous_window(counters, "k")
    await counters.take_back("nothing-counted", DAY_SECONDS, 3)
    assert not [key for key in counters.storage if key.startswith("nothing-counted")], "a counter that never expires"
