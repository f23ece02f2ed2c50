"""Who a request acts as, once its credential is verified."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from qortex.core.database import TenantScope
from qortex.security.rbac import Permission, Role, grants


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: uuid.UUID
    role: Role
    credential_id: uuid.UUID
    credential_kind: str
    # The person behind a session credential; None for API keys.
    user_id: uuid.UUID | None = None
    # For an API key minted from a person's session (or by a key minted so): that person.
    minted_for_user_id: uuid.UUID | None = None
    # When an API key credential stops working; None for one that never does, and for sessions: they stand for
    # a person, and the keys they mint are revoked with that person.
    expires_at: datetime | None = None

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.tenant_id)

    @property
    def actor_kind(self) -> str:
        """How audit records name this principal: "user" or "api_key"."""
        return "user" if self.user_id is not None else self.credential_kind

    @property
    def actor_id(self) -> str:
        """A pseudonymous id for audit records: the user's id or the key's id, never a name."""
        return str(self.user_id or self.credential_id)

    @property
    def person_id(self) -> uuid.UUID | None:
        """The person this principal acts for: a session's user, or the person a key was minted for."""
        return self.user_id or self.minted_for_user_id

    def can(self, permission: Permission) -> bool:
        return grants(self.role, permission)
