"""OWASP API1 (object-level authorisation): another tenant's ids answer 404 on every route that takes one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TenantCredentials
from tests.security.test_route_permissions import api_routes

VALUES = [float(v % 9) for v in range(48)]

ResourceFactory = Callable[[httpx.AsyncClient, TenantCredentials], Awaitable[str]]


async def a_prediction(client: httpx.AsyncClient, owner: TenantCredentials) -> str:
    response = await client.post("/v1/predictions", json={"source": "s", "values": VALUES}, headers=owner.headers)
    return str(response.json()["id"])


async def a_model(client: httpx.AsyncClient, owner: TenantCredentials) -> str:
    return str((await client.get("/v1/models", headers=owner.headers)).json()["items"][0]["id"])


async def an_api_key(client: httpx.AsyncClient, owner: TenantCredentials) -> str:
    response = await client.post("/v1/api-keys", json={"name": "k", "role": "viewer"}, headers=owner.headers)
    return str(response.json()["id"])


async def a_user(client: httpx.AsyncClient, owner: TenantCredentials) -> str:
    body = {
        "username": "victim",
        "email": "victim@acme.example",
        "display_name": "Victim",
        "password": "correct horse battery staple",
        "role": "viewer",
    }
    response = await client.post("/v1/users", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# Every route with an id in its path, the resource it names, and a harmless body for writes.
ID_ROUTES: dict[tuple[str, str], tuple[ResourceFactory, dict[str, object] | None]] = {
    ("GET", "/v1/predictions/{prediction_id}"): (a_prediction, None),
    ("GET", "/v1/models/{model_id}"): (a_model, None),
    ("GET", "/v1/api-keys/{key_id}"): (an_api_key, None),
    ("DELETE", "/v1/api-keys/{key_id}"): (an_api_key, None),
    ("GET", "/v1/users/{user_id}"): (a_user, None),
    ("PATCH", "/v1/users/{user_id}"): (a_user, {"display_name": "Renamed"}),
    ("DELETE", "/v1/users/{user_id}"): (a_user, None),
}


def id_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in api_routes(app) if "{" in path}


async def test_every_route_with_an_id_is_attacked_here(app: FastAPI) -> None:
    assert id_routes(app) == set(ID_ROUTES), "add new id routes to ID_ROUTES so they are attacked"


@pytest.mark.parametrize(("method", "path"), sorted(ID_ROUTES))
async def test_another_tenants_id_is_not_found_and_untouched(
    client: httpx.AsyncClient,
    app: FastAPI,
    acme: TenantCredentials,
    globex: TenantCredentials,
    method: str,
    path: str,
) -> None:
    if (method, path) not in id_routes(app):
        pytest.fail(f"{method} {path} is listed but not served")
    factory, body = ID_ROUTES[(method, path)]
    resource_id = await factory(client, acme)
    url = path.replace(path[path.index("{") : path.index("}") + 1], resource_id)
    attack = await client.request(method, url, json=body, headers=globex.headers)
    assert attack.status_code == 404, attack.text
    assert attack.headers["content-type"] == "application/problem+json"
    missing = await client.request(
        method, url[: -len(resource_id)] + "0" * 8 + resource_id[8:], json=body, headers=globex.headers
    )
    assert missing.json()["title"] == attack.json()["title"], "another tenant's id looks exactly like a missing one"
    own = await client.get(url, headers=acme.headers)
    assert own.status_code == 200, "the resource is still there and unchanged for its owner"
    if method == "PATCH":
        assert own.json().get("display_name") != "Renamed"
    if path.startswith("/v1/api-keys") or path.startswith("/v1/users"):
        assert own.json().get("revoked_at") is None and own.json().get("active", True) is True
