"""Roles and the permissions they grant: the one table every route's authorisation reads."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"
    SERVICE = "service"
    AUDITOR = "auditor"


class Permission(StrEnum):
    PREDICTIONS_CREATE = "predictions:create"
    PREDICTIONS_READ = "predictions:read"
    MODELS_READ = "models:read"
    KEYS_MANAGE = "keys:manage"
    USERS_MANAGE = "users:manage"
    AUDIT_READ = "audit:read"
    COMPLIANCE_MANAGE = "compliance:manage"
    TENANT_CONFIGURE = "tenant:configure"
    USAGE_READ = "usage:read"
    # Every role holds it: see oneself (/v1/auth/me), end one's own session, change one's own password.
    SELF_MANAGE = "self:manage"


_READ = {Permission.PREDICTIONS_READ, Permission.MODELS_READ, Permission.SELF_MANAGE}
_ANALYST = _READ | {Permission.PREDICTIONS_CREATE}
_ADMIN = _ANALYST | {Permission.KEYS_MANAGE, Permission.USERS_MANAGE, Permission.AUDIT_READ}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(_ADMIN | {Permission.COMPLIANCE_MANAGE, Permission.USAGE_READ}),
    Role.ANALYST: frozenset(_ANALYST),
    Role.VIEWER: frozenset(_READ),
    Role.SERVICE: frozenset(_ANALYST),
    Role.AUDITOR: frozenset(_READ | {Permission.AUDIT_READ, Permission.USAGE_READ}),
}


def grants(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def can_grant(actor: Role, target: Role) -> bool:
    """A principal may hand out a role only if it holds every permission of that role itself."""
    return ROLE_PERMISSIONS[target] <= ROLE_PERMISSIONS[actor]
