"""HTTP routes of API keys: create (shown once), list, revoke."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from qortex.core.errors import Forbidden
from qortex.core.idempotency import IdempotentRequest
from qortex.core.pagination import decode_cursor
from qortex.identity import service
from qortex.identity.auth_router import origin_of
from qortex.identity.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyPage
from qortex.security.principal import Principal
from qortex.security.rbac import Permission, can_grant
from qortex.web.dependencies import Services, require
from qortex.web.idempotency import idempotency_key
from qortex.web.location import LOCATION_HEADER, location_of
from qortex.web.pagination import PageCursor, PageLimit
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"], route_class=StrictJSONRoute)

CanManage = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate,
    principal: CanManage,
    services: Services,
    key: Annotated[IdempotentRequest | None, Depends(idempotency_key)],
    response: Response,
    request: Request,
) -> ApiKeyCreated:
    """Creates a key; the response holds the secret, which is never shown again."""
    if not can_grant(principal.role, body.role):
        raise Forbidden(f"role {principal.role.value!r} may not create keys with role {body.role.value!r}")
    # A key cannot outlive the key that creates it: one given for a week could otherwise leave behind one
    # that works for ever.
    own_expiry = principal.expires_at
    if own_expiry is not None and (body.expires_at is None or body.expires_at > own_expiry):
        raise Forbidden(f"this key expires at {own_expiry.isoformat()}; a key it creates must set expires_at no later")
    answer = await service.create_key(
        db=services.db,
        scope=principal.scope,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
        request=key,
        actor=principal,
        origin=origin_of(request),
    )
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers[LOCATION_HEADER] = location_of(request, "get_api_key", key_id=answer.body["id"])
    return ApiKeyCreated.model_validate(answer.body)


@router.get("", response_model=ApiKeyPage)
async def list_api_keys(
    principal: CanManage,
    services: Services,
    include_revoked: bool = False,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> ApiKeyPage:
    page = await service.list_keys(
        db=services.db,
        scope=principal.scope,
        include_revoked=include_revoked,
        limit=limit,
        after=decode_cursor(cursor),
    )
    return ApiKeyPage(items=[ApiKeyOut.model_validate(k) for k in page.items], next_cursor=page.next_cursor)


@router.get("/{key_id}", response_model=ApiKeyOut)
async def get_api_key(key_id: uuid.UUID, principal: CanManage, services: Services) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await service.get_key(db=services.db, scope=principal.scope, key_id=key_id))


@router.delete("/{key_id}", status_code=204)
async def revoke_api_key(key_id: uuid.UUID, principal: CanManage, services: Services, request: Request) -> Response:
    """Revokes a key: refused at once here, and by every other process within 5 seconds."""
    await service.revoke_key(
        db=services.db,
        scope=principal.scope,
        key_id=key_id,
        cache=services.key_cache,
        actor=principal,
        origin=origin_of(request),
    )
    return Response(status_code=204)
