"""HTTP routes of models: the models a tenant can use, with their evaluation metrics."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from qortex.core.pagination import decode_cursor
from qortex.models import service
from qortex.models.schemas import ModelOut, ModelPage
from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.web.dependencies import Services, require
from qortex.web.pagination import PageCursor, PageLimit
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=StrictJSONRoute)

CanRead = Annotated[Principal, Depends(require(Permission.MODELS_READ))]


@router.get("", response_model=ModelPage)
async def list_models(
    principal: CanRead,
    services: Services,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> ModelPage:
    page = await service.list_models(db=services.db, scope=principal.scope, limit=limit, after=decode_cursor(cursor))
    return ModelPage(items=[ModelOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor)


@router.get("/{model_id}", response_model=ModelOut)
async def get_model(model_id: uuid.UUID, principal: CanRead, services: Services) -> ModelOut:
    return ModelOut.model_validate(await service.get_model(db=services.db, scope=principal.scope, model_id=model_id))
