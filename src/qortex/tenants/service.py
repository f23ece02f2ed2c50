"""Creating and listing tenants (an operator's task: the CLI, never a tenant's credential)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from qortex.core.database import Database
from qortex.core.errors import Conflict, InvalidInput
from qortex.identity import service as identity_service
from qortex.models import service as model_service
from qortex.security.rbac import Role
from qortex.tenants import repository
from qortex.tenants.models import Tenant

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


async def create(*, db: Database, name: str, plan: str = "standard") -> Tenant:
    """Creates a tenant and registers the shipped default model for it."""
    if not _NAME.match(name):
        raise InvalidInput(
            "tenant name must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit"
        )
    async with db.system_session(write=True) as session:
        if await repository.get_by_name(session=session, name=name) is not None:
            raise Conflict(f"tenant {name!r} already exists")
        tenant = Tenant(name=name, plan=plan)
        session.add(tenant)
    await model_service.register_builtin_models(db=db, scope=tenant.scope)
    return tenant


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
    tenant = await create(db=db, name=name)
    answer = await identity_service.create_key(db=db, scope=tenant.scope, name="first owner key", role=Role.OWNER)
    return tenant, str(answer.body["key"])
