"""Queries on the audit chain, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.audit.chain import GENESIS
from qortex.audit.models import AuditChainHead, AuditEvent
from qortex.core.database import TenantScope


async def lock_head(*, session: AsyncSession, scope: TenantScope) -> AuditChainHead:
    """The chain head (created at the genesis hash if new), locked until the transaction ends.

    Creating it with ON CONFLICT DO NOTHING first means two first writers never both insert a head.
    """
    dialect = (await session.connection()).dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(AuditChainHead)
        .values(tenant_id=scope.tenant_id, seq=0, hash=GENESIS)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    head = await session.scalar(
        select(AuditChainHead).where(AuditChainHead.tenant_id == scope.tenant_id).with_for_update()
    )
    if head is None:
        raise RuntimeError("the audit chain head vanished inside its own transaction")
    return head


async def get_head(*, session: AsyncSession, scope: TenantScope) -> AuditChainHead | None:
    return await session.scalar(select(AuditChainHead).where(AuditChainHead.tenant_id == scope.tenant_id))


def add(*, session: AsyncSession, scope: TenantScope, rows: Sequence[AuditEvent]) -> None:
    for row in rows:
        if row.tenant_id != scope.tenant_id:
            raise ValueError("an audit event can only be stored in its own tenant's chain")
    session.add_all(rows)


async def iterate(*, session: AsyncSession, scope: TenantScope, batch: int = 1000) -> AsyncIterator[AuditEvent]:
    """Every event of the tenant in chain order."""
    result = await session.stream_scalars(
        select(AuditEvent)
        .where(AuditEvent.tenant_id == scope.tenant_id)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=batch)
    )
    async for event in result:
        yield event


async def list_events(
    *, session: AsyncSession, scope: TenantScope, limit: int, before: uuid.UUID | None, action: str | None
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.tenant_id == scope.tenant_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if before is not None:
        # Chain order, which the hashes cover (an event's id is not hashed, so ordering by it could be
        # rearranged unnoticed); the cursor names the last event seen.
        seen = select(AuditEvent.seq).where(AuditEvent.tenant_id == scope.tenant_id, AuditEvent.id == before)
        query = query.where(AuditEvent.seq < seen.scalar_subquery())
    return (await session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit))).all()
