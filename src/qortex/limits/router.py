"""`GET /v1/tenant/usage`: the caller's tenant's limits and how much of each is used."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from qortex.limits.schemas import TenantUsage
from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.web.dependencies import Services, require

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])

CanReadUsage = Annotated[Principal, Depends(require(Permission.USAGE_READ))]


@router.get("/usage", response_model=TenantUsage)
async def get_usage(principal: CanReadUsage, services: Services) -> TenantUsage:
    """Each limit of the tenant's plan (with its overrides): the limit, its use, and when it frees up."""
    return await services.limits.usage(principal)
