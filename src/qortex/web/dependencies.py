"""FastAPI dependencies: the app's services, the authenticated principal, the permission a route needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from qortex.audit.service import AuditRecord, AuditWriter
from qortex.core.config import Settings
from qortex.core.database import Database
from qortex.core.errors import Forbidden, Unauthenticated
from qortex.core.group_commit import GroupCommitter
from qortex.core.housekeeping import Housekeeping
from qortex.identity import service as identity_service
from qortex.identity.auth_service import AuthServices
from qortex.identity.service import ApiKeyCache
from qortex.limits.service import RateLimits
from qortex.models.runtime import ModelRuntime
from qortex.predictions.service import PredictionServices
from qortex.resilience.batching import EngineBatcher
from qortex.security.api_keys import PREFIX as API_KEY_PREFIX
from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.web.client_ip import client_ip
from qortex.web.middleware import request_method
from qortex.web.problems import on_qortex_error
from qortex.web.request_policy import RequestPolicy

PERMISSION_ATTRIBUTE = "qortex_permission"


@dataclass(slots=True)
class AppServices:
    """Everything a request may need, built once in the app's lifespan."""

    settings: Settings
    db: Database
    runtime: ModelRuntime
    batcher: EngineBatcher
    key_cache: ApiKeyCache
    audit: AuditWriter
    committer: GroupCommitter
    housekeeping: Housekeeping
    limits: RateLimits
    request_policy: RequestPolicy
    auth: AuthServices
    # --- further services are added above this line

    @property
    def predictions(self) -> PredictionServices:
        return PredictionServices(db=self.db, runtime=self.runtime, batcher=self.batcher, committer=self.committer)


# Async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker thread, a hop on every request.
async def get_services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


Services = Annotated[AppServices, Depends(get_services)]


# Read through FastAPI's scheme so that the OpenAPI document declares it, on exactly the routes that authenticate.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="A person's access token (a JWT from /v1/auth/login) or an API key, `qx_<key id>_<secret>`",
    auto_error=False,
)


async def authenticate(
    request: Request,
    services: Services,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Principal:
    # Which copy of a repeated header counts depends on who reads it (Starlette takes the first): a proxy that
    # checks or logs the last one would see another credential than the one this request acts as.
    if len(request.headers.getlist("authorization")) > 1:
        raise Unauthenticated("Authorization given more than once; send one credential")
    if bearer is None:  # no header, another scheme, or no credential after the scheme
        if "authorization" not in request.headers:
            raise Unauthenticated()
        raise Unauthenticated("use 'Authorization: Bearer <credential>'")
    token = bearer.credentials
    if token.startswith(API_KEY_PREFIX):
        principal = await identity_service.authenticate(db=services.db, cache=services.key_cache, token=token)
    else:
        # Anything else must be a person's access token: verified in memory, no database round trip.
        principal = services.auth.authenticate(token)
    request.state.principal = principal
    # --- checks that need the principal (allow-lists, signatures, limits) run here, in this order
    await services.request_policy.enforce(request, principal)
    await services.limits.admit(request, principal)
    return principal


async def record_denial(
    request: Request, audit: AuditWriter, principal: Principal, *, target_type: str, target_id: str, reason: str
) -> None:
    """Records a 403 in the caller's tenant: who (a person by user id, as everywhere), what, from where."""
    denied = AuditRecord(
        action="permission_denied",
        outcome="denied",
        actor_kind=principal.actor_kind,
        actor_id=principal.actor_id,
        target_type=target_type,
        target_id=target_id,
        request_id=getattr(request.state, "request_id", None),
        client_ip=client_ip(request),
        details={
            "role": principal.role.value,
            "method": request_method(request.scope),
            "path": request.url.path,
            "reason": reason,
        },
    )
    await audit.write_refusal(principal.scope, denied)


async def on_forbidden(request: Request, error: Exception) -> Response:
    """A refusal raised past the route's permission check (a role it may not grant, a change to oneself)
    is recorded like a missing permission: such attempts are what an audit looks for."""
    assert isinstance(error, Forbidden)
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal) and not error.audited:
        services: AppServices = request.app.state.services
        await record_denial(
            request, services.audit, principal, target_type="request", target_id=request.url.path, reason=error.detail
        )
    return await on_qortex_error(request, error)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks one permission; routes declare it."""

    async def check(
        principal: Annotated[Principal, Depends(authenticate)], request: Request, services: Services
    ) -> Principal:
        if not principal.can(permission):
            detail = f"role {principal.role.value!r} lacks permission {permission.value!r}"
            await record_denial(
                request, services.audit, principal, target_type="permission", target_id=permission.value, reason=detail
            )
            raise Forbidden(detail).recorded()
        return principal

    setattr(check, PERMISSION_ATTRIBUTE, permission)
    return check
