"""Queries on the models table, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import TenantScope
from qortex.models.models import Model


async def get(*, session: AsyncSession, scope: TenantScope, model_id: uuid.UUID) -> Model | None:
    return await session.scalar(select(Model).where(Model.tenant_id == scope.tenant_id, Model.id == model_id))


async def get_default(*, session: AsyncSession, scope: TenantScope) -> Model | None:
    return await session.scalar(
        select(Model).where(Model.tenant_id == scope.tenant_id, Model.is_default.is_(True)).limit(1)
    )


async def get_latest_by_name(*, session: AsyncSession, scope: TenantScope, name: str) -> Model | None:
    return await session.scalar(
        select(Model)
        .where(Model.tenant_id == scope.tenant_id, Model.name == name)
        .order_by(Model.created_at.desc(), Model.id.desc())
        .limit(1)
    )


async def list_versions(*, session: AsyncSession, scope: TenantScope, name: str) -> Sequence[Model]:
    """Every version of a model, newest first."""
    query = select(Model).where(Model.tenant_id == scope.tenant_id, Model.name == name)
    return (await session.scalars(query.order_by(Model.created_at.desc(), Model.id.desc()))).all()


async def get_version(*, session: AsyncSession, scope: TenantScope, name: str, version: str) -> Model | None:
    return await session.scalar(
        select(Model).where(Model.tenant_id == scope.tenant_id, Model.name == name, Model.version == version)
    )


async def list_models(
    *, session: AsyncSession, scope: TenantScope, limit: int, after: uuid.UUID | None
) -> Sequence[Model]:
    query = select(Model).where(Model.tenant_id == scope.tenant_id)
    if after is not None:
        query = query.where(Model.id > after)
    return (await session.scalars(query.order_by(Model.id).limit(limit))).all()


async def clear_default(*, session: AsyncSession, scope: TenantScope) -> None:
    await session.execute(
        update(Model).where(Model.tenant_id == scope.tenant_id, Model.is_default.is_(True)).values(is_default=False)
    )


def add(*, session: AsyncSession, scope: TenantScope, model: Model) -> None:
    if model.tenant_id != scope.tenant_id:
        raise ValueError("a model can only be added to its own tenant")
    session.add(model)
