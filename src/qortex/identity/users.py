"""People of a tenant: creation, listing, role changes, password resets, deactivation.

Who may do what: a principal manages a user only if it could grant that user's role (`can_grant`), and
grants only roles it could grant; so an admin neither creates, promotes nor touches owners. Nobody
changes their own role, deactivates themselves or resets their own password here (no lock-out by
accident; one's own password change asks for the current one, at /v1/auth/password). A role change, a
password reset and a deactivation end every session of the user at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from qortex.audit import service as audit
from qortex.audit.service import AuditRecord, Origin
from qortex.core import idempotency
from qortex.core.clock import utcnow
from qortex.core.database import Database, TenantScope
from qortex.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from qortex.core.idempotency import Answer, IdempotentRequest
from qortex.core.ids import new_id
from qortex.core.pagination import Page, page_of
from qortex.identity import user_repository as repo
from qortex.identity.actors import commit_grant, confirm_actor, lock_people
from qortex.identity.models import User
from qortex.identity.service import ApiKeyCache, revoke_keys_minted_for
from qortex.security.passwords import Passwords, policy_problem
from qortex.security.principal import Principal
from qortex.security.rbac import Role, can_grant
from qortex.security.revocation import SessionRevocations
from qortex.tenants import repository as tenant_repository

TAKEN = "the username or email is already taken"


def public_fields(user: User) -> dict[str, Any]:
    """A user as owners and admins see it: everything but the password hash."""
    return {
        "id": str(user.id),
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "active": user.active,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
        "password_changed_at": user.password_changed_at.isoformat(),
    }


def _record(action: str, *, actor: Principal | None, user_id: uuid.UUID, origin: Origin, **details: Any) -> AuditRecord:
    return AuditRecord(
        action=action,
        actor_kind=actor.actor_kind if actor else "operator",
        actor_id=actor.actor_id if actor else None,
        target_type="user",
        target_id=str(user_id),
        request_id=origin.request_id,
        client_ip=origin.client_ip,
        details=details,
    )


def _check_grant(actor: Principal | None, role: Role) -> None:
    if actor is not None and not can_grant(actor.role, role):
        raise Forbidden(f"role {actor.role.value!r} may not grant role {role.value!r}")


def _removes_an_owner(user: User, changes: UserChanges) -> bool:
    """Whether the changes take an active owner away: a demotion or a deactivation."""
    if user.role != Role.OWNER.value or not user.active:
        return False
    return (changes.role is not None and changes.role is not Role.OWNER) or changes.active is False


async def _keep_an_owner(session: AsyncSession, scope: TenantScope, user: User) -> None:
    """Refuses to leave the tenant without an active owner person, who alone can change its settings."""
    # The tenant row is the lock two owners removing each other at once queue on: the second then counts
    # what the first committed (PostgreSQL reads committed rows per statement; SQLite has one writer).
    await tenant_repository.get_in_scope(session=session, scope=scope, for_update=True)
    if await repo.count_other_active_owners(session=session, scope=scope, user_id=user.id) == 0:
        raise Conflict(
            f"{user.username} is the tenant's last active owner; make another person owner first",
        )


def _check_password(password: str) -> None:
    problem = policy_problem(password)
    if problem is not None:
        raise InvalidInput(problem, errors=[{"loc": ["body", "password"], "msg": problem}])


async def create_user(
    *,
    db: Database,
    passwords: Passwords,
    scope: TenantScope,
    username: str,
    email: str,
    display_name: str,
    password: str,
    role: Role,
    actor: Principal | None = None,
    request: IdempotentRequest | None = None,
    origin: Origin | None = None,
) -> Answer:
    """Creates a user; `actor` None is the operator at the command line."""
    _check_grant(actor, role)
    _check_password(password)
    earlier = await idempotency.replay(db=db, scope=scope, request=request)
    if earlier is not None:
        return earlier
    now = utcnow()
    user = User(
        id=new_id(),
        tenant_id=scope.tenant_id,
        username=username.strip().lower(),
        email=email.strip().lower(),
        display_name=display_name,
        password_hash=await passwords.hash_async(password),
        role=role.value,
        active=True,
        created_at=now,
        updated_at=now,
        password_changed_at=now,
    )
    body = public_fields(user)
    record = _record("user.create", actor=actor, user_id=user.id, origin=origin or Origin(), role=role.value)

    try:
        earlier = await commit_grant(
            db=db, scope=scope, request=request, rows=[user], stored_body=body, actor=actor, record=record
        )
    except IntegrityError:
        raise Conflict(TAKEN) from None
    return earlier or Answer(body, replayed=False)


async def list_users(
    *, db: Database, scope: TenantScope, include_inactive: bool, limit: int, after: uuid.UUID | None
) -> Page[User]:
    async with db.tenant_session(scope) as session:
        rows = await repo.list_users(
            session=session, scope=scope, include_inactive=include_inactive, limit=limit + 1, after=after
        )
    return page_of(rows, limit=limit)


async def get_user(*, db: Database, scope: TenantScope, user_id: uuid.UUID) -> User:
    async with db.tenant_session(scope) as session:
        user = await repo.get_user(session=session, scope=scope, user_id=user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def find_by_username(*, db: Database, scope: TenantScope, username: str) -> User:
    """A user of this tenant by username (the command line's way of naming one)."""
    async with db.system_session() as session:
        user = await repo.find_for_login(session=session, login=username.strip().lower())
    if user is None or user.tenant_id != scope.tenant_id:
        raise NotFound(f"no user named {username!r} in this tenant")
    return user


@dataclass(frozen=True, slots=True)
class UserChanges:
    email: str | None = None
    display_name: str | None = None
    role: Role | None = None
    password: str | None = None
    active: bool | None = None


async def update_user(
    *,
    db: Database,
    revocations: SessionRevocations | None,
    passwords: Passwords,
    scope: TenantScope,
    user_id: uuid.UUID,
    changes: UserChanges,
    actor: Principal | None = None,
    origin: Origin | None = None,
    key_cache: ApiKeyCache | None = None,
) -> User:
    """Applies changes; a new role, a password reset or a deactivation ends the user's sessions everywhere
    and revokes the API keys minted for them (a thief's keys, or power the person no longer has)."""
    origin = origin or Origin()
    if changes.role is not None:
        _check_grant(actor, changes.role)
    if changes.password is not None:
        _check_password(changes.password)
    # Also through a key minted from the person's session: else a stolen access token could mint a key
    # and take the account over with it.
    is_self = actor is not None and actor.person_id == user_id
    if is_self and (changes.role is not None or changes.active is not None):
        raise Forbidden("you may not change your own role or deactivate or reactivate yourself")
    if is_self and changes.password is not None:
        # A reset needs no current password; one's own change does, so a stolen access token cannot make one.
        raise Forbidden("change your own password with POST /v1/auth/password, which asks for the current one")
    new_hash = await passwords.hash_async(changes.password) if changes.password is not None else None
    now = utcnow()
    records: list[AuditRecord] = []
    end_reason: str | None = None
    ended: list[uuid.UUID] = []
    revoked_keys: list[uuid.UUID] = []
    try:
        async with db.tenant_session(scope, write=True) as session:
            acting = {actor.person_id} if actor is not None and actor.person_id is not None else set()
            locked = await lock_people(session=session, scope=scope, user_ids={user_id, *acting})
            await confirm_actor(session=session, scope=scope, actor=actor, locked=locked)
            user = locked.get(user_id)
            if user is None:
                raise NotFound(f"user {user_id} not found")
            _check_grant(actor, Role(user.role))
            if _removes_an_owner(user, changes):
                await _keep_an_owner(session, scope, user)
            if changes.email is not None and changes.email != user.email:
                user.email = changes.email.strip().lower()
                records.append(_record("user.update", actor=actor, user_id=user.id, origin=origin, field="email"))
            if changes.display_name is not None and changes.display_name != user.display_name:
                user.display_name = changes.display_name
                records.append(
                    _record("user.update", actor=actor, user_id=user.id, origin=origin, field="display_name")
                )
            if changes.role is not None and changes.role.value != user.role:
                records.append(
                    _record(
                        "user.role_change",
                        actor=actor,
                        user_id=user.id,
                        origin=origin,
                        old_role=user.role,
                        new_role=changes.role.value,
                    )
                )
                user.role = changes.role.value
                end_reason = "role_change"
            if new_hash is not None:
                user.password_hash = new_hash
                user.password_changed_at = now
                records.append(_record("user.password_change", actor=actor, user_id=user.id, origin=origin, by="admin"))
                end_reason = end_reason or "password_change"
            if changes.active is not None and changes.active != user.active:
                user.active = changes.active
                action = "user.reactivate" if changes.active else "user.deactivate"
                records.append(_record(action, actor=actor, user_id=user.id, origin=origin))
                if not changes.active:
                    end_reason = "deactivation"
            if records:
                user.updated_at = now
            if end_reason is not None:
                ended = await repo.end_sessions(
                    session=session, scope=scope, at=now, reason=end_reason, user_id=user.id
                )
            await session.flush()
            # Keys before the audit append, as every flow does: the audit chain head is locked last.
            if end_reason is not None:
                revoked_keys = await revoke_keys_minted_for(
                    session=session, scope=scope, user_id=user.id, at=now, actor=actor, reason=end_reason
                )
            await audit.append(session=session, scope=scope, records=records)
    except IntegrityError:
        raise Conflict(TAKEN) from None
    if revocations is not None:
        await revocations.end(ended)
    if key_cache is not None:  # elsewhere the cache forgets them within its few seconds
        key_cache.forget(*revoked_keys)
    return user
