"""A tenant never sees another tenant's predictions, keys or models: their ids answer 404."""

from __future__ import annotations

import httpx

from tests.conftest import TenantCredentials

VALUES = [float(v % 7) for v in range(40)]


async def test_another_tenants_resources_are_invisible(
    client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    made = (await client.post("/v1/predictions", json={"source": "s", "values": VALUES}, headers=acme.headers)).json()
    key = (await client.post("/v1/api-keys", json={"name": "k", "role": "viewer"}, headers=acme.headers)).json()
    model = (await client.get("/v1/models", headers=acme.headers)).json()["items"][0]

    assert (await client.get(f"/v1/predictions/{made['id']}", headers=globex.headers)).status_code == 404
    assert (await client.get(f"/v1/api-keys/{key['id']}", headers=globex.headers)).status_code == 404
    assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=globex.headers)).status_code == 404
    assert (await client.get(f"/v1/models/{model['id']}", headers=globex.headers)).status_code == 404
    assert (await client.get("/v1/predictions", headers=globex.headers)).json()["items"] == []
    globex_keys = (await client.get("/v1/api-keys", headers=globex.headers)).json()["items"]
    assert key["id"] not in [item["id"] for item in globex_keys]
    assert (await client.get(f"/v1/predictions/{made['id']}", headers=acme.headers)).status_code == 200
    still_works = {"Authorization": f"Bearer {key['key']}"}
    assert (await client.get("/v1/predictions", headers=still_works)).status_code == 200


async def test_a_model_reference_to_another_tenants_model_is_not_found(
    client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    acme_model = (await client.get("/v1/models", headers=acme.headers)).json()["items"][0]["id"]
    response = await client.post(
        "/v1/predictions", json={"source": "s", "values": VALUES, "model": acme_model}, headers=globex.headers
    )
    assert response.status_code == 404


async def test_the_same_idempotency_key_in_two_tenants_is_two_requests(
    client: httpx.AsyncClient, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    body = {"source": "s", "values": VALUES}
    first = await client.post("/v1/predictions", json=body, headers={**acme.headers, "Idempotency-Key": "same"})
    second = await client.post("/v1/predictions", json=body, headers={**globex.headers, "Idempotency-Key": "same"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers
