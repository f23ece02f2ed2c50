"""HTTP routes of people's sessions: login and refresh (public), logout, me and password change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from qortex.audit.service import Origin
from qortex.identity import auth_service, service
from qortex.identity import users as user_service
from qortex.identity.schemas import (
    ApiKeyOut,
    LoginRequest,
    Me,
    MeTenant,
    MeUser,
    PasswordChange,
    RefreshRequest,
    TokenPair,
)
from qortex.security.principal import Principal
from qortex.security.rbac import ROLE_PERMISSIONS, Permission
from qortex.web.dependencies import Services, require
from qortex.web.openapi import problem_responses
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=StrictJSONRoute)

# Any valid credential: every role holds self:manage.
Authenticated = Annotated[Principal, Depends(require(Permission.SELF_MANAGE))]

# Public routes, but the tenant's allow-list applies once the account is known, and failed logins are throttled.
_REFUSED: dict[int | str, dict[str, Any]] = problem_responses(401, 403, 429)
_REFUSED[401] = {
    **_REFUSED[401],
    "description": "Unknown account, wrong password or inactive account: one answer for all",
}


def origin_of(request: Request) -> Origin:
    """The request id and the client address (as resolved by the client-address middleware, if it ran)."""
    state = request.scope.get("state", {})
    ip = state.get("client_ip", request.client.host if request.client else None)
    request_id = state.get("request_id")
    return Origin(request_id=str(request_id) if request_id else None, client_ip=str(ip) if ip else None)


def _pair(tokens: auth_service.Tokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        refresh_token_expires_at=tokens.refresh_token_expires_at,
    )


@router.post("/login", response_model=TokenPair, responses=_REFUSED)
async def login(body: LoginRequest, request: Request, services: Services, response: Response) -> TokenPair:
    """Username or email and password: answers an access token (15 minutes) and a refresh token (30 days)."""
    tokens = await auth_service.login(
        db=services.db,
        auth=services.auth,
        login_name=body.username,
        password=body.password.get_secret_value(),
        origin=origin_of(request),
    )
    response.headers["Cache-Control"] = "no-store"
    return _pair(tokens)


@router.post("/refresh", response_model=TokenPair, responses=problem_responses(401, 403))
async def refresh(body: RefreshRequest, request: Request, services: Services, response: Response) -> TokenPair:
    """Trades a refresh token for new tokens; each refresh token works once, and a reused one ends the session."""
    tokens = await auth_service.refresh(
        db=services.db,
        auth=services.auth,
        refresh_token=body.refresh_token.get_secret_value(),
        origin=origin_of(request),
        key_cache=services.key_cache,
    )
    response.headers["Cache-Control"] = "no-store"
    return _pair(tokens)


@router.post("/logout", status_code=204)
async def logout(principal: Authenticated, request: Request, services: Services) -> Response:
    """Ends the caller's session on every server within a second (with Redis) or five (without)."""
    await auth_service.logout(db=services.db, auth=services.auth, principal=principal, origin=origin_of(request))
    return Response(status_code=204)


@router.post("/password", status_code=204)
async def change_password(
    body: PasswordChange, principal: Authenticated, request: Request, services: Services
) -> Response:
    """Changes the caller's own password (the current one is required); every session of theirs ends."""
    await auth_service.change_own_password(
        db=services.db,
        auth=services.auth,
        principal=principal,
        current=body.current_password.get_secret_value(),
        new=body.new_password.get_secret_value(),
        origin=origin_of(request),
        key_cache=services.key_cache,
    )
    return Response(status_code=204)


@router.get("/me", response_model=Me)
async def get_me(principal: Authenticated, services: Services) -> Me:
    """Who the credential acts as: the person or the key, its tenant, role and permissions."""
    tenant = await auth_service.tenant_of(db=services.db, scope=principal.scope)
    result = Me(
        kind="user" if principal.user_id is not None else "api_key",
        tenant=MeTenant(id=tenant.id, name=tenant.name),
        role=principal.role,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[principal.role]),
    )
    if principal.user_id is not None:
        user = await user_service.get_user(db=services.db, scope=principal.scope, user_id=principal.user_id)
        result.session_id = principal.credential_id
        result.user = MeUser.model_validate(user)
    else:
        key = await service.get_key(db=services.db, scope=principal.scope, key_id=principal.credential_id)
        result.api_key = ApiKeyOut.model_validate(key)
    return result
