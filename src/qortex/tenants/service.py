"""Creating and listing tenants (an operator's task: the CLI), and a tenant's own security settings."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.audit import service as audit_service
from qortex.audit.service import AuditRecord
from qortex.core.database import Database, TenantScope
from qortex.core.errors import Conflict, InvalidInput, NotFound
from qortex.core.ids import new_id
from qortex.core.payload import payload_codec
from qortex.identity import actors
from qortex.identity import service as identity_service
from qortex.limits.plans import PLANS
from qortex.models import service as model_service
from qortex.models.runtime import ModelRuntime
from qortex.security import signing
from qortex.security.allowlist import contains, parse_networks
from qortex.security.principal import Principal
from qortex.tenants import repository
from qortex.tenants.models import Tenant
from qortex.tenants.policy import TenantPolicyCache, signing_secret_context

T = TypeVar("T")

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


async def create(*, db: Database, name: str, plan: str = "standard") -> Tenant:
    """Creates a tenant and registers the shipped default model for it."""
    tenant, _ = await _create(db=db, name=name, plan=plan, then=_nothing_more)
    return tenant


async def _nothing_more(session: AsyncSession, scope: TenantScope) -> None:
    return None


async def _create(
    *, db: Database, name: str, plan: str, then: Callable[[AsyncSession, TenantScope], Awaitable[T]]
) -> tuple[Tenant, T]:
    """Creates a tenant, its default model and whatever `then` adds, in one transaction."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            "tenant name must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit"
        )
    if plan not in PLANS:
        raise InvalidInput(f"unknown plan {plan!r}; known: {', '.join(PLANS)}")
    predictor = ModelRuntime().builtin_default()
    tenant = Tenant(id=new_id(), name=name, plan=plan)
    # The first event of the tenant's audit chain: an operator's act on the host (the CLI).
    record = AuditRecord(
        action="tenant.create",
        actor_kind="operator",
        target_type="tenant",
        target_id=str(tenant.id),
        details={"name": name, "plan": plan},
    )
    try:
        async with db.tenant_session(tenant.scope, write=True) as session:
            repository.add(session=session, scope=tenant.scope, tenant=tenant)
            await session.flush()
            await audit_service.append(session=session, scope=tenant.scope, records=[record])
            # In the tenant's own transaction: a tenant committed without its model could not predict.
            model_service.add_builtin_model(session=session, scope=tenant.scope, predictor=predictor)
            added = await then(session, tenant.scope)
    except IntegrityError:
        raise Conflict(f"tenant {name!r} already exists") from None
    return tenant, added


async def list_all(*, db: Database) -> Sequence[Tenant]:
    async with db.system_session() as session:
        return await repository.list_all(session=session)


async def get_by_name(*, db: Database, name: str) -> Tenant | None:
    async with db.system_session() as session:
        return await repository.get_by_name(session=session, name=name)


async def ensure_first_tenant(*, db: Database, name: str = "default") -> tuple[Tenant, str] | None:
    """On a fresh installation, creates the first tenant and an owner key; returns the key's plaintext once."""
    if await list_all(db=db):
        return None
    try:
        # With its owner key, in one transaction: a tenant committed without one (a crash between the two)
        # would leave an installation that says it is initialised, yet no key was ever printed.
        return await _create(
            db=db,
            name=name,
            plan="standard",
            then=lambda session, scope: identity_service.add_first_owner_key(session=session, scope=scope),
        )
    except Conflict:
        # Another process (a replica starting at the same moment) created it after our check: it holds the key.
        return None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks for a change, as the audit chain records it (a pseudonymous credential id)."""

    actor_kind: str
    actor_id: str | None
    request_id: str | None
    client_ip: str | None

    def record(self, action: str, tenant_id: uuid.UUID, details: dict[str, Any]) -> AuditRecord:
        return AuditRecord(
            action=action,
            actor_kind=self.actor_kind,
            actor_id=self.actor_id,
            target_type="tenant",
            target_id=str(tenant_id),
            request_id=self.request_id,
            client_ip=self.client_ip,
            details=details,
        )


async def set_active(*, db: Database, scope: TenantScope, active: bool) -> bool:
    """Suspends (False) or resumes (True) a tenant, audited in the same transaction; returns whether it changed.

    An operator's act (the CLI). A suspended tenant's keys and sessions are refused, by every process
    within QORTEX_TENANT_POLICY_CACHE_SECONDS; its data stays.
    """
    async with db.tenant_session(scope, write=True) as session:
        tenant = await repository.get_in_scope(session=session, scope=scope, for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        if tenant.active == active:
            return False
        tenant.active = active
        record = AuditRecord(
            action="tenant.resume" if active else "tenant.suspend",
            actor_kind="operator",
            target_type="tenant",
            target_id=str(tenant.id),
        )
        await audit_service.append(session=session, scope=scope, records=[record])
    return True


async def get_configuration(*, db: Database, scope: TenantScope) -> Tenant:
    """Returns the scope's tenant with its security settings."""
    async with db.tenant_session(scope) as session:
        tenant = await repository.get_in_scope(session=session, scope=scope)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


