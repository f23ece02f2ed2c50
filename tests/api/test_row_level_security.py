"""PostgreSQL row-level security: a query that forgets its tenant filter still sees only its tenant."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from qortex.audit import service as audit
from qortex.core.database import Base, Database, TenantScope, allow_lookup
from qortex.core.ids import new_id
from tests.conftest import APP_ROLE, TenantCredentials, require_service

# Every table that holds a tenant's rows, read from the models: a new one without row-level security fails.
TENANT_TABLES = tuple(sorted(name for name, table in Base.metadata.tables.items() if "tenant_id" in table.c))
VALUES = [float(v % 5) for v in range(32)]


@pytest.fixture
def backend(postgres_problem: str | None) -> str:
    """Row-level security exists only on PostgreSQL."""
    if postgres_problem is not None:
        require_service("PostgreSQL", postgres_problem)
    return "postgres"


async def predict(client: httpx.AsyncClient, who: TenantCredentials, count: int) -> None:
    for _ in range(count):
        response = await client.post("/v1/predictions", json={"source": "s", "values": VALUES}, headers=who.headers)
        assert response.status_code == 201


async def test_the_app_role_cannot_bypass_row_level_security(db: Database) -> None:
    async with db.system_session() as session:
        role = (
            await session.execute(
                text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
        owned = await session.scalar(text("SELECT count(*) FROM pg_tables WHERE tableowner = current_user"))
        forced = await session.execute(
            text("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(:t)"),
            {"t": [*TENANT_TABLES, "tenants"]},
        )
        flags = {name: (enabled, forced_) for name, enabled, forced_ in forced}
    assert tuple(role) == (APP_ROLE, False, False)
    assert owned == 0
    assert flags == {name: (True, True) for name in (*TENANT_TABLES, "tenants")}


async def test_an_unfiltered_select_sees_only_the_current_tenant(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    await predict(client, acme, 3)
    await predict(client, globex, 2)
    for who, expected in ((acme, 3), (globex, 2)):
        async with db.tenant_session(who.tenant.scope) as session:
            rows = (await session.execute(text("SELECT tenant_id FROM predictions"))).all()
        assert len(rows) == expected
        assert {row.tenant_id for row in rows} == {who.tenant.id}


async def test_without_a_tenant_every_tenant_table_is_empty(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials
) -> None:
    await predict(client, acme, 1)
    async with db.system_session() as session:
        for table in (*TENANT_TABLES, "tenants"):
            assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table


async def test_writing_a_row_into_another_tenant_is_refused(
    db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    with pytest.raises((ProgrammingError, DBAPIError), match="row-level security"):
        async with db.tenant_session(acme.tenant.scope, write=True) as session:
            await session.execute(
                text(
                    "INSERT INTO api_keys (id, tenant_id, name, role, secret_sha256, created_at) "
                    "VALUES (:id, :tenant, 'x', 'owner', :hash, now())"
                ),
                {"id": new_id(), "tenant": globex.tenant.id, "hash": "0" * 64},
            )


async def test_a_lookup_sees_exactly_the_row_it_names(
    db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    acme_key_id = acme.key.split("_")[1]
    async with db.system_session() as session:
        await allow_lookup(session, "api_key", str(uuid.UUID(acme_key_id)))
        rows = (await session.execute(text("SELECT tenant_id FROM api_keys"))).all()
    assert [row.tenant_id for row in rows] == [acme.tenant.id]


async def test_the_audit_log_is_append_only_for_the_app(db: Database, acme: TenantCredentials) -> None:
    async with db.tenant_session(acme.tenant.scope, write=True) as session:
        await audit.append(session=session, scope=acme.tenant.scope, records=[audit.AuditRecord(action="x")])
    for statement in (
        "UPDATE audit_events SET outcome = 'failure'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_chain_heads",
        "UPDATE alembic_version SET version_num = 'x'",
    ):
        with pytest.raises((ProgrammingError, DBAPIError), match="permission denied"):
            async with db.tenant_session(acme.tenant.scope, write=True) as session:
                await session.execute(text(statement))


async def test_interleaved_tenants_on_one_pool_never_see_each_others_rows(
    client: httpx.AsyncClient, db: Database, acme: TenantCredentials, globex: TenantCredentials
) -> None:
    await predict(client, acme, 2)
    await predict(client, globex, 2)
    scopes = [acme.tenant.scope, globex.tenant.scope, TenantScope(new_id())]
    seen: list[tuple[TenantScope, set[object]]] = []

    async def read(scope: TenantScope) -> None:
        async with db.tenant_session(scope) as session:
            await asyncio.sleep(0)  # let other transactions interleave on the pool's connections
            tenants = set((await session.scalars(text("SELECT tenant_id FROM predictions"))).all())
            seen.append((scope, tenants))
        async with db.system_session() as session:  # the same pooled connections, with no tenant set
            assert await session.scalar(text("SELECT count(*) FROM predictions")) == 0

    await asyncio.gather(*(read(scopes[i % 3]) for i in range(150)))
    assert len(seen) == 150
    for scope, tenants in seen:
        assert tenants <= {scope.tenant_id}
