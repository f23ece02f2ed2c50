"""Queries on the tenants table.

Reading the directory of tenants (by name, or all of them) is an operator's act that precedes any
tenant scope; on PostgreSQL it is allowed only where a transaction asks for it explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import TenantScope, allow_lookup
from qortex.tenants.models import Tenant


async def get_by_name(*, session: AsyncSession, name: str) -> Tenant | None:
    await allow_lookup(session, "tenant_directory", "on")
    return await session.scalar(select(Tenant).where(Tenant.name == name))


async def list_all(*, session: AsyncSession) -> Sequence[Tenant]:
    await allow_lookup(session, "tenant_directory", "on")
    return (await session.scalars(select(Tenant).order_by(Tenant.created_at))).all()


def add(*, session: AsyncSession, scope: TenantScope, tenant: Tenant) -> None:
    if tenant.id != scope.tenant_id:
        raise ValueError("a tenant row is written only inside its own scope")
    session.add(tenant)


async def get_in_scope(*, session: AsyncSession, scope: TenantScope, for_update: bool = False) -> Tenant | None:
    """The scope's own tenant row; `for_update` locks it until the transaction ends (PostgreSQL).

    The lock is FOR NO KEY UPDATE: it serialises writers of the row, which never change its key, without
    blocking inserts of rows that reference it (their foreign-key checks take key-share locks on it). A plain
    FOR UPDATE deadlocked with a refresh that held a session this transaction then needed.
    """
    query = select(Tenant).where(Tenant.id == scope.tenant_id)
    return await session.scalar(query.with_for_update(key_share=True) if for_update else query)
