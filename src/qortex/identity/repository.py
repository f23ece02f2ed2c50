"""Queries on API keys. Every function but the credential lookup takes the tenant scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import TenantScope, allow_lookup
from qortex.identity.models import ApiKey


async def find_for_authentication(*, session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    """The presented key's own row: the only read that precedes knowing the tenant.

    Its caller verifies the secret before the row's tenant is used for anything.
    """
    await allow_lookup(session, "api_key", str(key_id))
    return await session.scalar(select(ApiKey).where(ApiKey.id == key_id))


async def get(
    *, session: AsyncSession, scope: TenantScope, key_id: uuid.UUID, for_update: bool = False
) -> ApiKey | None:
    query = select(ApiKey).where(ApiKey.tenant_id == scope.tenant_id, ApiKey.id == key_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def revoke_minted_for(
    *, session: AsyncSession, scope: TenantScope, user_id: uuid.UUID, at: datetime
) -> list[uuid.UUID]:
    """Revokes the live keys minted for a person; returns their ids."""
    ids = list(
        await session.scalars(
            select(ApiKey.id).where(
                ApiKey.tenant_id == scope.tenant_id, ApiKey.minted_for_user_id == user_id, ApiKey.revoked_at.is_(None)
            )
        )
    )
    if ids:
        await session.execute(
            update(ApiKey).where(ApiKey.tenant_id == scope.tenant_id, ApiKey.id.in_(ids)).values(revoked_at=at)
        )
    return ids


async def list_keys(
    *, session: AsyncSession, scope: TenantScope, include_revoked: bool, limit: int, after: uuid.UUID | None
) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.tenant_id == scope.tenant_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    if after is not None:
        query = query.where(ApiKey.id > after)
    return (await session.scalars(query.order_by(ApiKey.id).limit(limit))).all()
