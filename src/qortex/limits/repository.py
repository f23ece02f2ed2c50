"""The one query limits need: how many encoded payload bytes a tenant has stored."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.core.database import TenantScope
from qortex.predictions.models import Prediction, PredictionInput


async def stored_bytes(*, session: AsyncSession, scope: TenantScope) -> int:
    """Encoded sizes of the tenant's prediction inputs and prediction details (what grows with use)."""
    inputs = select(func.coalesce(func.sum(func.length(PredictionInput.values_payload)), 0)).where(
        PredictionInput.tenant_id == scope.tenant_id
    )
    details = select(func.coalesce(func.sum(func.length(Prediction.details_payload)), 0)).where(
        Prediction.tenant_id == scope.tenant_id
    )
    return int(await session.scalar(inputs) or 0) + int(await session.scalar(details) or 0)
