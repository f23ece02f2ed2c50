"""Queries on prediction inputs and predictions, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import TenantScope
from qortex.predictions.models import Prediction


@dataclass(frozen=True, slots=True)
class PredictionFilter:
    source: str | None = None
    direction: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def get(*, session: AsyncSession, scope: TenantScope, prediction_id: uuid.UUID) -> Prediction | None:
    return await session.scalar(
        select(Prediction).where(Prediction.tenant_id == scope.tenant_id, Prediction.id == prediction_id)
    )


async def list_predictions(
    *,
    session: AsyncSession,
    scope: TenantScope,
    where: PredictionFilter,
    limit: int,
    before: uuid.UUID | None,
) -> Sequence[Prediction]:
    """Newest first; `before` is the last id of the previous page."""
    query = select(Prediction).where(Prediction.tenant_id == scope.tenant_id)
    if where.source is not None:
        query = query.where(Prediction.source == where.source)
    if where.direction is not None:
        query = query.where(Prediction.direction == where.direction)
    if where.created_after is not None:
        query = query.where(Prediction.created_at > where.created_after)
    if where.created_before is not None:
        query = query.where(Prediction.created_at < where.created_before)
    if before is not None:
        query = query.where(Prediction.id < before)
    return (await session.scalars(query.order_by(Prediction.id.desc()).limit(limit))).all()
