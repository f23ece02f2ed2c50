"""HTTP routes of a tenant's people: create, list, read, change, deactivate (permission users:manage).

Only owners and admins hold users:manage; they see every field of their tenant's users except the
password hash, which no response carries. Everyone else sees only themselves, at /v1/auth/me.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from qortex.core.idempotency import IdempotentRequest
from qortex.core.pagination import decode_cursor
from qortex.identity import users
from qortex.identity.auth_router import origin_of
from qortex.identity.schemas import UserCreate, UserOut, UserPage, UserUpdate
from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.web.dependencies import Services, require
from qortex.web.idempotency import refuse_a_repeated_key
from qortex.web.location import LOCATION_HEADER, location_of
from qortex.web.openapi import problem_responses
from qortex.web.pagination import PageCursor, PageLimit
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/users", tags=["users"], route_class=StrictJSONRoute)

CanManage = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]


def _user_idempotency_key(header: str | None, body: UserCreate) -> IdempotentRequest | None:
    if header is None:
        return None
    # The fingerprint leaves the password out: a fast hash of a body holding a password would be
    # an unsalted password hash in the database. A retry with another password replays the first answer.
    fingerprint = body.model_dump_json(exclude={"password"}).encode()
    return IdempotentRequest.from_header(header, operation="POST /v1/users", body=fingerprint)


# 409: the username or email is taken (in any tenant).
@router.post("", status_code=201, response_model=UserOut, responses=problem_responses(409))
async def create_user(
    body: UserCreate,
    principal: CanManage,
    services: Services,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(description="Replays of the same key and body return the first answer", max_length=255),
    ] = None,
) -> UserOut:
    """Creates a person in the caller's tenant with a role the caller could grant; honours Idempotency-Key."""
    refuse_a_repeated_key(request)
    key = _user_idempotency_key(idempotency_key, body)
    answer = await users.create_user(
        db=services.db,
        passwords=services.auth.passwords,
        scope=principal.scope,
        username=body.username,
        email=body.email,
        display_name=body.display_name,
        password=body.password.get_secret_value(),
        role=body.role,
        actor=principal,
        request=key,
        origin=origin_of(request),
    )
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers[LOCATION_HEADER] = location_of(request, "get_user", user_id=answer.body["id"])
    return UserOut.model_validate(answer.body)


@router.get("", response_model=UserPage)
async def list_users(
    principal: CanManage,
    services: Services,
    include_inactive: bool = False,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> UserPage:
    page = await users.list_users(
        db=services.db,
        scope=principal.scope,
        include_inactive=include_inactive,
        limit=limit,
        after=decode_cursor(cursor),
    )
    return UserPage(items=[UserOut.model_validate(u) for u in page.items], next_cursor=page.next_cursor)


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, principal: CanManage, services: Services) -> UserOut:
    return UserOut.model_validate(await users.get_user(db=services.db, scope=principal.scope, user_id=user_id))


@router.patch("/{user_id}", response_model=UserOut, responses=problem_responses(409))
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, principal: CanManage, services: Services, request: Request
) -> UserOut:
    """Changes email, display name, role, password (a reset) or active; the last three end the user's sessions."""
    user = await users.update_user(
        db=services.db,
        revocations=services.auth.revocations,
        passwords=services.auth.passwords,
        scope=principal.scope,
        user_id=user_id,
        changes=users.UserChanges(
            email=body.email,
            display_name=body.display_name,
            role=body.role,
            password=body.password.get_secret_value() if body.password is not None else None,
            active=body.active,
        ),
        actor=principal,
        origin=origin_of(request),
        key_cache=services.key_cache,
    )
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=204)
async def deactivate_user(user_id: uuid.UUID, principal: CanManage, services: Services, request: Request) -> Response:
    """Deactivates a person (kept for the audit trail): they can no longer log in and their sessions end."""
    await users.update_user(
        db=services.db,
        revocations=services.auth.revocations,
        passwords=services.auth.passwords,
        scope=principal.scope,
        user_id=user_id,
        changes=users.UserChanges(active=False),
        actor=principal,
        origin=origin_of(request),
        key_cache=services.key_cache,
    )
    return Response(status_code=204)
