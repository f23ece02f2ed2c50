"""HTTP routes of the caller's own tenant: its security settings and its request-signing secret."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from qortex.security.principal import Principal
from qortex.security.rbac import Permission
from qortex.tenants import service
from qortex.tenants.models import Tenant
from qortex.tenants.schemas import SigningSecretOut, TenantOut, TenantUpdate
from qortex.web.client_ip import client_ip
from qortex.web.dependencies import Services, require
from qortex.web.problems import request_id_of
from qortex.web.routing import StrictJSONRoute

router = APIRouter(prefix="/v1/tenant", tags=["tenant"], route_class=StrictJSONRoute)

CanConfigure = Annotated[Principal, Depends(require(Permission.TENANT_CONFIGURE))]


def _out(tenant: Tenant) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        plan=tenant.plan,
        created_at=tenant.created_at,
        ip_allowlist=list(tenant.ip_allowlist or []),
        require_signed_requests=tenant.require_signed_requests,
        has_signing_secret=tenant.signing_secret_payload is not None,
    )


def _caller(request: Request, principal: Principal) -> service.Caller:
    return service.Caller(
        actor_kind=principal.actor_kind,
        actor_id=principal.actor_id,
        request_id=request_id_of(request),
        client_ip=client_ip(request),
    )


@router.get("", response_model=TenantOut)
async def get_tenant(principal: CanConfigure, services: Services) -> TenantOut:
    """The caller's tenant and its security settings."""
    return _out(await service.get_configuration(db=services.db, scope=principal.scope))


@router.patch("", response_model=TenantOut)
async def update_tenant(body: TenantUpdate, request: Request, principal: CanConfigure, services: Services) -> TenantOut:
    """Changes the IP allow-list and the signing requirement; other replicas apply it within the policy cache delay.

    An allow-list that does not contain the caller's own address is refused (422) unless
    `confirm_lockout` is true.
    """
    tenant = await service.update_security(
        db=services.db,
        scope=principal.scope,
        caller=_caller(request, principal),
        actor=principal,
        policies=services.request_policy.policies,
        ip_allowlist=body.ip_allowlist,
        require_signed_requests=body.require_signed_requests,
        confirm_lockout=body.confirm_lockout,
    )
    return _out(tenant)


@router.post("/signing-secret", status_code=201, response_model=SigningSecretOut)
async def rotate_signing_secret(request: Request, principal: CanConfigure, services: Services) -> SigningSecretOut:
    """Creates a new request-signing secret, shown this once; the previous one stops working."""
    secret = await service.rotate_signing_secret(
        db=services.db,
        scope=principal.scope,
        caller=_caller(request, principal),
        actor=principal,
        policies=services.request_policy.policies,
    )
    return SigningSecretOut(signing_secret=secret)
