"""Group commit: concurrent predictions share transactions, yet each answer is its own and durable."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TenantCredentials


def values(seed: int) -> list[float]:
    return [float((seed * 7 + i * 3) % 11) for i in range(40)]


async def test_concurrent_predictions_of_two_tenants_are_each_stored_once_in_their_tenant(
    client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    who = [acme, globex] * 8  # within the standard plan's 10 concurrent requests per tenant
    answers = await asyncio.gather(
        *(
            client.post("/v1/predictions", json={"source": f"s{i}", "values": values(i)}, headers=t.headers)
            for i, t in enumerate(who)
        )
    )
    assert [a.status_code for a in answers] == [201] * len(who)
    for tenant in (acme, globex):
        listed = (await client.get("/v1/predictions", params={"limit": 100}, headers=tenant.headers)).json()["items"]
        mine = {a.json()["id"] for a, t in zip(answers, who, strict=True) if t is tenant}
        assert {item["id"] for item in listed} == mine


async def test_concurrent_twins_with_one_idempotency_key_run_once(
    client: httpx.AsyncClient, acme: TenantCredentials
) -> None:
    headers = {**acme.headers, "Idempotency-Key": "twins"}
    body = {"source": "s", "values": values(1)}
    answers = await asyncio.gather(*(client.post("/v1/predictions", json=body, headers=headers) for _ in range(8)))
    made = [a for a in answers if a.status_code == 201]
    assert {a.status_code for a in answers} <= {201, 409}
    assert len({a.json()["id"] for a in made}) == 1
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 409)
    listed = (await client.get("/v1/predictions", headers=acme.headers)).json()["items"]
    assert len(listed) == 1


async def test_concurrent_twins_with_one_idempotency_key_store_one_prediction(
    app: FastAPI, client: httpx.AsyncClient, acme: TenantCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the claims that keep twins apart (their store unreachable), the database still stores one."""

    async def store_down(key: str) -> str | None:
        raise OSError("the limit store is unreachable")

    monkeypatch.setattr(app.state.services.limits.storage.claims, "claim", store_down)
    headers = {**acme.headers, "Idempotency-Key": "twins"}
    body = {"source": "s", "values": values(1)}
    answers = await asyncio.gather(*(client.post("/v1/predictions", json=body, headers=headers) for _ in range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    listed = (await client.get("/v1/predictions", headers=acme.headers)).json()["items"]
    assert len(listed) == 1
