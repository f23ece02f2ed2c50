"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, each in its own database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from qortex.api import create_app
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.identity import service as identity_service
from qortex.security.rbac import Role
from qortex.tenants import service as tenant_service
from qortex.tenants.models import Tenant

POSTGRES_URL = os.environ.get("QORTEX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The app connects as this role: it owns no tables and has neither superuser nor BYPASSRLS.
APP_ROLE = "qortex_test_app"
APP_POSTGRES_URL = make_url(POSTGRES_URL).set(username=APP_ROLE).render_as_string(hide_password=False)
REQUIRE_SERVICES = os.environ.get("QORTEX_REQUIRE_SERVICES") == "1"


def require_service(name: str, reason: str) -> None:
    """Skips locally when a service is missing; fails in CI, where every service must be there."""
    message = f"{name} unavailable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (QORTEX_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def _postgres_reachable() -> str | None:
    db = Database(POSTGRES_URL)
    try:
        await asyncio.wait_for(db.ping(), timeout=5)
        async with db.engine.begin() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE})
            if not exists:
                await conn.execute(
                    text(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
                )
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    return asyncio.run(_postgres_reachable())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, postgres_problem: str | None) -> str:
    if request.param == "postgres" and postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    return str(request.param)


async def _run_sql(statement: str) -> None:
    admin = Database(POSTGRES_URL)
    try:
        async with admin.engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture
def settings(backend: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: its own SQLite file, or its own PostgreSQL schema."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if backend == "sqlite":
        yield Settings(env="test", data_dir=data_dir)
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_run_sql(f"CREATE SCHEMA {schema}"))
    try:
        yield Settings(
            env="test",
            data_dir=data_dir,
            database_url=APP_POSTGRES_URL,
            migration_database_url=POSTGRES_URL,
            database_app_role=APP_ROLE,
            database_schema=schema,
        )
    finally:
        asyncio.run(_run_sql(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.services.db
    return database


@pytest.fixture
async def owner_db(settings: Settings) -> AsyncIterator[Database]:
    """The database as its owner sees it: what someone with direct database access could do."""
    database = Database(settings.resolved_migration_url, schema=settings.database_schema)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as http:
        yield http


@asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose TCP peer address, as the app sees it, is `ip`."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://qortex.test") as http:
        yield http


@dataclass(frozen=True)
class TenantCredentials:
    tenant: Tenant
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_tenant(db: Database, name: str, role: Role = Role.OWNER) -> TenantCredentials:
    tenant = await tenant_service.create(db=db, name=name)
    answer = await identity_service.create_key(db=db, scope=tenant.scope, name=f"{name} key", role=role)
    return TenantCredentials(tenant=tenant, key=str(answer.body["key"]))


async def key_for(db: Database, tenant: Tenant, role: Role) -> str:
    answer = await identity_service.create_key(db=db, scope=tenant.scope, name=f"{role.value} key", role=role)
    return str(answer.body["key"])


@pytest.fixture
async def acme(db: Database) -> TenantCredentials:
    return await make_tenant(db, "acme")


@pytest.fixture
async def globex(db: Database) -> TenantCredentials:
    return await make_tenant(db, "globex")