async def update_security(
    *,
    db: Database,
    scope: TenantScope,
    caller: Caller,
    actor: Principal | None,
    policies: TenantPolicyCache | None,
    ip_allowlist: list[str] | None = None,
    require_signed_requests: bool | None = None,
    confirm_lockout: bool = False,
) -> Tenant:
    """Changes the allow-list and signing requirement (None leaves one as is), audited in the same transaction.

    An allow-list that leaves out the caller's own address is refused unless `confirm_lockout` is set,
    so nobody locks themselves out by a typo. `policies`: this process's cache, if it has one (the CLI has
    none; servers see the change within their cache delay). `actor`'s credential is checked again in the
    write transaction (None: the operator), as for every change that outlives a revoked credential.
    """
    if ip_allowlist and not confirm_lockout and not contains(parse_networks(ip_allowlist), caller.client_ip):
        raise InvalidInput(
            f"the allow-list does not contain your current address ({caller.client_ip or 'unknown'}), so this"
            ' credential would be refused from here on; add it, or send "confirm_lockout": true'
        )
    async with db.tenant_session(scope, write=True) as session:
        await actors.confirm_actor(session=session, scope=scope, actor=actor)
        tenant = await repository.get_in_scope(session=session, scope=scope, for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        changes: dict[str, Any] = {}
        if ip_allowlist is not None and ip_allowlist != list(tenant.ip_allowlist or []):
            changes["ip_allowlist"] = {"from": list(tenant.ip_allowlist or []), "to": ip_allowlist}
            tenant.ip_allowlist = ip_allowlist
        if require_signed_requests is not None and require_signed_requests != tenant.require_signed_requests:
            if require_signed_requests and tenant.signing_secret_payload is None:
                raise InvalidInput(
                    "signed requests cannot be required before a signing secret exists;"
                    " create one with POST /v1/tenant/signing-secret first"
                )
            changes["require_signed_requests"] = {"from": tenant.require_signed_requests, "to": require_signed_requests}
            tenant.require_signed_requests = require_signed_requests
        if changes:
            if "ip_allowlist" in changes:
                changes["confirm_lockout"] = confirm_lockout
            record = caller.record("tenant.security_changed", tenant.id, changes)
            await audit_service.append(session=session, scope=scope, records=[record])
    if policies is not None:
        policies.forget(scope.tenant_id)
    return tenant


OPERATOR = Caller(actor_kind="operator", actor_id=None, request_id=None, client_ip=None)


async def reset_request_policy(*, db: Database, scope: TenantScope) -> Tenant:
    """An operator's way back into a locked-out tenant (the CLI): empties the allow-list and stops requiring
    signed requests (the signing secret stays), audited as `tenant.security_changed` by the operator."""
    return await update_security(
        db=db,
        scope=scope,
        caller=OPERATOR,
        actor=None,
        policies=None,
        ip_allowlist=[],
        require_signed_requests=False,
    )


async def rotate_signing_secret(
    *, db: Database, scope: TenantScope, caller: Caller, actor: Principal, policies: TenantPolicyCache
) -> str:
    """Replaces the tenant's signing secret and returns the new one (the only time it is shown).

    Shown only to a credential still live in the write transaction: an ended session must not obtain it.
    """
    secret = signing.generate_secret()
    async with db.tenant_session(scope, write=True) as session:
        await actors.confirm_actor(session=session, scope=scope, actor=actor)
        tenant = await repository.get_in_scope(session=session, scope=scope, for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        replaced = tenant.signing_secret_payload is not None
        tenant.signing_secret_payload = payload_codec().encode(secret, signing_secret_context(tenant.id))
        record = caller.record("tenant.signing_secret_rotated", tenant.id, {"replaced_previous": replaced})
        await audit_service.append(session=session, scope=scope, records=[record])
    policies.forget(scope.tenant_id)
    return secret
