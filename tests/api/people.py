"""Helpers for the tests of people and sessions: a known password, creating users, logging in."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from qortex.identity import users
from qortex.security.rbac import Role
from qortex.tenants.models import Tenant

PASSWORD = "correct horse battery staple"


def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Minimal argon2 cost, so the tests spend their time on behaviour rather than hashing."""
    monkeypatch.setenv("QORTEX_PASSWORD_TIME_COST", "1")
    monkeypatch.setenv("QORTEX_PASSWORD_MEMORY_KIB", "64")
    monkeypatch.setenv("QORTEX_PASSWORD_PARALLELISM", "1")


async def add_user(app: FastAPI, tenant: Tenant, username: str, role: Role = Role.ANALYST) -> uuid.UUID:
    answer = await users.create_user(
        db=app.state.services.db,
        passwords=app.state.services.auth.passwords,
        scope=tenant.scope,
        username=username,
        email=f"{username}@example.com",
        display_name=username.title(),
        password=PASSWORD,
        role=role,
    )
    return uuid.UUID(answer.body["id"])


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
