"""Who a request acts as, once its credential is verified."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from qortex.core.database import TenantScope
from qortex.security.rbac import Permission, Role, grants


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: uuid.UUID
    role: Role
    credential_id: uuid.UUID
    credential_kind: str

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.tenant_id)

    def can(self, permission: Permission) -> bool:
        return grants(self.role, permission)
