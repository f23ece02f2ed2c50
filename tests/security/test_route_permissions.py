"""OWASP API5 (function-level authorisation): every route declares its permission, and it is enforced."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from qortex.core.database import Database
from qortex.security.rbac import ROLE_PERMISSIONS, Permission, Role
from qortex.web.dependencies import PERMISSION_ATTRIBUTE
from tests.conftest import TenantCredentials, key_for

PUBLIC_ROUTES = {
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
}


def declared_permissions(route: APIRoute) -> list[Permission]:
    found: list[Permission] = []
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        permission = getattr(dependant.call, PERMISSION_ATTRIBUTE, None)
        if permission is not None:
            found.append(permission)
        pending.extend(dependant.dependencies)
    return found


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """Every (method, effective path, route) the app serves, through included routers too."""
    served = (
        (method, context.path, context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    )
    return sorted(served, key=lambda item: (item[1], item[0]))


def concrete(path: str) -> str:
    while "{" in path:
        path = path[: path.index("{")] + str(uuid.uuid4()) + path[path.index("}") + 1 :]
    return path


async def test_every_route_declares_exactly_one_permission_or_is_public(app: FastAPI) -> None:
    undeclared = []
    for method, path, route in api_routes(app):
        permissions = declared_permissions(route)
        if (method, path) in PUBLIC_ROUTES:
            assert not permissions, f"{method} {path} is public yet declares {permissions}"
        elif len(permissions) != 1:
            undeclared.append(f"{method} {path}: {permissions}")
    assert not undeclared, "routes without exactly one declared permission:\n" + "\n".join(undeclared)


async def test_every_protected_route_refuses_a_missing_credential(client: httpx.AsyncClient, app: FastAPI) -> None:
    for method, path, _ in api_routes(app):
        if (method, path) in PUBLIC_ROUTES:
            continue
        response = await client.request(method, concrete(path))
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"


async def test_every_protected_route_refuses_a_role_without_its_permission(
    client: httpx.AsyncClient, app: FastAPI, db: Database, acme: TenantCredentials
) -> None:
    keys = {role: await key_for(db, acme.tenant, role) for role in Role}
    checked = 0
    for method, path, route in api_routes(app):
        if (method, path) in PUBLIC_ROUTES:
            continue
        [permission] = declared_permissions(route)
        for role, key in keys.items():
            if permission in ROLE_PERMISSIONS[role]:
                continue
            body: Any = {} if method in {"POST", "PATCH", "PUT"} else None
            response = await client.request(
                method, concrete(path), json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 403, f"{role.value} on {method} {path}: {response.status_code}"
            checked += 1
    assert checked > 0
    assert len(api_routes(app)) > len(PUBLIC_ROUTES)


@pytest.mark.parametrize("role", list(Role))
def test_every_role_has_read_access_to_models_and_the_owner_has_everything(role: Role) -> None:
    assert Permission.MODELS_READ in ROLE_PERMISSIONS[role]
    assert ROLE_PERMISSIONS[Role.OWNER] == frozenset(Permission)
